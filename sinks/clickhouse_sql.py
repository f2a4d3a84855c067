"""The statements of ClickHouse's own clients, for the sink's ClickHouse-compatible endpoint
(``sinks.clickhouse_http``).

Drivers and BI tools speak ClickHouse's SQL as they would to a server: they name the answer's format in the
statement (``... FORMAT Native``), list databases, tables and columns from ``system.*`` or with ``SHOW`` and
``EXISTS``, and read the server's settings on connect. What this module adds to the analysts' SQL policy
(``sinks.sql_policy``), for that endpoint only:

- a trailing ``FORMAT name`` clause, taken from ClickHouse's own parse of the statement: the name must be one of
  ``FORMATS``; the clause is removed from the text and the rest is parsed again, and must give exactly the tree the
  statement had without it (so nothing else was removed). ``INTO OUTFILE`` and ``SETTINGS`` stay refused;
- the catalog tables ``system.databases``, ``system.tables``, ``system.columns`` (which the analysts' connections
  filter to the pipeline's database and its readable tables: ``catalog_filters``), ``system.settings`` (the
  session's query settings: limits and formats, no credential) and ``system.one``; every other ``system`` table
  stays refused. Their size columns (rows, bytes, parts, marks) count every tenant's rows: a school credential's
  statement that reads a catalog table may not name them, nor select ``*`` or a ``COLUMNS(...)`` matcher
  (``check_catalog_sizes``); the names, engines and columns clients list stay readable;
- ``SHOW DATABASES``, ``SHOW TABLES FROM <the pipeline's database>``, ``EXISTS [TABLE] name`` and
  ``EXISTS DATABASE name``, answered from the allow-list (``sinks.tables.ANALYST_TABLES``) by a statement of the
  sink's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sinks.clickhouse import string_literal
from sinks.errors import QueryRejectedError
from sinks.sql_policy import AstNode, show_tables_statement
from sinks.tables import ANALYST_TABLES

# the output formats served, by every spelling ClickHouse accepts for them (names are case-sensitive in ClickHouse;
# the endpoint also takes them in any case), to the engine's canonical name
FORMATS = {name.lower(): name for name in (
    "TabSeparated", "TabSeparatedRaw", "TabSeparatedWithNames", "TabSeparatedWithNamesAndTypes", "CSV",
    "CSVWithNames", "CSVWithNamesAndTypes", "JSON", "JSONCompact", "JSONEachRow", "JSONCompactEachRow",
    "JSONCompactEachRowWithNames", "JSONCompactEachRowWithNamesAndTypes", "JSONStrings", "JSONCompactStrings",
    "Parquet", "Arrow", "ArrowStream", "Native", "RowBinary", "RowBinaryWithNames", "RowBinaryWithNamesAndTypes",
    "Pretty", "PrettyCompact", "PrettyCompactMonoBlock", "Null",
)} | {"tsv": "TabSeparated", "tsvraw": "TabSeparatedRaw", "tsvwithnames": "TabSeparatedWithNames",
      "tsvwithnamesandtypes": "TabSeparatedWithNamesAndTypes"}
DEFAULT_FORMAT = "TabSeparated"  # ClickHouse's answer format when neither the statement nor the request names one
CATALOG_TABLES = frozenset({"databases", "tables", "columns", "settings", "one"})  # readable system.* tables
# the catalog's columns that count a table's rows, bytes or running mutations (an erasure), every tenant's together
# (system.tables, system.columns)
CATALOG_SIZE_COLUMNS = frozenset({
    "total_rows", "total_bytes", "total_bytes_uncompressed", "parts", "active_parts", "total_marks",
    "lifetime_rows", "lifetime_bytes", "data_compressed_bytes", "data_uncompressed_bytes", "marks_bytes",
    "active_on_fly_data_mutations", "active_on_fly_alter_mutations", "active_on_fly_metadata_mutations",
})
_SIZED_CATALOG = frozenset({"system.tables", "system.columns"})
_MATCHERS = frozenset({"Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher",
                       "QualifiedColumnsRegexpMatcher", "QualifiedColumnsListMatcher"})
_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*$", re.IGNORECASE)


def output_format(name: str, where: str) -> str:
    """The canonical name of an output format the endpoint serves; ``QueryRejectedError`` naming ``where``."""
    canonical = FORMATS.get(name.strip().lower())
    if canonical is None:
        raise QueryRejectedError(f"{where}: the format {name.strip()[:60]!r} is not served here; use one of "
                                 f"{', '.join(sorted(set(FORMATS.values())))}", code=73)
    return canonical


def strip_format(statement: str, explain: Callable[[str], AstNode]) -> tuple[str, AstNode, str | None]:
    """``statement`` and its tree without a trailing ``FORMAT`` clause, and the format it named (``None``: none).

    ``explain`` parses a statement (``EXPLAIN AST``: ``QueryRejectedError`` when it cannot). The clause is
    ClickHouse's own parse: the last child of the statement's root, an identifier, which the text ends with as
    ``FORMAT name``. Without those words the text must parse into the same tree less that child (so nothing else
    was removed). Anything else after the query (``INTO OUTFILE``, ``SETTINGS``) is left for the policy."""
    found = _FORMAT_CLAUSE.search(statement)
    try:
        root = explain(statement)
    except QueryRejectedError:
        if found is None:
            raise
        root = explain(statement[:found.start()])  # a statement that does not parse with its clause in EXPLAIN
        if root.kind == "SelectWithUnionQuery":  # a SELECT parses with its clause: the error is elsewhere
            raise
        return statement[:found.start()], root, output_format(found.group(1), "FORMAT")
    last = root.children[-1] if root.children else None
    if found is None or last is None or last.kind != "Identifier" or last.name.lower() != found.group(1).lower():
        if root.kind == "SelectWithUnionQuery" and last is not None and last.kind == "Identifier":
            raise QueryRejectedError("the FORMAT clause must end the statement (FORMAT name)")
        return statement, root, None
    stripped = statement[:found.start()]
    parsed = explain(stripped)
    if _shape(parsed) != _shape(root, last=False):
        if root.kind == "SelectWithUnionQuery":
            raise QueryRejectedError("the FORMAT clause must end the statement (FORMAT name)")
        return statement, root, None  # the last name was no FORMAT clause (SHOW TABLES FROM name)
    return stripped, parsed, output_format(found.group(1), "FORMAT")


_CHILDREN = re.compile(r"\s*\(children \d+\)$")


def _shape(node: AstNode, last: bool = True) -> tuple[object, ...]:
    children = node.children if last else node.children[:-1]
    return node.kind, _CHILDREN.sub("", node.text), tuple(_shape(child) for child in children)


def catalog_statement(root: AstNode, formatted: str, database: str) -> str | None:
    """The sink's statement answering a ``SHOW`` or ``EXISTS`` statement from the allow-list (``formatted``: the
    statement as ClickHouse formats it on one line), or ``None`` for any other statement.
    ``QueryRejectedError`` for a ``SHOW`` this endpoint does not answer."""
    if root.kind == "ShowTables":
        text = formatted.strip()
        if text in ("SHOW TABLES", f"SHOW TABLES FROM {database}"):
            return show_tables_statement(database)
        if text == "SHOW DATABASES":
            return f"SELECT '{database}' AS name"
        raise QueryRejectedError(f"of the SHOW statements only SHOW TABLES and SHOW DATABASES are answered here, "
                                 f"not {text[:80]}")
    if root.kind == "ExistsDatabaseQuery":
        return f"SELECT toUInt8({int(_names(root)[0] == database)}) AS result"
    if root.kind == "ExistsTableQuery" or root.kind == "ExistsViewQuery":
        names = _names(root)
        qualifier, table = (names[0], names[1]) if len(names) == 2 else (database, names[-1])
        return f"SELECT toUInt8({int(qualifier == database and table in ANALYST_TABLES)}) AS result"
    return None


def _names(root: AstNode) -> list[str]:
    names = [child.name.strip("`\"") for child in root.children if child.kind == "Identifier"]
    if not names:
        raise QueryRejectedError("EXISTS needs a name")
    return names


def check_catalog_sizes(root: AstNode) -> None:
    """Refuse, in a statement that reads ``system.tables`` or ``system.columns``, a size column
    (``CATALOG_SIZE_COLUMNS``) or a ``*`` / ``COLUMNS(...)`` matcher anywhere in it: the catalog's filter keeps
    rows (tables), not columns, and those count every tenant's rows of a table (for a school credential)."""
    nodes = [node for node, _ in root.walk()]
    if not any(node.kind in ("TableIdentifier", "Identifier") and node.name.replace("`", "").replace('"', "").lower()
               in _SIZED_CATALOG for node in nodes):
        return
    for node in nodes:
        if node.kind in _MATCHERS:
            raise QueryRejectedError("a school credential's statement that reads system.tables or system.columns "
                                     "must name its columns (no * or COLUMNS()): the size columns count every "
                                     "tenant's rows")
        if node.kind == "Identifier" and node.name.rpartition(".")[2].strip("`\"").lower() in CATALOG_SIZE_COLUMNS:
            raise QueryRejectedError(f"{node.name} is not readable with a school credential: the catalog's size "
                                     f"columns count every tenant's rows")


def catalog_filters(database: str) -> dict[str, str]:
    """The analysts' connections' filters of the catalog tables (``additional_table_filters``, by table): they show
    the pipeline's database and, of its tables, the readable ones only."""
    readable = ", ".join(string_literal(name) for name in sorted(ANALYST_TABLES))
    return {
        "system.databases": f"name = {string_literal(database)}",
        "system.tables": f"database = {string_literal(database)} AND name IN ({readable})",
        "system.columns": f"database = {string_literal(database)} AND table IN ({readable})",
    }
