"""Analyst queries: checked by the SQL policy, run read-only with limits, a bounded number at a time.

Each concurrent query has a connection of its own whose session was fixed at start to the query limits, a filter
on the catalog tables (``system.tables``, ``system.columns``, ``system.databases`` show the readable tables only:
the ClickHouse-compatible endpoint lets drivers read them; the policy reads the full list on a connection of its
own) and, last, ``readonly=1`` (so no statement on it can raise a limit, lift the filter or write). On the
embedded engine these are chDB handles of the sink's own engine: a query runs beside the loader's inserts, never
in front of them. On a server they are ordinary clickhouse-connect clients; there the recommended analyst user
(docs/operations.md) is read-only with constraints on these settings, and the sink sends the limits (and the
filter) with every query.

A school credential (``sinks.analysts``: an ``Analyst`` with its tenants) reads only its tenants' rows, and the
engine enforces it: its connections are fixed, before ``readonly=1``, to ``additional_table_filters`` naming every
table and view of the database (``tenant IN (...)``; ``0``, no rows, for one without a tenant column). The filter
reaches the tables read inside views, subqueries, CTEs, JOINs, UNIONs, ``IN (SELECT ...)``, ``view()`` and a
trivial ``count()``; it does not reach ``merge()`` (every tenant's rows), and the SQL policy refuses that table
function, and every other that names a table (``remote()``, ``loop()``, ``cluster()`` ...), to every analyst.
The engine evaluates a PREWHERE (written, or moved there from WHERE by ``optimize_move_to_prewhere``) before the
filter, so an error raised in it would show another tenant's values: a school credential's session turns that
optimization off and the policy refuses its PREWHERE clauses. Connections are pooled per set of tenants; at most
``max_concurrent`` wait idle in all (the longest idle one is closed first). On a server the same settings go with
every query of a school credential (with ``readonly=2``: a statement cannot change them, the policy refuses
SETTINGS clauses). The catalog's filter and the tenants' are one ``additional_table_filters`` map.

A connection goes back to the pool only after a statement that succeeded. One whose statement failed or was
stopped is closed: chDB keeps what a failed query had already written in its handle's output buffer and hands it
to the next query on that handle (a failed query's rows reached the next caller), and a stopped stream leaves the
handle in a state no later caller should depend on.

The answer is streamed from the engine and bounded as it is written (``sinks.answers``): past
``max_result_bytes`` bytes the query is stopped and the caller gets ``QueryLimitError``.

At most ``max_concurrent`` queries run at once (each may use ``max_memory_bytes``), at most ``max_per_caller`` of
them for one caller, each in a thread of this pool's own (``sinks.query_slots``); a caller waits up to
``queue_seconds`` for a slot, then gets ``QueryCapacityError`` (HTTP 429 with Retry-After). The sink keeps two
pools: one for analysts' statements, one for the read side (the senders' reads, the archive): neither can take
the other's slots or threads, nor the loader's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sinks.analysts import OPERATOR, Analyst, tenant_filters
from sinks.answers import assemble
from sinks.clickhouse import ClickHouse, connect, map_literal
from sinks.clickhouse_sql import (
    CATALOG_TABLES,
    catalog_filters,
    catalog_statement,
    check_catalog_sizes,
    strip_format,
)
from sinks.errors import ClickHouseQueryError, QueryLimitError, QueryRejectedError
from sinks.query_slots import QuerySlots
from sinks.settings import ClickHouseSettings, QueryLimits
from sinks.sql_policy import (
    AstNode,
    check_prewhere,
    check_show,
    check_totals,
    check_tree,
    parse_explain_ast,
    prepare,
    show_tables_statement,
)

# output formats the SQL endpoint serves, by the names its callers use
OUTPUT_FORMATS = {
    "json": "JSON",
    "jsoneachrow": "JSONEachRow",
    "csv": "CSVWithNames",
    "tsv": "TabSeparatedWithNames",
    "pretty": "PrettyCompactMonoBlock",
}
# the media type of an answer by its ClickHouse format (both SQL endpoints); text/plain for the other text formats
CONTENT_TYPES = {"JSON": "application/json", "JSONCompact": "application/json", "JSONStrings": "application/json",
                 "JSONCompactStrings": "application/json", "JSONEachRow": "application/x-ndjson",
                 "JSONCompactEachRow": "application/x-ndjson", "CSV": "text/csv", "CSVWithNames": "text/csv",
                 "CSVWithNamesAndTypes": "text/csv", "TabSeparated": "text/tab-separated-values",
                 "TabSeparatedRaw": "text/tab-separated-values", "TabSeparatedWithNames": "text/tab-separated-values",
                 "TabSeparatedWithNamesAndTypes": "text/tab-separated-values"}
# ClickHouse error code -> the limit it reports
LIMIT_ERRORS = {159: "max_execution_seconds", 241: "max_memory_bytes", 396: "max_result_rows/max_result_bytes",
                158: "max_rows_to_read", 307: "max_rows_to_read"}


def clickhouse_format(name: str) -> str:
    """The ClickHouse output format for a name the SQL endpoint accepts (``json``, ``csv``, ``pretty`` ...)."""
    try:
        return OUTPUT_FORMATS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; use one of {', '.join(sorted(OUTPUT_FORMATS))}") from None


class AnalystQueries:
    """Runs analyst SQL on a pool of read-only, limited connections."""

    def __init__(self, clickhouse: ClickHouseSettings, limits: QueryLimits, name: str = "queries") -> None:
        self.settings = clickhouse
        self.limits = limits
        self.database = clickhouse.database
        self._idle: list[tuple[frozenset[str] | None, ClickHouse]] = []  # (tenants, connection), oldest first
        self._opened: list[ClickHouse] = []
        self._lock = threading.Lock()
        self.slots = QuerySlots(name, limits.max_concurrent, max_per_caller=limits.max_per_caller,
                                queue_seconds=limits.queue_seconds,
                                retry_after=max(1, int(limits.max_execution_seconds // 10)))
        self._table_functions: frozenset[str] | None = None
        self._tenant_tables: dict[str, bool] = {}  # every table and view of the database: has it a tenant column
        self._names: ClickHouse | None = None  # embedded: the policy's view of the catalog, unfiltered
        self._names_lock = threading.Lock()

    # -- connections ----------------------------------------------------------------------------------------

    def _session_settings(self, tenants: frozenset[str] | None, *, filtered: bool = True) -> dict[str, Any]:
        """The query limits and the filters of a connection: ``filtered``, the catalog tables show the readable
        tables only (``sinks.clickhouse_sql.catalog_filters``); ``tenants`` (None: every tenant), every table and
        view of the database holds their rows only, and no condition is moved to PREWHERE (evaluated before the
        filter)."""
        settings: dict[str, Any] = self.limits.clickhouse_settings()
        filters = catalog_filters(self.database) if filtered else {}
        if tenants is not None:
            filters |= tenant_filters(self._tenant_tables, self.database, tenants)
            settings |= {"optimize_move_to_prewhere": 0, "optimize_move_to_prewhere_if_final": 0}
        if filters:
            settings["additional_table_filters"] = map_literal(filters)
        return settings

    def _per_query(self, tenants: frozenset[str] | None) -> dict[str, Any]:
        """Settings sent with each statement: none on the embedded engine (its sessions are fixed), the limits and
        the filters on a server (``readonly=2``: a statement cannot change them)."""
        if self.settings.embedded:
            return {}
        return {**self._session_settings(tenants), "readonly": 2}

    def _restricted(self, tenants: frozenset[str] | None, *, filtered: bool = True) -> ClickHouse:
        """A connection at the query limits, ``readonly``, with its filters (``_session_settings``)."""
        client = connect(self.settings)
        try:
            _, rows = client.query_rows(
                "SELECT table, countIf(name = 'tenant') > 0 FROM system.columns WHERE database = {db:String} "
                "GROUP BY table", {"db": self.database})
            self._tenant_tables = {str(name): bool(tenant) for name, tenant in rows}
            if client.embedded:
                client.restrict({**self._session_settings(tenants, filtered=filtered), "readonly": 1})
        except Exception:
            client.close()
            raise
        with self._lock:
            self._opened.append(client)
        return client

    def _take(self, tenants: frozenset[str] | None) -> ClickHouse:
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index][0] == tenants:
                    return self._idle.pop(index)[1]
        return self._restricted(tenants)

    def _give_back(self, tenants: frozenset[str] | None, client: ClickHouse) -> None:
        with self._lock:
            self._idle.append((tenants, client))
            evicted = self._idle.pop(0)[1] if len(self._idle) > self.limits.max_concurrent else None
        if evicted is not None:
            self._discard(evicted)

    def _discard(self, client: ClickHouse) -> None:
        with self._lock:
            if client in self._opened:
                self._opened.remove(client)
        client.close()

    @contextlib.contextmanager
    def _connection(self, tenants: frozenset[str] | None = None) -> Iterator[ClickHouse]:
        """A pooled connection for one statement of an analyst reading ``tenants`` (None: every tenant): given back
        when it succeeded, or when the policy refused a statement the engine had parsed; closed when anything on
        it failed or was stopped (see the module)."""
        client = self._take(tenants)
        try:
            yield client
        except QueryRejectedError as error:
            if error.__cause__ is None:  # refused by the policy: the engine answered every call normally
                self._give_back(tenants, client)
            else:
                self._discard(client)
            raise
        except BaseException:
            self._discard(client)
            raise
        self._give_back(tenants, client)

    # -- checking and running -------------------------------------------------------------------------------

    def _explain(self, client: ClickHouse, statement: str, parameters: dict[str, str] | None) -> AstNode:
        try:
            tree = client.command_text(f"EXPLAIN AST {statement}\n", parameters)
        except ClickHouseQueryError as error:
            raise QueryRejectedError(f"ClickHouse cannot parse the query: {_first_line(error)}",
                                     code=error.code or 62) from error
        return parse_explain_ast(tree.splitlines())

    def _table_names(self, client: ClickHouse) -> frozenset[str]:
        """The names of every table and view of the database, lower-cased. The pooled connections see the readable
        ones only in ``system.tables`` (``_restricted``): on the embedded engine, whose filter is fixed in the
        session, the names are read on a connection of their own; a server's filter is sent with each query."""
        sql, parameters = "SELECT lower(name) FROM system.tables WHERE database = {db:String}", {"db": self.database}
        if not client.embedded:
            return frozenset(str(row[0]) for row in client.query_rows(sql, parameters)[1])
        with self._names_lock:
            if self._names is None:
                self._names = self._restricted(None, filtered=False)
            try:
                return frozenset(str(row[0]) for row in self._names.query_rows(sql, parameters)[1])
            except BaseException:
                self._discard(self._names)
                self._names = None
                raise

    def _check_on(self, client: ClickHouse, sql: str, parameters: dict[str, str] | None = None,
                  compatible: bool = False, analyst: Analyst = OPERATOR) -> tuple[str, bool, str | None]:
        """The statement to run, whether its answer is streamed (a SELECT; a DESCRIBE is answered in one piece,
        the engine streams SELECTs only) and the format its FORMAT clause names. ``compatible``: the statement
        came through the ClickHouse-compatible endpoint (``sinks.clickhouse_sql``: a FORMAT clause, the catalog)."""
        statement = prepare(sql, self.limits.max_query_bytes)
        if analyst.tenants is not None:
            check_prewhere(statement)
        clause_format = None
        if compatible:
            statement, root, clause_format = strip_format(
                statement, lambda text: self._explain(client, text, parameters))
            if root.kind in ("ShowTables", "ExistsTableQuery", "ExistsViewQuery", "ExistsDatabaseQuery"):
                formatted = self._formatted(client, statement) if root.kind == "ShowTables" else ""
                answer = catalog_statement(root, formatted, self.database)
                if answer is not None:
                    return answer, True, clause_format
        else:
            root = self._explain(client, statement, parameters)
        if self._table_functions is None:
            _, rows = client.query_rows("SELECT lower(name) FROM system.table_functions")
            self._table_functions = frozenset(str(row[0]) for row in rows)
        check_tree(root, self.database, self._table_functions, self._table_names(client),
                   CATALOG_TABLES if compatible else frozenset())
        if compatible and analyst.tenants is not None:
            check_catalog_sizes(root)
        if root.kind == "ShowTables":  # SHOW DATABASES, SETTINGS ... parse into the same node: compare the text
            check_show(self._formatted(client, statement))
            return show_tables_statement(self.database), True, clause_format
        if client.embedded:
            check_totals(statement)
        return statement, root.kind == "SelectWithUnionQuery", clause_format

    @staticmethod
    def _formatted(client: ClickHouse, statement: str) -> str:
        """The statement as ClickHouse formats it on one line."""
        _, formatted = client.query_rows("SELECT formatQuerySingleLine({statement:String})",
                                         {"statement": statement})
        return str(formatted[0][0])

    def check(self, sql: str) -> str:
        """The statement to run, if the policy allows it; else ``QueryRejectedError`` saying why (blocking)."""
        with self._connection() as client:
            return self._check_on(client, sql)[0]

    def _answer(self, client: ClickHouse, statement: str, fmt: str, streamed: bool,
                parameters: dict[str, str] | None, tenants: frozenset[str] | None) -> bytes | bytearray:
        per_query = self._per_query(tenants)
        if not streamed:  # a DESCRIBE: a line per column
            whole = client.query_formatted(statement + "\n", fmt, parameters, settings=per_query)
            return assemble([whole], fmt, self.limits.max_result_bytes, blockwise=False) or whole
        pieces = client.stream_formatted(statement + "\n", fmt, settings=per_query, parameters=parameters)
        try:
            answer = assemble(pieces, fmt, self.limits.max_result_bytes, blockwise=client.embedded)
        finally:
            pieces.close()  # stops the query when the answer was refused before its end
        if answer is None:  # no rows, so no block: the empty answer (names, JSON's meta) of the same columns
            return client.query_formatted(f"SELECT * FROM ({statement}\n) WHERE 0", fmt, parameters,
                                          settings=per_query)
        return answer

    def _run(self, sql: str, fmt: str, analyst: Analyst, parameters: dict[str, str] | None = None,
             compatible: bool = False) -> tuple[bytes | bytearray, str]:
        with self._connection(analyst.tenants) as client:
            statement, streamed, clause_format = self._check_on(client, sql, parameters, compatible, analyst)
            fmt = clause_format or fmt
            try:
                return self._answer(client, statement, fmt, streamed, parameters, analyst.tenants), fmt
            except ClickHouseQueryError as error:
                limit = LIMIT_ERRORS.get(error.code or 0)
                if limit is not None:
                    raise QueryLimitError(f"the query exceeded its limit ({limit}): {_first_line(error)}",
                                          limit=limit) from error
                raise

    def rows_blocking(self, sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Rows of one of the sink's OWN statements (the read model): no policy check, the same limits."""
        with self._connection() as client:
            return client.query_rows(sql, parameters, settings=self._per_query(None))

    def run_blocking(self, sql: str, fmt: str, analyst: Analyst = OPERATOR) -> bytes | bytearray:
        """Check and run one statement of ``analyst`` (the rows of its tenants only); ``fmt`` is a ClickHouse output
        format name."""
        return self._run(sql, fmt, analyst)[0]

    async def run(self, sql: str, fmt: str, *, analyst: Analyst) -> bytes | bytearray:
        """Check and run one statement of ``analyst`` in a thread of this pool, waiting ``queue_seconds`` at most for
        a slot (``max_per_caller`` counts per analyst)."""
        return await self.slots.call(analyst.name, self.run_blocking, sql, fmt, analyst)

    async def run_compatible(self, sql: str, fmt: str, parameters: dict[str, str], *,
                             analyst: Analyst) -> tuple[bytes | bytearray, str]:
        """A statement of the ClickHouse-compatible endpoint (``sinks.clickhouse_sql``: its FORMAT clause, the
        filtered catalog, ``{name:Type}`` placeholders bound by the engine to ``parameters``), under the same
        policy, limits and slots as ``run``; the answer and its format (the clause's, else ``fmt``)."""
        return await self.slots.call(analyst.name, self._run, sql, fmt, analyst, parameters, True)

    def close(self) -> None:
        self.slots.close()
        with self._lock:
            opened, self._opened, self._idle, self._names = self._opened, [], [], None
        for client in opened:
            client.close()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__
