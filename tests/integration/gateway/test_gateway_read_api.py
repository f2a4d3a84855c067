"""GET /caliper/events: a sender reads its own tenant's events back as it sent them (real chDB).

The gateway reaches the store through the ``schemas.read_api.EventReader`` protocol; here, as under
``caliper-pipeline up``, the reader is ``gateway.read_client.HttpEventReader``: the sink's ``POST /read/events`` runs
the read model (``sinks.read_model``, bound parameters, over the raw archive) in the process that owns the embedded
engine. The events are archived the way the sink loads the raw topics (the raw archive's target). The
query-parameter checks are unit tests (``tests/unit/gateway/test_gateway_read_params.py``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from published import archived_by_worker

from gateway.clients import ClientRegistry
from gateway.main import build_app
from gateway.read_client import HttpEventReader
from gateway.settings import INGEST_SCOPE, GatewaySettings
from schemas.blocks import RawArchiveRowCodec, archive_block_codec
from schemas.kafka import KafkaSettings
from schemas.read_api import EventQuery
from schemas.records import RawEvent
from schemas.timeback_read import stored_event_id
from sinks.archive import raw_archive_target
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse, connect
from sinks.http import SinkProcess
from sinks.http import build_app as build_sink_app
from sinks.loader import SinkLoader
from sinks.migrations import Layout, apply_migrations
from sinks.queries import AnalystQueries
from sinks.read_model import ClickHouseEventReader, page_sql
from sinks.settings import ClickHouseSettings, SinkSettings

pytestmark = pytest.mark.integration
DAY_MS = (int(time.time()) // 86_400 - 2) * 86_400_000  # two days ago, 00:00 UTC: within the archive's retention
KEY = b"read-api-student-key"


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def raw(number: int, tenant: str, actor: str, *, sensor: str = "https://app.example/s", xp: float | None = None,
        event_type: str = "ActivityEvent", send_ms: int | None = None, received_ms: int | None = None) -> RawEvent:
    event_id = f"urn:uuid:00000000-0000-0000-0000-{number:012d}"
    payload = {"@context": "http://purl.imsglobal.org/ctx/caliper/v1p2", "id": event_id, "type": event_type,
               "profile": "TimebackProfile" if event_type == "ActivityEvent" else "GeneralProfile",
               "action": "Completed", "actor": {"id": actor, "type": "TimebackUser"},
               "object": {"id": "https://app.example/r/1", "type": "TimebackActivityContext"},
               "eventTime": iso(DAY_MS + number * 60_000),
               "generated": {"id": "https://app.example/m/1", "type": "TimebackActivityMetricsCollection",
                             "items": [{"type": "xpEarned", "value": float(number) if xp is None else xp}]}}
    return RawEvent(tenant=tenant, client_id="c", source="timeback", event_id=event_id, event_type=event_type,
                    profile=payload["profile"], student_id=actor, sensor=sensor,
                    send_time_ms=DAY_MS + number * 60_000 + 1000 if send_ms is None else send_ms,
                    received_time_ms=DAY_MS + number * 60_000 + 2000 if received_ms is None else received_ms,
                    envelope_index=0, payload=orjson.dumps(payload))


def archive(target: ClickHouse, events: list[RawEvent], first_offset: int) -> None:
    """Archive raw events as the pipeline does: the worker's archive blocks, loaded by the sink's archive target."""
    rows = RawArchiveRowCodec()
    sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=60,
                     default_target=raw_archive_target(rows, archive_block_codec(rows)))
    for offset, message in enumerate(archived_by_worker(events, KEY), start=first_offset):
        sink.add(message, "caliper.archive", 0, offset)
    for batch in sink.take_due(now=1e12):
        assert sink.write(batch).rejected == 0


Get = Callable[..., Awaitable[Any]]


@asynccontextmanager
async def read_api(tmp_path: Path, kafka_settings: KafkaSettings,
                   events: list[RawEvent]) -> AsyncIterator[tuple[ClickHouse, Get, TestClient, dict[str, str]]]:
    """A sink app over a fresh archive holding ``events``, and a gateway reading through it: ``get(params)``
    returns the JSON of a GET /caliper/events of school-a's reader; the last item is the headers of a school-a
    client that may only write."""
    clickhouse = ClickHouseSettings(data_path=tmp_path / "chdb")
    target = connect(clickhouse, create_database=True)
    apply_migrations(target, Layout("learning"))
    archive(target, events, 0)
    token = secrets.token_urlsafe(24)
    sink_settings = SinkSettings(reader_token=token)  # type: ignore[arg-type]
    loader = SinkLoader(sink_settings, kafka_settings, target)
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
                async def bearer(client_id: str, client_secret: str) -> dict[str, str]:
                    response = await client.post("/oauth2/token", data={
                        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
                    return {"Authorization": f"Bearer {(await response.json())['access_token']}"}

                auth = await bearer("reader", secret)

                async def get(params: dict[str, str] | None = None, url: str = "/caliper/events",
                              status: int = 200) -> Any:
                    answer = await client.get(url, headers=auth, params=params)
                    assert answer.status == status, await answer.text()
                    return await answer.json()

                yield target, get, client, await bearer("writer", writer_secret)
            await reader.close()
    finally:
        queries.close()
        target.close()


def xp_of(page: dict[str, Any]) -> list[float]:
    return [event["event"]["generated"]["items"][0]["value"] for event in page["events"]]


async def test_sender_reads_only_its_tenant_as_sent_with_filters(tmp_path: Path,
                                                                 kafka_settings: KafkaSettings) -> None:
    events = [raw(i, "school-a", f"s{i % 2}") for i in range(1, 7)] + [raw(50, "school-b", "s0")]
    events.append(raw(7, "school-a", "s1", sensor="https://other.example/s"))
    events.append(raw(8, "school-a", "x' OR 1=1 --/* */"))  # an actor id that looks like SQL, stored as sent
    events.append(raw(9, "school-a", "s1", event_type="ViewEvent"))
    async with read_api(tmp_path, kafka_settings, events) as (_, get, client, writer):
        tricky = await get({"actorId": "x' OR 1=1 --/* */"})
        assert xp_of(tricky) == [8.0]  # the value as sent, not rewritten
        everything = await get({"limit": "8"})
        assert everything["count"] == 8 and everything["next"] is not None
        first = everything["events"][0]
        assert first["event"] == orjson.loads(events[-1].payload)  # the event exactly as it was sent
        assert (first["source"], first["sensor"], first["versions"]) == ("timeback", "https://app.example/s", 1)
        assert first["eventTime"] == iso(DAY_MS + 9 * 60_000)  # ISO 8601 UTC with Z
        assert (first["sendTime"], first["receivedTime"]) == (iso(DAY_MS + 9 * 60_000 + 1000),
                                                              iso(DAY_MS + 9 * 60_000 + 2000))
        assert all(e["event"]["id"] != events[6].event_id for e in everything["events"])  # school-b's
        page = await get({"limit": "2", "offset": "1"})
        assert xp_of(page) == [8.0, 7.0]
        assert sorted(xp_of(await get({"actorId": "s0"}))) == [2.0, 4.0, 6.0]
        window = await get({"startDate": iso(DAY_MS + 2 * 60_000), "endDate": iso(DAY_MS + 4 * 60_000)[:-1]})
        assert sorted(xp_of(window)) == [2.0, 3.0]
        assert xp_of(await get({"sensor": "https://other.example/s"})) == [7.0]
        assert xp_of(await get({"eventType": "ViewEvent"})) == [9.0]
        assert xp_of(await get({"profile": "GeneralProfile", "actorId": "s1"})) == [9.0]
        assert (await get({"eventType": "GradeEvent"}))["events"] == []
        assert (await client.get("/caliper/events")).status == 401
        assert (await client.get("/caliper/events", headers=writer)).status == 403


async def test_a_corrected_event_appears_once_in_its_current_version(tmp_path: Path,
                                                                     kafka_settings: KafkaSettings) -> None:
    """v1 sent at 06:00, v2 at 06:05, then v1 again byte for byte (a late retry,
    received last). The read API shows the event once, as v2, and says it has two versions."""
    v1 = raw(1, "school-a", "s1", xp=10.0, send_ms=DAY_MS + 6 * 3_600_000, received_ms=DAY_MS + 6 * 3_600_000 + 5)
    v2 = raw(1, "school-a", "s1", xp=20.0, send_ms=DAY_MS + 6 * 3_600_000 + 300_000,
             received_ms=DAY_MS + 6 * 3_600_000 + 300_005)
    retry = replace(v1, received_time_ms=DAY_MS + 7 * 3_600_000)
    hub_like = [raw(2, "school-a", "s1", xp=5.0, send_ms=0, received_ms=DAY_MS + 1000),  # no sendTime: received
                raw(2, "school-a", "s1", xp=6.0, send_ms=0, received_ms=DAY_MS + 2000)]
    async with read_api(tmp_path, kafka_settings, [v1, v2, retry, *hub_like]) as (target, get, _, _):
        page = await get()  # newest event time first: event 2 (the hub-like one), then event 1
        assert [(e["event"]["id"], e["versions"]) for e in page["events"]] == [
            (hub_like[0].event_id, 2), (v2.event_id, 2)]
        assert xp_of(page) == [6.0, 20.0]
        assert page["events"][1]["sendTime"] == iso(v2.send_time_ms)
        # a source that sends no send time: the received time of the version shown (the Timeback API's sendTime
        # is always a date-time)
        assert page["events"][0]["sendTime"] == page["events"][0]["receivedTime"] == iso(DAY_MS + 2000)
        # the same event's id in upper case (finding 9) is the same event: one more version, not another event
        upper = replace(v2, event_id=v2.event_id.upper(), payload=v2.payload.replace(
            v2.event_id.encode(), v2.event_id.upper().encode()), received_time_ms=v2.received_time_ms + 1)
        archive(target, [upper], 100)
        again = (await get())["events"]
        assert [(e["event"]["id"].lower(), e["versions"]) for e in again] == [(hub_like[0].event_id, 2),
                                                                                (v2.event_id, 2)]
        # a filter applies to the current version: v1 had xp 10, the current one is in another sensor
        moved = replace(v2, sensor="https://moved.example/s", send_time_ms=v2.send_time_ms + 1,
                        received_time_ms=v2.received_time_ms + 10)
        moved = replace(moved, payload=moved.payload.replace(b"20.0", b"21.0"))
        archive(target, [moved], 200)
        assert xp_of(await get({"sensor": "https://app.example/s"})) == [6.0]
        assert xp_of(await get({"sensor": "https://moved.example/s"})) == [21.0]


async def test_the_next_link_walks_every_event_once(tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    events = [raw(i, "school-a", f"s{i % 3}") for i in range(1, 24)]
    events += [raw(100 + i, "school-a", "s1") for i in range(3)]
    # three events at the very same event time: the cursor's tie-break (the event id) must not skip or repeat them
    same_time = iso(DAY_MS + 30 * 60_000).encode()
    events[-3:] = [replace(e, payload=orjson.dumps({**orjson.loads(e.payload), "eventTime": same_time.decode()}))
                   for e in events[-3:]]
    async with read_api(tmp_path, kafka_settings, events) as (target, get, _, _):
        seen: list[str] = []
        page = await get({"limit": "5", "actorId": "s1"})
        pages = 1
        while True:
            seen += [e["event"]["id"] for e in page["events"]]
            if page["next"] is None:
                break
            assert "offset" not in page["next"] and "actorId=s1" in page["next"]
            archive(target, [raw(500 + pages, "school-a", "s1")], 1000 + pages)  # arrives while paging: newer
            page = await get(url=page["next"])
            pages += 1
        expected = [e.event_id for e in events if e.student_id == "s1"]
        assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
        assert pages == 3  # 11 events of s1, 5 a page: the last page says there is no next


async def test_timeback_fields_pagination_and_one_event(tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    """The Timeback API's shape: each event flattened with a stable numeric id, ``pagination`` counting every
    event the filters pass (from the page itself on the last page, else by a count in the same read), and
    ``GET /caliper/events/{externalId}``: the current version of one of the caller's tenant's events, 404 for
    another tenant's."""
    events = [raw(i, "school-a", f"s{i % 2}") for i in range(1, 8)] + [raw(50, "school-b", "s0")]
    with_email = orjson.loads(events[2].payload)
    with_email["actor"]["email"] = "s1@example.edu"
    events[2] = replace(events[2], payload=orjson.dumps(with_email))
    corrected = replace(events[0], payload=events[0].payload.replace(b'"value":1.0', b'"value":11.0'),
                        send_time_ms=events[0].send_time_ms + 5, received_time_ms=events[0].received_time_ms + 50)
    async with read_api(tmp_path, kafka_settings, [*events, corrected]) as (_, get, client, _):
        assert (await get({"limit": "3"}))["events"][0]["externalId"] == events[6].event_id
        first = await get({"limit": "3"})
        assert first["pagination"] == {"total": 7, "totalPages": 3, "currentPage": 1, "limit": 3}
        assert (await get({"limit": "3", "offset": "3"}))["pagination"]["currentPage"] == 2
        last = await get({"limit": "3", "offset": "6"})  # the last page: its total without a count
        assert last["count"] == 1 and last["pagination"] == {"total": 7, "totalPages": 3, "currentPage": 3,
                                                             "limit": 3}
        assert (await get({"limit": "3", "offset": "9"}))["pagination"]["total"] == 7  # past the end: counted
        followed = await get(url=first["next"])
        assert followed["pagination"] == first["pagination"] | {"currentPage": 2}  # a cursor's page, counted
        assert (await get({"actorId": "s0"}))["pagination"]["total"] == 3
        assert [e["externalId"] for e in (await get({"actorEmail": "s1@example.edu"}))["events"]] == [
            events[2].event_id]
        newest = first["events"][0]
        assert newest["id"] == stored_event_id(events[6].event_id) and newest["externalId"] == events[6].event_id
        assert (newest["type"], newest["action"], newest["profile"]) == ("ActivityEvent", "Completed",
                                                                         "TimebackProfile")
        assert newest["actor"] == {"id": "s1", "type": "TimebackUser"} and newest["clientAppId"] == "c"
        assert newest["generated"] == newest["event"]["generated"] and newest["deleted_at"] is None

        one = await get(url=f"/caliper/events/{quote(events[0].event_id.upper(), safe='')}")
        [listed] = [e for e in (await get({"limit": "10"}))["events"] if e["externalId"] == events[0].event_id]
        assert one == {"event": listed}  # one item of a page, its current version
        assert one["event"]["generated"]["items"][0]["value"] == 11.0 and one["event"]["versions"] == 2
        assert one["event"]["created_at"] == iso(events[0].received_time_ms)  # the first version's arrival
        assert one["event"]["updated_at"] == iso(corrected.received_time_ms)
        foreign = await get(url=f"/caliper/events/{quote(events[7].event_id, safe='')}", status=404)  # school-b's
        unknown = await get(url="/caliper/events/urn:uuid:00000000-0000-0000-0000-999999999999", status=404)
        assert foreign == unknown  # the same answer: no way to tell another tenant's event from none
        assert (await client.get(f"/caliper/events/{quote(events[0].event_id, safe='')}")).status == 401


def test_filter_values_travel_as_bound_parameters() -> None:
    """The read API stripped ``--`` and ``/* */`` even inside quoted values."""
    query = EventQuery(tenant="school-a", actor_id="x' OR 1=1 --", sensor="a/* b */c", event_type="'; DROP",
                       after_time_ms=5, after_event_id="x'y")
    sql, parameters = page_sql("learning", query)
    assert "x' OR" not in sql and "/*" not in sql and "'school-a'" not in sql and "DROP" not in sql
    assert {name: parameters[name] for name in ("tenant", "actor_id", "sensor", "event_type", "after_id")} == {
        "tenant": "school-a", "actor_id": "x' OR 1=1 --", "sensor": "a/* b */c", "event_type": "'; DROP",
        "after_id": "x'y"}


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
