"""ClickHouse's HTTP interface, read-only, on the sink: analysts' own tools (clickhouse-connect, the SQLAlchemy
``clickhousedb://`` dialect and pandas through it, Superset, DBeaver and Grafana over HTTP, curl) connect to the
sink as to a ClickHouse server.

| endpoint | credential | what |
| --- | --- | --- |
| ``GET /ping`` (and ``GET /`` without a query) | none (a health probe) | ``Ok.`` |
| ``GET /?query=...``, ``POST /`` | an analyst's | one statement: the URL's ``query`` and the body, joined |

Every statement goes through ``AnalystQueries.run_compatible``: the analysts' SQL policy (``sinks.sql_policy``)
with what ClickHouse's clients need added (``sinks.clickhouse_sql``: a FORMAT clause, the filtered catalog, SHOW
and EXISTS), the same limits, connections, slots and priority as ``POST /sql``.

Credentials, as ClickHouse takes them: ``X-ClickHouse-User`` / ``X-ClickHouse-Key`` headers, HTTP Basic, or the
``user`` / ``password`` URL parameters (one way per request); ``authenticate`` decides who they are. A missing
credential answers 401, a wrong one 403, both with ClickHouse's ``Code: 516 ... (AUTHENTICATION_FAILED)``.

URL parameters: ``query``, ``default_format`` (or the ``X-ClickHouse-Format`` header), ``database`` (or
``X-ClickHouse-Database``: the pipeline's only), ``query_id``, ``param_<name>``
(values of ``{name:Type}`` placeholders, parsed by the engine as their type), the transport and session settings
clients send (``IGNORED_SETTINGS``: accepted, without effect), ``max_execution_time`` at most the sink's own
limit (what the client will wait: clickhouse-go, under Grafana's ClickHouse plugin, sends its deadline plus 5 s
with every query; accepted, the sink's limit applies) and nothing else: a setting that would change a
limit, or any other, is refused naming it (``LIMIT_SETTINGS``: 403, code 164 READONLY; else 400, code 115
UNKNOWN_SETTING). The answer is never compressed (``Content-Encoding`` absent), which clients accept.

Errors are ClickHouse's: a ``Code: N. DB::Exception: ...`` text body and the ``X-ClickHouse-Exception-Code`` header.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from sinks.analysts import Analyst
from sinks.clickhouse_sql import DEFAULT_FORMAT, output_format
from sinks.errors import ClickHouseQueryError, QueryCapacityError, QueryLimitError, QueryRejectedError, SinkError
from sinks.queries import CONTENT_TYPES

if TYPE_CHECKING:
    from sinks.process import SinkProcess

# settings ClickHouse clients send with every request that change neither a limit nor what is read: transport,
# session and progress settings, input parsing (nothing is inserted here) and output details the engine's defaults
# answer (the analysts' connections are read-only: no setting of theirs changes per request)
IGNORED_SETTINGS = frozenset({
    "session_id", "session_timeout", "session_check", "wait_end_of_query", "buffer_size", "compress", "decompress",
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close", "client_protocol_version",
    "quota_key", "date_time_input_format", "input_format_null_as_default", "cast_string_to_dynamic_use_inference",
    "output_format_json_quote_64bit_integers", "output_format_json_quote_denormals",
    "output_format_json_named_tuples_as_objects", "output_format_arrow_string_as_string",
    "output_format_parquet_string_as_string", "output_format_native_encode_types_in_binary_format",
    "max_block_size", "extremes", "add_http_cors_header", "http_response_buffer_size", "join_use_nulls",
})
# settings that would lift or change a limit of the analysts' queries (the sink sets them: sinks.settings.QueryLimits)
LIMIT_SETTINGS = frozenset({
    "readonly", "max_memory_usage", "max_memory_usage_for_user", "max_execution_time", "timeout_overflow_mode",
    "max_result_rows", "max_result_bytes", "result_overflow_mode", "max_rows_to_read", "max_bytes_to_read",
    "read_overflow_mode", "max_threads", "priority", "max_concurrent_queries_for_user", "additional_table_filters",
    "max_query_size", "allow_ddl", "allow_introspection_functions", "max_rows_to_group_by",
    "max_bytes_before_external_group_by",
})
REQUEST_PARAMETERS = frozenset({"query", "user", "password", "database", "default_format", "query_id"})
MAX_QUERY_ID = 128  # characters of a caller's query_id, which the answer's X-ClickHouse-Query-Id echoes
ENGINE_VERSION = "26.9"  # what error texts say after "(version ...)": the ClickHouse generation the sink embeds
TEXT_FORMATS = frozenset(CONTENT_TYPES) | {"JSONCompactEachRowWithNames", "JSONCompactEachRowWithNamesAndTypes",
                                           "Pretty", "PrettyCompact", "PrettyCompactMonoBlock", "Null"}
ERROR_NAMES = {36: "BAD_ARGUMENTS", 62: "SYNTAX_ERROR", 73: "UNKNOWN_FORMAT", 81: "UNKNOWN_DATABASE",
               115: "UNKNOWN_SETTING", 164: "READONLY", 202: "TOO_MANY_SIMULTANEOUS_QUERIES", 210: "NETWORK_ERROR",
               396: "TOO_MANY_ROWS_OR_BYTES", 456: "UNKNOWN_QUERY_PARAMETER", 457: "BAD_QUERY_PARAMETER",
               497: "ACCESS_DENIED",
               516: "AUTHENTICATION_FAILED"}


class ClickHouseHttpError(SinkError):
    """A request this endpoint answers with ClickHouse's error: its HTTP ``status`` and ClickHouse ``code``."""

    def __init__(self, message: str, *, status: int, code: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def credentials(request: web.Request) -> tuple[str, str] | None:
    """``(user, secret)`` from the one way the request carries them (headers, Basic, URL), ``None`` if none;
    ``ClickHouseHttpError`` when it uses more than one."""
    offered = []
    if "X-ClickHouse-User" in request.headers or "X-ClickHouse-Key" in request.headers:
        offered.append((request.headers.get("X-ClickHouse-User", "default"),
                        request.headers.get("X-ClickHouse-Key", "")))
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ClickHouseHttpError("the Authorization header is not valid Basic credentials", status=400,
                                      code=516) from None
        offered.append((user, secret))
    elif scheme.lower() == "bearer":
        offered.append(("default", value.strip()))
    if "user" in request.query or "password" in request.query:
        offered.append((request.query.get("user", "default"), request.query.get("password", "")))
    if len(offered) > 1:
        raise ClickHouseHttpError("use one way to pass credentials: the X-ClickHouse-User/X-ClickHouse-Key headers, "
                                  "the Authorization header or the user/password parameters", status=400, code=516)
    return offered[0] if offered else None


def _settings_check(query: dict[str, str], database: str, max_seconds: float) -> None:
    for name in query:
        if name in REQUEST_PARAMETERS or name in IGNORED_SETTINGS or name.startswith("param_"):
            continue
        if name == "max_execution_time" and _within(query[name], max_seconds):
            continue  # what a client waits for (clickhouse-go sends its deadline): the sink's limit still applies
        if name in LIMIT_SETTINGS or name.startswith(("max_", "min_", "allow_")):
            bound = (f" (max_execution_time: at most {max_seconds:g} seconds, above 0, is accepted and the sink's "
                     "limit applies)" if name == "max_execution_time" else "")
            raise ClickHouseHttpError(f"Cannot modify '{name}' setting in readonly mode: the sink sets the limits "
                                      f"of analysts' queries{bound}", status=403, code=164)
        raise ClickHouseHttpError(f"Setting {name} is neither a builtin setting nor one this endpoint accepts; "
                                  f"accepted: {', '.join(sorted(IGNORED_SETTINGS))}", status=400, code=115)
    query_id = query.get("query_id", "")
    if len(query_id) > MAX_QUERY_ID or not query_id.isprintable():  # it is echoed in a header
        raise ClickHouseHttpError(f"query_id must be at most {MAX_QUERY_ID} printable characters", status=400,
                                  code=36)
    if query.get("database", database) not in (database, ""):
        raise ClickHouseHttpError(f"Database {query['database'][:60]} does not exist here: only {database} is "
                                  "served", status=404, code=81)


def _within(value: str, max_seconds: float) -> bool:
    """``value`` is a number of seconds above 0 and at most ``max_seconds`` (the sink's own limit)."""
    try:
        seconds = float(value)
    except ValueError:
        return False
    return 0 < seconds <= max_seconds


def error_response(message: str, *, status: int, code: int, headers: dict[str, str] | None = None) -> web.Response:
    """ClickHouse's error answer: ``Code: N. DB::Exception: ...`` and the ``X-ClickHouse-Exception-Code`` header."""
    text = message.strip().splitlines()[0][:1000] if message.strip() else "the query failed"
    if not text.startswith("Code:"):
        name = ERROR_NAMES.get(code, "")
        text = f"Code: {code}. DB::Exception: {text}. " + (f"({name}) " if name else "") + f"(version {ENGINE_VERSION})"
    return web.Response(status=status, text=text + "\n", content_type="text/plain", charset="utf-8",
                        headers={"X-ClickHouse-Exception-Code": str(code), **(headers or {})})


def _refused(error: SinkError) -> web.Response:
    """The answer to a query that did not run, as ClickHouse gives it."""
    if isinstance(error, ClickHouseHttpError):
        headers = {"WWW-Authenticate": 'Basic realm="caliper-sink"'} if error.status == 401 else None
        return error_response(str(error), status=error.status, code=error.code, headers=headers)
    if isinstance(error, QueryRejectedError):
        engine = error.__cause__  # the engine could not parse the statement: its own message
        message = str(engine) if isinstance(engine, ClickHouseQueryError) and engine.code == error.code else str(error)
        return error_response(message, status=403 if error.code == 497 else 400, code=error.code)
    if isinstance(error, QueryLimitError):
        code = getattr(error.__cause__, "code", None) or 396
        return error_response(str(error), status=400, code=code)
    if isinstance(error, QueryCapacityError):
        return error_response(str(error), status=429, code=202, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, ClickHouseQueryError):
        code = error.code or 1
        return error_response(str(error), status=404 if code in (60, 81) else 400, code=code)
    return error_response("ClickHouse cannot answer now", status=503, code=210, headers={"Retry-After": "5"})


# who a user name and password are (``sinks.middlewares.clickhouse_user``): the operator's token under a user of
# ``OPERATOR_USERS``, or a school credential's id and secret; None for no analyst
Verify = Callable[[web.Application, str, str], Awaitable[Analyst | None]]


def add_routes(app: web.Application, process_key: web.AppKey[SinkProcess], verify: Verify) -> None:
    """``GET /ping``, ``GET /`` and ``POST /`` on the sink's app; ``process_key`` names its ``SinkProcess``,
    ``verify`` checks a user name and password."""
    app[_TIMEZONE] = {}

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def query(request: web.Request) -> web.Response:
        if request.method == "GET" and "query" not in request.query:
            return await ping(request)  # ClickHouse answers a bare GET / like /ping
        return await _query(request, request.app[process_key], verify)

    app.router.add_get("/ping", ping)
    app.router.add_route("GET", "/", query)
    app.router.add_route("POST", "/", query)


_TIMEZONE: web.AppKey[dict[str, str]] = web.AppKey("clickhouse_http_timezone")


async def _statement(request: web.Request, max_bytes: int) -> str:
    """The URL's ``query`` and the body, joined by a newline (ClickHouse's rule); the body of a GET is ignored."""
    text = request.query.get("query", "")
    if request.method != "POST":
        return text
    if request.content_type.startswith("multipart/"):
        raise ClickHouseHttpError("multipart bodies are not accepted: send the query as the body or the query "
                                  "parameter", status=400, code=36)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ClickHouseHttpError(f"Max query size exceeded: the query is longer than {max_bytes} bytes",
                                  status=400, code=62) from None
    if not body:
        return text
    try:
        return (text + "\n" if text else "") + body.decode("utf-8")
    except UnicodeDecodeError:
        raise ClickHouseHttpError("the body is not UTF-8 text: send the query as UTF-8", status=400, code=36) from None


async def _query(request: web.Request, process: SinkProcess, verify: Verify) -> web.Response:
    started = time.perf_counter_ns()
    counter = process.loader.metrics.queries
    queries = process.queries
    try:
        offered = credentials(request)
        if offered is None:
            raise ClickHouseHttpError("default: Authentication failed: password is incorrect, or there is no user "
                                      "with such name", status=401, code=516)
        principal = await verify(request.app, *offered)
        if principal is None:
            raise ClickHouseHttpError(f"{offered[0][:60]}: Authentication failed: password is incorrect, or there "
                                      "is no user with such name", status=403, code=516)
        _settings_check({"database": request.headers.get("X-ClickHouse-Database", ""), **request.query},
                        queries.database, queries.limits.max_execution_seconds)
        fmt = output_format(request.query.get("default_format", request.headers.get("X-ClickHouse-Format",
                                                                                    DEFAULT_FORMAT)), "default_format")
        sql = await _statement(request, queries.limits.max_query_bytes)
        parameters = {name[6:]: value for name, value in request.query.items() if name.startswith("param_")}
        body, fmt = await queries.run_compatible(sql, fmt, parameters, analyst=principal)
        timezone = await _timezone(request, process, principal.name)
    except SinkError as error:
        counter.labels(_outcome(error)).inc()
        return _refused(error)
    counter.labels("ok").inc()
    content_type = CONTENT_TYPES.get(fmt, "text/plain" if fmt in TEXT_FORMATS else "application/octet-stream")
    summary = {"result_bytes": str(len(body)), "elapsed_ns": str(time.perf_counter_ns() - started)}
    headers = {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": timezone,
               "X-ClickHouse-Query-Id": request.query.get("query_id") or str(uuid.uuid4()),
               "X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Server-Display-Name": "caliper-sink",
               "Content-Type": content_type + ("; charset=UTF-8" if fmt in TEXT_FORMATS else "")}
    return web.Response(body=body, headers=headers)


async def _timezone(request: web.Request, process: SinkProcess, caller: str) -> str:
    """The engine's time zone (what ``timezone()`` says), asked once."""
    known = request.app[_TIMEZONE]
    if "zone" not in known:
        reads = process.queries
        _, rows = await reads.slots.call(caller, reads.rows_blocking, "SELECT timezone()", {})
        known["zone"] = str(rows[0][0])
    return known["zone"]


def _outcome(error: SinkError) -> str:
    """The label of ``sink_queries_total`` for a query that did not run (as ``POST /sql`` counts them)."""
    for kind, label in ((ClickHouseHttpError, "rejected"), (QueryRejectedError, "rejected"),
                        (QueryLimitError, "limited"), (QueryCapacityError, "busy"), (ClickHouseQueryError, "failed")):
        if isinstance(error, kind):
            return label
    return "unavailable"
