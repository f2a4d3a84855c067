"""The sink process: the loader plus its HTTP endpoints, served from the process that owns ClickHouse.

``GET /healthz`` (the process runs), ``GET /readyz`` (ClickHouse answers and the loader is not backing off),
``GET /metrics`` (Prometheus), ``POST /sql?format=JSON|CSV|Pretty`` (one read-only statement, the body),
``POST /admin/erase`` (JSON ``tenant``, ``student_id``, ``requested_by``; ``Authorization: Bearer <admin token>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.kafka import KafkaSettings
from sinks.erasure import erase_student
from sinks.errors import QueryRejectedError, SinkError
from sinks.loader import FactLoader
from sinks.migrations import Layout, apply_migrations
from sinks.query_client import check_read_only
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.targets import ClickHouseTarget, clickhouse_format, open_target

log = logging.getLogger(__name__)

_CONTENT_TYPES = {"JSON": "application/json", "JSONEachRow": "application/x-ndjson",
                  "CSVWithNames": "text/csv", "TabSeparatedWithNames": "text/tab-separated-values"}


@dataclass(slots=True)
class SinkProcess:
    settings: SinkSettings
    clickhouse: ClickHouseSettings
    target: ClickHouseTarget
    loader: FactLoader


SINK_PROCESS = web.AppKey("sink_process", SinkProcess)


def build_app(process: SinkProcess) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SINK_PROCESS] = process
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/sql", sql)
    app.router.add_post("/admin/erase", admin_erase)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    reachable = await asyncio.to_thread(process.target.ping)
    ready = reachable and process.loader.ready
    body = {"ready": ready, "clickhouse": reachable, "consuming": process.loader.started,
            "backing_off": process.loader.backing_off}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[SINK_PROCESS].loader.metrics.registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def sql(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    try:
        fmt = clickhouse_format(request.query.get("format", "JSON"))
        statement = check_read_only(await request.text())
    except (ValueError, QueryRejectedError) as error:
        return web.json_response({"error": str(error)}, status=400)
    try:
        body = await asyncio.to_thread(process.target.query_formatted, statement, fmt)
    except SinkError as error:
        return web.json_response({"error": str(error)}, status=400)
    return web.Response(body=body, content_type=_CONTENT_TYPES.get(fmt, "text/plain"), charset="utf-8")


async def admin_erase(request: web.Request) -> web.Response:
    process = request.app[SINK_PROCESS]
    token = process.settings.admin_token.get_secret_value()
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(token.encode(), offered.encode()):
        return web.json_response({"error": "admin token required"}, status=401)
    try:
        payload: Any = await request.json()
        tenant, student_id, requested_by = (str(payload[k]) for k in ("tenant", "student_id", "requested_by"))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "JSON body with tenant, student_id, requested_by expected"}, status=400)
    if not (tenant and student_id and requested_by):
        return web.json_response({"error": "tenant, student_id and requested_by must not be empty"}, status=400)
    key = process.settings.erasure_hash_key.get_secret_value().encode()
    try:
        deleted = await asyncio.to_thread(
            erase_student, process.target, tenant, student_id, requested_by,
            cluster=process.clickhouse.cluster, hash_key=key)
    except SinkError as error:
        return web.json_response({"error": str(error)}, status=503)
    return web.json_response({"rows_deleted": deleted})


async def run_sink(
    sink: SinkSettings, clickhouse: ClickHouseSettings, kafka: KafkaSettings,
    *, target: ClickHouseTarget | None = None,
) -> None:
    """Apply migrations, then run the loader and the HTTP endpoints until cancelled."""
    owned = target if target is not None else await asyncio.to_thread(open_target, clickhouse)
    try:
        await asyncio.to_thread(apply_migrations, owned, Layout(clickhouse.database, clickhouse.cluster))
        loader = FactLoader(sink, kafka, owned)
        runner = web.AppRunner(build_app(SinkProcess(sink, clickhouse, owned, loader)), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, sink.http_host, sink.http_port).start()
            log.info("sink serving http://%s:%s, loading %s", sink.http_host, sink.http_port, loader.topic)
            await loader.run()
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()
    finally:
        await asyncio.to_thread(owned.close)
