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

The credentials and the one middleware that checks them per route are ``sinks.middlewares``. The health probes
answer anyone, and say nothing but ready or not to a caller without an operator's token. Every error is JSON
``{"error": ...}``; an unexpected exception is logged and answered 500 without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

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
    AnalystRegistry,
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
from sinks.middlewares import (
    ADMIN,
    ANALYST,
    ANALYSTS,
    MAX_SECRET_CHECKS,
    PRINCIPAL,
    READER,
    REQUIRED_ROLE,
    SCHOOL,
    SECRET_CHECKS,
    bearer_token,
    clickhouse_user,
    error_response,
    guard,
    operator_role,
)
from sinks.migrations import Layout, apply_migrations
from sinks.process import SINK_PROCESS, SinkProcess
from sinks.queries import CONTENT_TYPES, AnalystQueries, clickhouse_format
from sinks.read_model import ClickHouseEventReader
from sinks.settings import ClickHouseSettings, SinkSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    token = bearer_token(request)
    if token is not None and operator_role(token, process.settings) is not None:
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
        return error_response(400, str(error), field="format")
    try:
        statement = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        return error_response(400, "the body is not UTF-8 text: send the statement as UTF-8", field="body")
    try:
        body = await process.queries.run(statement, fmt, analyst=request[PRINCIPAL])
    except QueryRejectedError as error:
        counter.labels("rejected").inc()
        return error_response(400, str(error))
    except QueryLimitError as error:
        counter.labels("limited").inc()
        return error_response(422, str(error), limit=error.limit)
    except QueryCapacityError as error:
        counter.labels("busy").inc()
        return error_response(429, str(error), {"Retry-After": str(error.retry_after)})
    except ClickHouseQueryError as error:
        counter.labels("failed").inc()
        return error_response(400, str(error).splitlines()[0][:1000] if str(error) else "the query failed")
    except SinkError as error:
        counter.labels("unavailable").inc()
        log.warning("query failed: %s", error)
        return error_response(503, "ClickHouse cannot answer now", {"Retry-After": "5"})
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


async def _json_body(request: web.Request) -> Any:
    """The request's body read as JSON; None when it is not JSON (the caller's check of its shape refuses it)."""
    try:
        return await request.json()
    except ValueError:
        return None


async def _gateway_read(read: Awaitable[T], what: str) -> T | web.Response:
    """What a read for the gateway returns, or the answer to its failure: 429 with the read side's
    ``Retry-After`` when it serves as many reads as it may, 503 when it cannot read ``what`` now."""
    try:
        return await read
    except ReadBusyError as error:
        return error_response(429, str(error), {"Retry-After": str(error.retry_after)})
    except ReadUnavailableError:
        return error_response(503, f"{what} cannot be read now", {"Retry-After": "5"})


async def read_events(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    try:
        query = _event_query(await request.json())
    except ValueError as error:
        return error_response(400, str(error))
    page = await _gateway_read(ClickHouseEventReader(process.read_pool).read_events(query), "the events")
    if isinstance(page, web.Response):
        return page
    return web.json_response(page.to_json())


async def read_job(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    payload = await _json_body(request)
    if not isinstance(payload, dict) or not isinstance(payload.get("tenant"), str) or not payload["tenant"] \
            or not isinstance(payload.get("job_id"), str) or not JOB_ID_PATTERN.fullmatch(payload["job_id"]):
        return error_response(400, "a JSON object with tenant (a non-empty string) and job_id (a job id) is expected")
    reader = ClickHouseJobReader(process.read_pool, process.loader.kafka.topics.facts)
    status = await _gateway_read(reader.read_job(payload["tenant"], payload["job_id"]), "the job")
    if isinstance(status, web.Response):
        return status
    if status is None:
        return error_response(404, "no record of this job")
    return web.json_response(status.to_json())


async def admin_erase(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    payload = await _json_body(request)
    if not isinstance(payload, dict):
        return error_response(400, "a JSON object with tenant, student_id and requested_by is expected")
    for name in ("tenant", "student_id", "requested_by"):
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            return error_response(400, f"{name} must be a non-empty string", field=name)
    try:
        deleted = await asyncio.to_thread(
            erase_student, process.writer, process.layout, payload["tenant"], payload["student_id"],
            payload["requested_by"], key=process.student_key_secret, write_lock=process.loader.sink.write_lock)
    except SinkError as error:
        log.warning("erasure failed: %s", error)
        return error_response(503, f"the erasure could not be completed: {type(error).__name__}", {"Retry-After": "5"})
    return web.json_response({"rows_deleted": deleted})


async def failed_messages(request: web.Request) -> web.Response:
    """The failed messages a selection names (``sinks.failed_read``), one JSON object per line."""
    process = request.app[SINK_PROCESS]
    try:
        selection = FailedSelection.from_json(await request.json())
    except ValueError as error:
        return error_response(400, str(error))
    reads = process.read_pool
    try:
        rows = await reads.slots.call(ADMIN, select_failed, reads.rows_blocking, reads.database, selection)
    except QueryCapacityError as error:
        return error_response(429, str(error), {"Retry-After": str(error.retry_after)})
    except SinkError as error:
        log.warning("failed events cannot be read: %s", error)
        return error_response(503, "the failed events cannot be read now", {"Retry-After": "5"})
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
        return error_response(400, str(error))
    reads = process.read_pool
    rows, database = reads.rows_blocking, reads.database
    try:
        async with reads.slots.slot(ADMIN):  # one slot for the whole stream, in the read pool's threads
            try:
                total = await reads.slots.in_thread(count_archived, rows, database, tenant, from_ms, to_ms)
            except SinkError as error:
                log.warning("archive count failed: %s", error)
                return error_response(503, "the archive cannot be read now", {"Retry-After": "5"})
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
        return error_response(429, str(error), {"Retry-After": str(error.retry_after)})


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
