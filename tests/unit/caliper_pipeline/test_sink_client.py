"""``caliper_pipeline.client.sink_client.SinkClient`` against the real sink HTTP app (embedded ClickHouse, a real
socket): the analyst token is sent, results come back in each format, and a refusal surfaces as a ``PipelineError`` that
carries the sink's own message (sync and async alike)."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sink_fixtures import SharedEngine, engine_settings, insert, make_fact, open_engine

from caliper_pipeline.client.sink_client import SinkClient, SinkClientError, SinkQueryError, SinkUnreachableError
from caliper_pipeline.local.broker import free_port
from schemas.errors import PipelineError
from schemas.kafka import KafkaSettings
from sinks.clickhouse import ClickHouse, connect
from sinks.http import SinkProcess, build_app
from sinks.loader import SinkLoader
from sinks.queries import AnalystQueries
from sinks.settings import QueryLimits, SinkSettings

ANALYST, ADMIN = "analyst-token-for-the-client-test", "admin-token-for-the-client-test"


@pytest.fixture(params=["chdb"])  # the HTTP contract does not depend on the engine
def target(request: pytest.FixtureRequest, tmp_path: Path,
           chdb_engine: SharedEngine) -> Iterator[ClickHouse]:
    yield from open_engine(request, tmp_path, None)


@pytest.fixture
async def sink_url(target: ClickHouse, tmp_path: Path) -> AsyncIterator[str]:
    insert(target, [make_fact(1, xp_earned=3.0), make_fact(2, student_id="student-2")], "a")
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), admin_token=SecretStr(ADMIN),
                            queries=QueryLimits(max_execution_seconds=5, max_memory_bytes=256 << 20))
    clickhouse = engine_settings(tmp_path)
    loader = SinkLoader(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), target)
    queries = AnalystQueries(clickhouse, settings.queries)
    probe = connect(clickhouse)
    app = build_app(SinkProcess(settings, clickhouse, target, loader, queries, probe, b"student-key-secret"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        queries.close()
        probe.close()


async def test_rows_and_formats_with_the_analyst_token(sink_url: str) -> None:
    client = SinkClient(sink_url, ANALYST)
    statement = "SELECT tenant, count() AS n FROM learning.learning_facts GROUP BY tenant"
    assert await asyncio.to_thread(client.rows, statement) == [{"tenant": "school-a", "n": 2}]
    csv = await asyncio.to_thread(client.query, "SELECT 1 AS one", "csv")
    assert csv.decode().splitlines() == ['"one"', "1"]
    async with aiohttp.ClientSession() as session:
        assert await client.rows_async(session, statement) == [{"tenant": "school-a", "n": 2}]


async def test_a_refusal_carries_the_sinks_message(sink_url: str) -> None:
    refused_statement = "SELECT * FROM file('/proc/self/environ', 'LineAsString')"
    for client, status in ((SinkClient(sink_url, "wrong-token"), 401), (SinkClient(sink_url), 401),
                           (SinkClient(sink_url, ANALYST), 400)):
        statement = refused_statement if status == 400 else "SELECT 1"
        with pytest.raises(SinkQueryError) as sync_error:
            await asyncio.to_thread(client.query, statement)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(SinkQueryError) as async_error:
                await client.query_async(session, statement)
        for error in (sync_error.value, async_error.value):
            assert isinstance(error, PipelineError) and error.status == status
            assert error.message and not error.message.startswith("{"), "the sink's message, not its JSON body"
            assert (status == 401) == ("analyst token" in str(error)), "a 401 says which credential is missing"
    assert "file" in sync_error.value.message


async def test_no_sink_is_an_unreachable_error() -> None:
    client = SinkClient(f"http://127.0.0.1:{free_port()}", ANALYST, timeout=5)
    with pytest.raises(SinkUnreachableError):
        await asyncio.to_thread(client.rows, "SELECT 1")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(SinkUnreachableError):
            await client.rows_async(session, "SELECT 1")
    with pytest.raises(SinkClientError, match="unknown SQL format"):
        client.url(typing.cast(typing.Any, "xml"))
