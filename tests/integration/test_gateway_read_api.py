"""GET /caliper/events: a sender reads its own tenant's events (real chDB).

The gateway reaches the store through the ``schemas.read_api.EventReader`` protocol; here, as under
``caliper-pipeline up``, the reader is ``sinks.read_client.HttpEventReader``: the sink's ``POST /read/events`` runs
the read model (``sinks.read_model``, bound parameters) in the process that owns the embedded engine. The
query-parameter checks are unit tests (``tests/unit/test_gateway_read_params.py``)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.clients import ClientRegistry
from gateway.main import build_app
from gateway.settings import INGEST_SCOPE, GatewaySettings
from schemas.kafka import KafkaSettings
from schemas.read_api import EventQuery
from schemas.records import LearningFact, fact_id_for
from sinks.clickhouse import connect
from sinks.http import SinkProcess
from sinks.http import build_app as build_sink_app
from sinks.loader import FactLoader
from sinks.migrations import Layout, apply_migrations
from sinks.queries import AnalystQueries
from sinks.read_client import HttpEventReader
from sinks.read_model import ClickHouseEventReader, events_sql
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.tables import FACT_INPUT_TABLE, fact_records, facts_to_arrow
from sinks.writer import INSERT_SETTINGS

pytestmark = pytest.mark.integration
DAY_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z


def _fact(number: int, tenant: str, student: str, sensor: str = "https://app.example/s") -> LearningFact:
    event_id = f"urn:uuid:00000000-0000-0000-0000-{number:012d}"
    return LearningFact(fact_id=fact_id_for(tenant, event_id), fact_index=0, content_hash=f"h{number}", tenant=tenant,
                        client_id="c", source="timeback", event_id=event_id, event_type="ActivityEvent",
                        profile="TimebackProfile", action="Completed", event_time_ms=DAY_MS + number * 60_000,
                        send_time_ms=0, received_time_ms=DAY_MS, student_id=student, sensor=sensor,
                        xp_earned=float(number))


async def test_sender_reads_only_its_tenant_with_filters(tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    clickhouse = ClickHouseSettings(data_path=tmp_path / "chdb")
    target = connect(clickhouse, create_database=True)
    apply_migrations(target, Layout("learning"))
    facts = [_fact(i, "school-a", f"s{i % 2}") for i in range(1, 7)] + [_fact(50, "school-b", "s0")]
    facts.append(replace(_fact(7, "school-a", "s1"), sensor="https://other.example/s"))
    facts.append(_fact(8, "school-a", "x' OR 1=1 --/* */"))  # an actor id that looks like SQL, stored as sent
    target.insert_arrow(FACT_INPUT_TABLE, facts_to_arrow(fact_records(facts)),
                        {**INSERT_SETTINGS, "insert_deduplication_token": "read-api-test"})
    token = secrets.token_urlsafe(24)
    sink_settings = SinkSettings(analyst_token=token)  # type: ignore[arg-type]
    loader = FactLoader(sink_settings, kafka_settings, target)
    queries = AnalystQueries(clickhouse, sink_settings.queries)
    sink_app = build_sink_app(SinkProcess(sink_settings, clickhouse, target, loader, queries, target))
    try:
        async with TestServer(sink_app) as sink_server:
            reader = HttpEventReader(str(sink_server.make_url("")), token)
            settings = GatewaySettings(clients_file=tmp_path / "clients.json", jwt_secret=secrets.token_urlsafe(32))
            registry = ClientRegistry(settings.clients_file)
            _, secret = registry.add("school-a", client_id="reader")
            _, writer_secret = registry.add("school-a", client_id="writer", scopes=(INGEST_SCOPE,))
            async with TestClient(TestServer(build_app(settings, kafka_settings, reader=reader))) as client:
                async def token(client_id: str, client_secret: str) -> str:
                    response = await client.post("/oauth2/token", data={
                        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
                    return str((await response.json())["access_token"])

                auth = {"Authorization": f"Bearer {await token('reader', secret)}"}
                tricky = await (await client.get("/caliper/events", headers=auth,
                                                 params={"actorId": "x' OR 1=1 --/* */"})).json()
                assert [e["xp_earned"] for e in tricky["events"]] == [8.0]  # the value as sent, not rewritten
                everything = await (await client.get("/caliper/events", headers=auth, params={"limit": "7"})).json()
                assert everything["count"] == 7 and {e["student_id"] for e in everything["events"]} >= {"s0", "s1"}
                assert everything["events"][0]["event_time"].endswith("Z")  # ISO 8601 UTC
                assert all(e["event_id"] != facts[6].event_id for e in everything["events"])  # school-b's
                page = await (await client.get("/caliper/events", headers=auth,
                                               params={"limit": "2", "offset": "1"})).json()
                assert [e["xp_earned"] for e in page["events"]] == [7.0, 6.0]
                actor = await (await client.get("/caliper/events", headers=auth, params={"actorId": "s0"})).json()
                assert sorted(e["xp_earned"] for e in actor["events"]) == [2.0, 4.0, 6.0]
                window = await (await client.get("/caliper/events", headers=auth, params={
                    "startDate": "2023-11-15T00:02:00Z", "endDate": "2023-11-15T00:04:00.000"})).json()
                assert sorted(e["xp_earned"] for e in window["events"]) == [2.0, 3.0]
                sensor = await (await client.get("/caliper/events", headers=auth,
                                                 params={"sensor": "https://other.example/s"})).json()
                assert [e["xp_earned"] for e in sensor["events"]] == [7.0]
                bad = await client.get("/caliper/events", headers=auth, params={"limit": "x", "startDate": "soon"})
                assert bad.status == 400
                assert {e["path"] for e in (await bad.json())["errors"]} == {"limit", "startDate"}
                assert (await client.get("/caliper/events")).status == 401
                writer = {"Authorization": f"Bearer {await token('writer', writer_secret)}"}
                assert (await client.get("/caliper/events", headers=writer)).status == 403
            await reader.close()
    finally:
        queries.close()
        target.close()


def test_filter_values_travel_as_bound_parameters() -> None:
    """Issue 11 finding 9: the read API stripped ``--`` and ``/* */`` even inside quoted values."""
    query = EventQuery(tenant="school-a", actor_id="x' OR 1=1 --", sensor="a/* b */c")
    sql, parameters = events_sql("learning", query)
    assert "x' OR" not in sql and "/*" not in sql and "'school-a'" not in sql
    assert parameters == {"tenant": "school-a", "actor": "x' OR 1=1 --", "sensor": "a/* b */c", "limit": 100,
                          "offset": 0}


def test_the_reader_turns_store_failures_into_read_unavailable(tmp_path: Path) -> None:
    from schemas.read_api import ReadUnavailableError

    class Down:
        database = "learning"

        def rows_blocking(self, sql: str, parameters: object) -> None:
            from sinks.errors import ClickHouseUnavailableError
            raise ClickHouseUnavailableError("SELECT secret FROM internals")

        def close(self) -> None: ...

    with pytest.raises(ReadUnavailableError) as error:
        ClickHouseEventReader(Down()).read_blocking(EventQuery(tenant="t"))  # type: ignore[arg-type]
    assert "SELECT" not in str(error.value)
