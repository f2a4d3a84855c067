"""The sink process: the loader plus its HTTP endpoints, served from the process that owns ClickHouse.

| endpoint | credential | what |
| --- | --- | --- |
| ``GET /healthz`` | none | the process runs |
| ``GET /readyz`` | none (a health probe); details with a token | ClickHouse answers and no partition is paused |
| ``GET /metrics`` | analyst or admin | Prometheus |
| ``POST /sql?format=json|csv|...`` | analyst, school or admin | one analyst statement (the body), see
  ``sinks.queries``: a school credential reads its tenants' rows only |
| ``POST /read/events`` | reader or admin | the senders' read model (an ``EventQuery`` as JSON), for the gateway |
| ``POST /read/jobs`` | reader or admin | a job's status (``{"tenant", "job_id"}``; 404: no record), for the gateway |
| ``POST /admin/erase`` | admin | erase a student (JSON ``tenant``, ``student_id``, ``requested_by``) |
| ``POST /archive/raw-events`` | admin | a tenant's archived events as JSON lines (``tenant``, ``from_ms``, ``to_ms``) |
| ``POST /admin/failed-events`` | admin | failed messages with their bytes, JSON lines (``sinks.failed_read``) |
| ``GET /ping``, ``GET/POST /`` | analyst (see there) | ClickHouse's HTTP interface (``sinks.clickhouse_http``) |

Credentials are ``Authorization: Bearer <token>``: the operator's analyst token (every tenant), a school credential
``<id>:<secret>`` (``sinks.analysts``: its tenants), the reader token (the gateway's: the read API answers events as
sent, so no analyst credential reaches it) and the admin token; an endpoint whose tokens are all unset refuses every
caller. The health probes answer anyone, and say nothing but ready or not to a caller without an operator's
token. Every error is JSON ``{"error": ...}``; an unexpected exception is logged and answered 500 without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.jobs import JOB_ID_PATTERN
from schemas.kafka import KafkaSettings
from schemas.read_api import (
    MAX_OFFSET,
    MAX_PAGE_SIZE,
    READ_EVENTS_PATH,
    READ_JOBS_PATH,
    EventQuery,
    ReadBusyError,
    ReadUnavailableError,
)
from sinks import clickhouse_http
from sinks.analysts import (
    ADMINISTRATOR,
    ANALYST_ID,
    OPERATOR,
    OPERATOR_USERS,
    Analyst,
    AnalystRegistry,
    authenticate_bearer,
)
from sinks.archive import apply_archive_ttl, count_archived, read_archived
from sinks.clickhouse import ClickHouse, connect
from sinks.erasure import erase_student
from sinks.errors import (
    ClickHouseQueryError,
    QueryCapacityError,
    QueryLimitError,
    QueryRejectedError,
    SinkError,
)
from sinks.failed_read import FailedSelection, ndjson, select_failed
from sinks.jobs_model import ClickHouseJobReader
from sinks.loader import SinkLoader
from sinks.migrations import Layout, apply_migrations
from sinks.queries import CONTENT_TYPES, AnalystQueries, clickhouse_format
from sinks.read_model import ClickHouseEventReader
from sinks.settings import ClickHouseSettings, SinkSettings

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# roles of a route: who may call it (ADMIN may call every route)
ANALYST, SCHOOL, READER, ADMIN = "analyst", "school", "reader", "admin"
ACCEPTED = {SCHOOL: {ADMIN, ANALYST, SCHOOL}, ANALYST: {ADMIN, ANALYST}, READER: {ADMIN, READER}, ADMIN: {ADMIN}}


@dataclass(slots=True)
class SinkProcess:
    settings: SinkSettings
    clickhouse: ClickHouseSettings
    writer: ClickHouse  # the loader's client
    loader: SinkLoader
    queries: AnalystQueries  # analysts' statements (POST /sql)
    probe: ClickHouse  # readiness pings, on a connection of their own
    student_key_secret: bytes = b""
    reads: AnalystQueries | None = None  # the read side's own pool (None: the analysts' pool, in tests)

    @property
    def read_pool(self) -> AnalystQueries:
        return self.reads or self.queries

    @property
    def layout(self) -> Layout:
        return Layout(self.clickhouse.database, self.clickhouse.cluster)


SINK_PROCESS = web.AppKey("sink_process", SinkProcess)
REQUIRED_ROLE = web.AppKey("required_role", dict)
ANALYSTS = web.AppKey("analysts", AnalystRegistry)
# school credentials checked at once (one scrypt each, in the default executor's threads): a flood of wrong secrets
# waits on the event loop instead of taking the threads /readyz's ping and the erasure need
SECRET_CHECKS = web.AppKey("secret_checks", asyncio.Semaphore)
MAX_SECRET_CHECKS = 2
PRINCIPAL = web.RequestKey("analyst", Analyst)  # who runs /sql (the admin, the operator's analyst, a school's)


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _operator_role(token: str, settings: SinkSettings) -> str | None:
    """The role of one of the operator's tokens (admin, reader, analyst), else None."""
    offered = token.encode("utf-8", "surrogateescape")
    for role, configured in ((ADMIN, settings.admin_token), (READER, settings.reader_token),
                             (ANALYST, settings.analyst_token)):
        expected = configured.get_secret_value().encode()
        if expected and hmac.compare_digest(expected, offered):
            return role
    return None


