"""A flood of reads from one sender takes neither the loader's thread, nor the analysts' slots, nor the other
tenants' reads: the sink runs reads in a pool of their own (one read per tenant at a time, 429 past the queue), the
loader inserts in a thread of its own, and the gateway limits each client's read requests per second."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from gateway_doubles import FakeReader, gateway, gateway_settings
from pydantic import SecretStr
from sink_fixtures import SharedEngine, engine_settings, open_engine

from gateway.settings import READ_SCOPE
from schemas.kafka import KafkaSettings
from schemas.read_api import EventPage, EventQuery, ReadBusyError
from sinks.http import SinkProcess, build_app
from sinks.loader import SinkLoader
from sinks.queries import AnalystQueries
from sinks.read_model import ClickHouseEventReader
from sinks.settings import QueryLimits, SinkSettings

TOKEN, ANALYST = "reader-token-for-the-read-flood-test", "analyst-token-for-the-read-flood-test"
FLOOD = 40  # more reads than any default thread pool has threads (min(32, cores + 4))


class StuckReads:
    """Stands in for the read model's blocking read: the flooding tenant's reads wait until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def read_blocking(self, reader: ClickHouseEventReader, query: EventQuery) -> EventPage:
        if query.tenant == "flood":
            with self._lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            try:
                self.release.wait(60)
            finally:
                with self._lock:
                    self.running -= 1
        return EventPage(events=[], limit=query.limit, offset=query.offset, next_cursor=None)


@pytest.fixture(params=["chdb"])
async def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
               chdb_engine: SharedEngine) -> AsyncIterator[tuple[str, StuckReads, SinkLoader]]:
    opened = open_engine(request, tmp_path, None)
    target = next(opened)
    stuck = StuckReads()
    monkeypatch.setattr(ClickHouseEventReader, "read_blocking",
                        lambda reader, query: stuck.read_blocking(reader, query))
    settings = SinkSettings(reader_token=SecretStr(TOKEN), analyst_token=SecretStr(ANALYST),
                            queries=QueryLimits(max_execution_seconds=5, max_memory_bytes=256 << 20),
                            reads=QueryLimits(max_concurrent=2, max_per_caller=1, queue_seconds=0.5))
    clickhouse = engine_settings(tmp_path)
    loader = SinkLoader(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), target)
    queries = AnalystQueries(clickhouse, settings.queries)
    reads = AnalystQueries(clickhouse, settings.reads, name="reads")
    app = build_app(SinkProcess(settings, clickhouse, target, loader, queries, target, b"", reads))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), stuck, loader
    finally:
        stuck.release.set()
        await server.close()
        queries.close()
        reads.close()
        loader.threads.close()
        opened.close()


async def _read(session: aiohttp.ClientSession, url: str, tenant: str) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{url}/read/events", json=EventQuery(tenant=tenant).to_json(),
                            headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        return response.status, {"retry_after": response.headers.get("Retry-After"), "body": await response.json()}


async def test_one_tenants_read_flood_leaves_other_tenants_analysts_and_the_loader_served(
        sink: tuple[str, StuckReads, SinkLoader]) -> None:
    url, stuck, loader = sink
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        flood = [asyncio.ensure_future(_read(session, url, "flood")) for _ in range(FLOOD)]
        for _ in range(200):
            if stuck.running:
                break
            await asyncio.sleep(0.05)
        assert stuck.running, "the flood's first read is running"

        # while the flooding tenant's reads hold what they may, everyone else is served
        status, _ = await asyncio.wait_for(_read(session, url, "another-school"), 20)
        assert status == 200
        async with session.post(f"{url}/sql", data="SELECT 1 AS one",
                                headers={"Authorization": f"Bearer {ANALYST}"}) as response:
            assert response.status == 200 and (await response.json())["data"] == [{"one": 1}]
        assert await asyncio.wait_for(loader.threads.run(lambda: "inserted"), 20) == "inserted"

        # the flood itself: one read of the tenant at a time; the rest refused with Retry-After, not queued forever
        for _ in range(600):
            if sum(task.done() for task in flood) == FLOOD - 1:
                break
            await asyncio.sleep(0.05)
        stuck.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*flood), 60)
        refused = [answer for status, answer in answers if status == 429]
    assert stuck.most_running == 1
    assert refused and all(int(answer["retry_after"]) >= 1 for answer in refused)
    assert all("tenant" in answer["body"]["error"] or "reads" in answer["body"]["error"] for answer in refused)
    assert {status for status, _ in answers} <= {200, 429}


async def test_a_clients_reads_are_rate_limited_and_a_busy_read_side_is_429(tmp_path: Path) -> None:
    reader = FakeReader([{"event_id": "e1"}])
    settings = gateway_settings(tmp_path, read_requests_per_second=0.5, read_requests_burst=3)
    async with gateway(settings, reader=reader) as gw:
        flooding, _ = gw.add_client("school-a")
        other, _ = gw.add_client("school-b")
        flood_auth, other_auth = gw.auth(flooding, {READ_SCOPE}), gw.auth(other, {READ_SCOPE})
        statuses = []
        for _ in range(5):
            response = await gw.client.get("/caliper/events", headers=flood_auth)
            statuses.append(response.status)
        assert statuses == [200, 200, 200, 429, 429]
        assert int(response.headers["Retry-After"]) >= 1
        job = await gw.client.get("/jobs/whatever/status", headers=flood_auth)
        assert job.status == 429, "job status polls count against the same read rate"
        assert (await gw.client.get("/caliper/events", headers=other_auth)).status == 200

        reader.failure = ReadBusyError("one read of this tenant at a time", retry_after=3)
        busy = await gw.client.get("/caliper/events", headers=other_auth)
        assert busy.status == 429 and busy.headers["Retry-After"] == "3"
        assert "too many reads of this tenant" in (await busy.json())["message"]
