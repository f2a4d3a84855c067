"""What an analyst may run through the sink's SQL endpoint, decided on ClickHouse's own parse of the statement.

A text check cannot tell ``SELECT 'file(x)'`` from ``SELECT file('x')``, so the statement is parsed by ClickHouse
(``EXPLAIN AST``, which parses and evaluates nothing) and its tree is checked:

- the statement is a SELECT (with WITH, UNION, INTERSECT/EXCEPT), ``DESCRIBE TABLE`` or ``SHOW TABLES``:
  never EXPLAIN (EXPLAIN PLAN/PIPELINE evaluates scalar subqueries), never a statement that writes;
- no SETTINGS, FORMAT or INTO OUTFILE clause (limits are the sink's; the format is the ``format`` parameter);
- tables and views only from an allow-list (``sinks.tables.ANALYST_TABLES``: the facts, the views over them, the
  bookkeeping without what was sent), wherever the statement names them: ``FROM``, ``JOIN``, subqueries, ``view()``,
  ``DESCRIBE TABLE`` and the right of ``IN`` / ``GLOBAL IN`` (``x IN t`` reads table ``t``). Every other table or
  view of the pipeline's database is private (the raw archive, the failed events and the loader's rejects hold what
  was sent, emails and names in clear; a ``*_loader`` materialized view reads as its target table), and so is every
  other database (``system``, ``information_schema`` ...). A name that is no table of the database (a ``WITH``
  name) passes: the engine resolves it to the query's own subquery, or answers that the table does not exist;
- ``SHOW TABLES`` exactly (ClickHouse parses ``SHOW DATABASES``, ``SHOW SETTINGS``, ``SHOW CLUSTERS`` ... into the
  same node, so the statement's canonical text is compared): the sink answers it with the readable tables only;
- table functions only from a short list that reads nothing outside the query (``numbers``, ``values`` ...);
  ``file``, ``url``, ``s3``, ``executable``, ``remote``, chDB's ``python`` and every other table function are
  refused, and so are their names used as ordinary functions (``SELECT file('/proc/self/environ')`` reads a file
  even under ``readonly=1``), and functions that reach files, other hosts or engine internals.

A school credential's statement (``sinks.analysts``) passes the same checks and no ``PREWHERE`` (``check_prewhere``:
the engine evaluates it before the tenants' filter). The statement that passed is then run, unchanged, on a
connection fixed at ``readonly=1`` with the query limits (and, for a school credential, its tenants' filter).
The sink's ClickHouse-compatible endpoint applies this policy too, with what ClickHouse's clients need added
(``sinks.clickhouse_sql``: a trailing FORMAT clause, the filtered catalog tables, SHOW DATABASES and EXISTS).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sinks.errors import QueryRejectedError
from sinks.tables import ANALYST_TABLES

ALLOWED_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values", "null", "view",
    "primes",
})
# ordinary functions that read files, reach other hosts, run models or expose engine internals
DENIED_FUNCTIONS = frozenset({
    "file", "hascolumnintable", "joinget", "joingetornull", "catboostevaluate", "modelevaluate", "evalmlmethod",
    "dictget", "dictgetornull", "dictgetordefault", "dictgetall", "dicthas", "dictgethierarchy", "dictisin",
    "dictgetchildren", "dictgetdescendants", "getclienthttpheader", "getserversetting", "getmergetreesetting",
    "getmacro", "addresstoline", "addresstolinewithinlines", "addresstosymbol", "demangle", "trace",
    "filesystemavailable", "filesystemcapacity", "filesystemunreserved", "currentquerys", "initialqueryid",
})
STATEMENTS = ("SelectWithUnionQuery", "DescribeQuery", "ShowTables")
# functions whose right argument, when it is a bare name, is a table the engine reads (``0 IN system.one``)
IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin",
                          "globalnotnullin"})
SHOW_TABLES = "SHOW TABLES"  # the one SHOW statement allowed, as ClickHouse formats it (formatQuerySingleLine)


@dataclass(slots=True)
class AstNode:
    """One line of ``EXPLAIN AST``: its kind (``Function``), its text after the kind (``file (children 1)``)."""

    kind: str
    text: str
    children: list[AstNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The function or table name: the text before `` (alias ...)`` / `` (children N)``."""
        return self.text.split(" (", 1)[0].strip()

    def walk(self, parent: AstNode | None = None) -> Iterator[tuple[AstNode, AstNode | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


def parse_explain_ast(lines: list[str]) -> AstNode:
    """The tree of ``EXPLAIN AST`` output (one node a line, one space of indentation per level)."""
    root: AstNode | None = None
    stack: list[tuple[int, AstNode]] = []
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        kind, _, text = line.strip().partition(" ")
        node = AstNode(kind, text)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1].children.append(node)
        elif root is None:
            root = node
        else:
            raise QueryRejectedError("one statement per query")
        stack.append((depth, node))
    if root is None:
        raise QueryRejectedError("empty query")
    return root


def prepare(sql: str, max_bytes: int) -> str:
    """The statement without surrounding blanks and trailing ``;``; refuses empty and oversized texts."""
    statement = sql.strip()
    while statement.endswith(";"):
        statement = statement[:-1].rstrip()
    if not statement:
        raise QueryRejectedError("empty query", code=62)
    if len(statement.encode()) > max_bytes:
        raise QueryRejectedError(f"the query is longer than {max_bytes} bytes", code=62)
    return statement


def check_tree(root: AstNode, database: str, table_functions: frozenset[str], tables: frozenset[str],
               system_tables: frozenset[str] = frozenset()) -> None:
    """Raise ``QueryRejectedError`` naming the first thing the policy does not allow.

    ``table_functions``: the engine's table function names, lower-cased (``system.table_functions``): none of them
    may be called as an ordinary function either, unless it is in ``ALLOWED_TABLE_FUNCTIONS``.
    ``tables``: the names of the tables and views of ``database`` now, lower-cased: a name outside the allow-list
    is refused when it is one of them (a private table), and left to the engine when it is not (a ``WITH`` name).
    ``system_tables``: tables of the ``system`` database that may be read too (the ClickHouse-compatible
    endpoint's catalog, ``sinks.clickhouse_sql``; none for ``POST /sql``).
    """
    if root.kind not in STATEMENTS:
        what = "EXPLAIN" if root.kind == "Explain" else root.kind.removesuffix("Query")
        raise QueryRejectedError(f"only SELECT, DESCRIBE TABLE and SHOW TABLES are allowed, not {what}")
    if root.kind == "SelectWithUnionQuery" and len(root.children) > 1:
        raise QueryRejectedError("FORMAT and INTO OUTFILE clauses are not allowed (choose the format with ?format=)")
    if root.kind == "ShowTables" and root.children:
        raise QueryRejectedError("SHOW TABLES lists the pipeline's database only")
    for node, parent in root.walk():
        if node.kind == "Set":
            raise QueryRejectedError("SETTINGS clauses are not allowed: the sink sets the query's limits")
        if node.kind == "TableIdentifier":
            check_table(node.name, database, tables, system_tables)
        elif node.kind == "Function":
            name = node.name
            if parent is not None and parent.kind == "TableExpression":
                if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
                    raise QueryRejectedError(f"the table function {name} is not allowed; allowed: "
                                             f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))}")
            elif _denied(name.lower(), table_functions):
                raise QueryRejectedError(f"the function {name} is not allowed")
            elif name.lower() in IN_FUNCTIONS:
                _check_in_operand(node, database, tables, system_tables)