async def _offered(request: web.Request) -> tuple[str, Analyst | None] | None:
    """The caller's role and, for an analyst, who it is (a school credential costs a scrypt, in a thread, unless
    verified before); None without a valid credential."""
    token = _bearer(request)
    if token is None:
        return None
    settings = request.app[SINK_PROCESS].settings
    role = _operator_role(token, settings)
    if role is not None:
        return role, {ADMIN: ADMINISTRATOR, ANALYST: OPERATOR}.get(role)
    if ":" not in token:
        return None
    async with request.app[SECRET_CHECKS]:
        analyst = await asyncio.to_thread(authenticate_bearer, request.app[ANALYSTS],
                                          settings.analyst_token.get_secret_value(), token)
    return (SCHOOL, analyst) if analyst is not None else None


async def clickhouse_user(app: web.Application, user: str, secret: str) -> Analyst | None:
    """The analyst a ClickHouse client's user and password are: a user of ``OPERATOR_USERS`` with the operator's
    analyst token (or the admin token: both read the analysts' tables only there), else a school credential's id
    and secret (a scrypt in a thread, as many at once as the bearer tokens')."""
    if user.lower() in OPERATOR_USERS:
        role = _operator_role(secret, app[SINK_PROCESS].settings)
        return {ADMIN: ADMINISTRATOR, ANALYST: OPERATOR}.get(role or "")
    if not ANALYST_ID.fullmatch(user):
        return None
    async with app[SECRET_CHECKS]:
        return await asyncio.to_thread(app[ANALYSTS].verify, user, secret)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Credentials per route, and every error as JSON (the catch-all keeps internals out of the answer)."""
    route = request.match_info.route.resource
    needed = request.app[REQUIRED_ROLE].get(route.canonical if route is not None else "", ADMIN)
    try:
        if needed is not None and request.match_info.http_exception is None:
            offered = await _offered(request)
            if offered is None or offered[0] not in ACCEPTED[needed]:
                what = "an analyst credential" if needed == SCHOOL else f"the {needed} token"
                return _error(401, f"{what} is required (Authorization: Bearer <token>)",
                              {"WWW-Authenticate": 'Bearer realm="caliper-sink"'})
            if offered[1] is not None:
                request[PRINCIPAL] = offered[1]
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() in ("allow", "retry-after")}
        return _error(error.status, error.reason, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error; see the sink's log")


def build_app(process: SinkProcess) -> web.Application:
    app = web.Application(client_max_size=process.settings.queries.max_query_bytes + 1024, middlewares=[guard])
    app[SINK_PROCESS] = process
    app[ANALYSTS] = AnalystRegistry(process.settings.analysts_file)
    app[SECRET_CHECKS] = asyncio.Semaphore(MAX_SECRET_CHECKS)
    app[REQUIRED_ROLE] = {"/healthz": None, "/readyz": None, "/metrics": ANALYST, "/sql": SCHOOL,
                          READ_EVENTS_PATH: READER, READ_JOBS_PATH: READER, "/admin/erase": ADMIN,
                          "/archive/raw-events": ADMIN, "/admin/failed-events": ADMIN,
                          "/": None, "/ping": None}  # ClickHouse's HTTP interface checks its own credentials
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/sql", sql)
    app.router.add_post(READ_EVENTS_PATH, read_events)
    app.router.add_post(READ_JOBS_PATH, read_job)
    app.router.add_post("/admin/erase", admin_erase)
    app.router.add_post("/archive/raw-events", archived_events)
    app.router.add_post("/admin/failed-events", failed_messages)
    clickhouse_http.add_routes(app, SINK_PROCESS, clickhouse_user)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    reachable = await asyncio.to_thread(process.probe.ping)
    ready = reachable and process.loader.ready
    body: dict[str, Any] = {"ready": ready}
    token = _bearer(request)
    if token is not None and _operator_role(token, process.settings) is not None:
        body |= {"clickhouse": reachable, "consuming": process.loader.started,
                 "backing_off": process.loader.backing_off, "paused_partitions": len(process.loader.paused)}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[SINK_PROCESS].loader.metrics.registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def sql(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    counter = process.loader.metrics.queries
    try:
        fmt = clickhouse_format(request.query.get("format", "json"))
    except ValueError as error:
        return _error(400, str(error), field="format")
    try:
        statement = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "the body is not UTF-8 text: send the statement as UTF-8", field="body")
    try:
        body = await process.queries.run(statement, fmt, analyst=request[PRINCIPAL])
    except QueryRejectedError as error:
        counter.labels("rejected").inc()
        return _error(400, str(error))
    except QueryLimitError as error:
        counter.labels("limited").inc()
        return _error(422, str(error), limit=error.limit)
    except QueryCapacityError as error:
        counter.labels("busy").inc()
        return _error(429, str(error), {"Retry-After": str(error.retry_after)})
    except ClickHouseQueryError as error:
        counter.labels("failed").inc()
        return _error(400, str(error).splitlines()[0][:1000] if str(error) else "the query failed")
    except SinkError as error:
        counter.labels("unavailable").inc()
        log.warning("query failed: %s", error)
        return _error(503, "ClickHouse cannot answer now", {"Retry-After": "5"})
    counter.labels("ok").inc()
    return web.Response(body=body, content_type=CONTENT_TYPES.get(fmt, "text/plain"), charset="utf-8")


def _event_query(payload: Any) -> EventQuery:
    """An EventQuery from the gateway's JSON; ValueError naming the field."""
    if not isinstance(payload, dict):
        raise ValueError("a JSON object is expected")
    if not isinstance(payload.get("tenant"), str) or not payload["tenant"]:
        raise ValueError("tenant must be a non-empty string")
    query = EventQuery.from_json(payload)
    for name, low, high in (("limit", 1, MAX_PAGE_SIZE), ("offset", 0, MAX_OFFSET)):
        value = getattr(query, name)
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{name} must be an integer between {low} and {high}")
    for name in ("sensor", "actor_id", "event_type", "profile", "actor_email", "event_id", "after_event_id"):
        if not isinstance(getattr(query, name), str):
            raise ValueError(f"{name} must be a string")
    for name in ("start_ms", "end_ms", "after_time_ms"):
        if getattr(query, name) is not None and type(getattr(query, name)) is not int:
            raise ValueError(f"{name} must be an integer or null")
    return query


async def read_events(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    try:
        query = _event_query(await request.json())
    except ValueError as error:
        return _error(400, str(error))
    try:
        page = await ClickHouseEventReader(process.read_pool).read_events(query)
    except ReadBusyError as error:
        return _error(429, str(error), {"Retry-After": str(error.retry_after)})
    except ReadUnavailableError:
        return _error(503, "the events cannot be read now", {"Retry-After": "5"})
    return web.json_response(page.to_json())


async def read_job(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    try:
        payload: Any = await request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("tenant"), str) or not payload["tenant"] \
            or not isinstance(payload.get("job_id"), str) or not JOB_ID_PATTERN.fullmatch(payload["job_id"]):
        return _error(400, "a JSON object with tenant (a non-empty string) and job_id (a job id) is expected")
    reader = ClickHouseJobReader(process.read_pool, process.loader.kafka.topics.facts)
    try:
        status = await reader.read_job(payload["tenant"], payload["job_id"])
    except ReadBusyError as error:
        return _error(429, str(error), {"Retry-After": str(error.retry_after)})
    except ReadUnavailableError:
        return _error(503, "the job cannot be read now", {"Retry-After": "5"})
    if status is None:
        return _error(404, "no record of this job")
    return web.json_response(status.to_json())


async def admin_erase(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    try:
        payload: Any = await request.json()
    except ValueError:
        return _error(400, "a JSON body with tenant, student_id and requested_by is expected")
    if not isinstance(payload, dict):
        return _error(400, "a JSON object with tenant, student_id and requested_by is expected")
    for name in ("tenant", "student_id", "requested_by"):
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            return _error(400, f"{name} must be a non-empty string", field=name)
    try:
        deleted = await asyncio.to_thread(
            erase_student, process.writer, process.layout, payload["tenant"], payload["student_id"],
            payload["requested_by"], key=process.student_key_secret, write_lock=process.loader.sink.write_lock)
    except SinkError as error:
        log.warning("erasure failed: %s", error)
        return _error(503, f"the erasure could not be completed: {type(error).__name__}", {"Retry-After": "5"})
    return web.json_response({"rows_deleted": deleted})


async def failed_messages(request: web.Request) -> web.Response:
    """The failed messages a selection names (``sinks.failed_read``), one JSON object per line."""
    process = request.app[SINK_PROCESS]
    try:
        selection = FailedSelection.from_json(await request.json())
    except ValueError as error:
        return _error(400, str(error))
    reads = process.read_pool
    try:
        rows = await reads.slots.call(ADMIN, select_failed, reads.rows_blocking, reads.database, selection)
    except QueryCapacityError as error:
        return _error(429, str(error), {"Retry-After": str(error.retry_after)})
    except SinkError as error:
        log.warning("failed events cannot be read: %s", error)
        return _error(503, "the failed events cannot be read now", {"Retry-After": "5"})
    return web.Response(body=ndjson(rows), content_type="application/x-ndjson")


def _archive_range(payload: Any) -> tuple[str, int | None, int | None]:
    """``tenant``, ``from_ms``, ``to_ms`` of an archive request; ValueError naming the field."""
    if not isinstance(payload, dict):
        raise ValueError("a JSON object with tenant, from_ms and to_ms is expected")
    tenant = payload.get("tenant")
    if not isinstance(tenant, str) or not tenant.strip():
        raise ValueError("tenant must be a non-empty string")
    bounds = []
    for name in ("from_ms", "to_ms"):
        value = payload.get(name)
        if value is not None and (type(value) is not int or not -(2**62) < value < 2**62):
            raise ValueError(f"{name} must be an integer (UTC epoch milliseconds) or null")
        bounds.append(value)
    return tenant, bounds[0], bounds[1]


async def archived_events(request: web.Request) -> web.StreamResponse:
    """A tenant's archived events received in ``[from_ms, to_ms)``, one ``schemas.archive.ArchivedEvent`` per
    line; the count in ``X-Total-Count`` (taken before the stream starts)."""
    process = request.app[SINK_PROCESS]
    try:
        tenant, from_ms, to_ms = _archive_range(await request.json())
    except ValueError as error:
        return _error(400, str(error))
    reads = process.read_pool
    rows, database = reads.rows_blocking, reads.database
    try:
        async with reads.slots.slot(ADMIN):  # one slot for the whole stream, in the read pool's threads
            try:
                total = await reads.slots.in_thread(count_archived, rows, database, tenant, from_ms, to_ms)
            except SinkError as error:
                log.warning("archive count failed: %s", error)
                return _error(503, "the archive cannot be read now", {"Retry-After": "5"})
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                                   "X-Total-Count": str(total)})
            await response.prepare(request)
            pages = read_archived(rows, database, tenant, from_ms, to_ms)
            while True:
                page = await reads.slots.in_thread(next, pages, None)  # a failure ends the stream short: seen
                if page is None:
                    break
                await response.write(b"".join(event.to_json() + b"\n" for event in page))
            await response.write_eof()
            return response
    except QueryCapacityError as error:
        return _error(429, str(error), {"Retry-After": str(error.retry_after)})