def check_show(formatted: str) -> None:
    """``formatted``: a ``ShowTables`` statement as ClickHouse formats it; only plain ``SHOW TABLES`` passes."""
    if formatted.strip() != SHOW_TABLES:
        raise QueryRejectedError(f"of the SHOW statements only SHOW TABLES is allowed, not {formatted.strip()[:80]}")


_WITH_TOTALS = re.compile(r"\bWITH\s+TOTALS\b", re.IGNORECASE)


def check_totals(statement: str) -> None:
    """Refuse ``WITH TOTALS`` (embedded engine): the streamed answer carries no totals row, so the caller would get
    an answer without it and no error. The text is searched, so a literal or comment that says it is refused too."""
    if _WITH_TOTALS.search(statement):
        raise QueryRejectedError("WITH TOTALS is not available on the embedded engine (its streamed answer has no "
                                 "totals row); add the totals with a UNION ALL or a second query")


_PREWHERE = re.compile(r"\bPREWHERE\b", re.IGNORECASE)


def check_prewhere(statement: str) -> None:
    """Refuse ``PREWHERE`` (school credentials): the engine evaluates it before the tenants' filter, so an error it
    raises could show another tenant's values. The text is searched, so a literal or comment that says it is
    refused too; WHERE filters the same rows."""
    if _PREWHERE.search(statement):
        raise QueryRejectedError("PREWHERE is not available to a school credential (the engine evaluates it before "
                                 "the tenant filter); use WHERE")


def show_tables_statement(database: str) -> str:
    """What the sink runs for ``SHOW TABLES``: the readable tables and views of ``database`` (a validated name),
    under the column name ``SHOW TABLES`` answers with."""
    names = ", ".join(f"'{name}'" for name in sorted(ANALYST_TABLES))
    return f"SELECT name FROM system.tables WHERE database = '{database}' AND name IN ({names}) ORDER BY name"


def _denied(folded: str, table_functions: frozenset[str]) -> bool:
    if folded in DENIED_FUNCTIONS or folded.startswith("dictget"):
        return True
    return folded in table_functions and folded not in ALLOWED_TABLE_FUNCTIONS


def _check_in_operand(node: AstNode, database: str, tables: frozenset[str], system_tables: frozenset[str]) -> None:
    arguments = node.children[0].children if node.children else []
    if len(arguments) == 2 and arguments[1].kind == "Identifier":
        check_table(arguments[1].name, database, tables, system_tables)


def check_table(name: str, database: str, tables: frozenset[str], system_tables: frozenset[str] = frozenset()) -> None:
    """Refuse a table or view an analyst may not read (see the module's docstring)."""
    qualifier, _, table = name.rpartition(".")
    qualifier, table = qualifier.strip("`\""), table.strip("`\"")
    if qualifier == "system" and table in system_tables:
        return
    if qualifier and qualifier != database:
        raise QueryRejectedError(f"only tables of the {database} database may be read, not {name}")
    if table in ANALYST_TABLES:
        return
    if qualifier or table.lower() in tables:
        raise QueryRejectedError(
            f"{name} is not open to analyst queries (the raw archive, the failed events and the loader's tables "
            f"hold events as they were sent, personal data in clear); readable: {', '.join(sorted(ANALYST_TABLES))}")