async def run_sink(sink: SinkSettings, clickhouse: ClickHouseSettings, kafka: KafkaSettings, *,
                   student_key_secret: bytes = b"") -> None:
    """Apply migrations, then run the loader and the HTTP endpoints until cancelled."""
    writer = await asyncio.to_thread(connect, clickhouse, create_database=True)
    probe: ClickHouse | None = None
    queries = AnalystQueries(clickhouse, sink.queries)
    reads = AnalystQueries(clickhouse, sink.reads, name="reads")
    try:
        await asyncio.to_thread(apply_migrations, writer, Layout(clickhouse.database, clickhouse.cluster))
        probe = await asyncio.to_thread(connect, clickhouse)
        layout = Layout(clickhouse.database, clickhouse.cluster)
        await asyncio.to_thread(apply_archive_ttl, writer, layout, sink.archive_ttl_days)
        loader = SinkLoader(sink, kafka, writer, student_key=student_key_secret)
        process = SinkProcess(sink, clickhouse, writer, loader, queries, probe, student_key_secret, reads)
        runner = web.AppRunner(build_app(process), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, sink.http_host, sink.http_port).start()
            log.info("sink serving http://%s:%s, loading %s", sink.http_host, sink.http_port, ", ".join(loader.topics))
            await loader.run()
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()
    finally:
        await asyncio.to_thread(queries.close)
        await asyncio.to_thread(reads.close)
        if probe is not None:
            await asyncio.to_thread(probe.close)
        await asyncio.to_thread(writer.close)
