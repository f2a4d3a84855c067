"""The raw archive end to end on the real broker and the real engine: events POSTed to the gateway reach Kafka's raw
topics, the streams worker publishes their archive rows beside their facts and the sink's one loader appends them,
the read API returns the current version of a corrected event once, erasure removes a student's archived events and
keeps later ones out, and ``renormalize`` re-derives a tenant's facts from the archive with the same fact ids, the
new derivation becoming the current one."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from seed_payloads import CONTEXT, STUDENT_URN, seed_activity_event, seed_hub_event, with_value

from caliper_pipeline.ops.renormalize import renormalize
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from gateway.main import build_app
from gateway.read_client import HttpEventReader
from gateway.settings import INGEST_SCOPE, READ_SCOPE, GatewaySettings
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.avro.registry import raw_archive_codecs
from schemas.kafka import KafkaSettings, Source, crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings
from schemas.record_batches import OutboundRecord
from schemas.records import RawEvent
from sinks.clickhouse import ClickHouse, connect
from sinks.http import SinkProcess
from sinks.http import build_app as build_sink_app
from sinks.loader import SinkLoader
from sinks.migrations import Layout, apply_migrations
from sinks.queries import AnalystQueries
from sinks.settings import ClickHouseSettings, SinkSettings
from streams.normalizers import NormalizeOptions, normalize_with
from streams.processor import fact_key, stamp_derived
from streams.publishing import Blocks, KafkaPublisher
from streams.settings import StreamsSettings
from streams.worker import build_app as build_streams_app

pytestmark = pytest.mark.integration

PRIVACY = PrivacySettings(email_hash_key=SecretStr("archive-email-key"), student_key=SecretStr("archive-student-key"))
ANALYST, ADMIN, READER = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
SEND = "2026-11-20T06:00:00.000Z"


@dataclass
class Stack:
    kafka: KafkaSettings
    clickhouse: ClickHouseSettings
    target: ClickHouse
    loader: SinkLoader
    sink_url: str
    client: TestClient
    auth: dict[str, str]

    def count(self, sql: str) -> int:
        return int(self.target.scalar(sql))

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(condition):
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.2)

    async def send(self, *items: dict[str, Any], send_time: str = SEND) -> None:
        envelope = {"sensor": "https://app.example/sensor", "sendTime": send_time, "dataVersion": CONTEXT,
                    "data": list(items)}
        response = await self.client.post("/caliper/event", json=envelope, headers=self.auth)
        assert response.status == 200, await response.text()

    async def events(self, **params: str) -> dict[str, Any]:
        response = await self.client.get("/caliper/events", headers=self.auth, params=params)
        assert response.status == 200, await response.text()
        return dict(await response.json())


def streams_worker(kafka: KafkaSettings, facts: bool) -> faust.App:
    """A streams worker of its own group; with ``facts`` False it publishes everything but the facts (the archive
    rows, dead letters ...), so a test can put facts of its own on the facts topic."""
    settings = StreamsSettings(app_id=f"it-archive-{secrets.token_hex(4)}", worker_version="it")
    if facts:
        return build_streams_app(settings, kafka, PRIVACY)
    publish: list[KafkaPublisher] = []

    async def without_facts(records: Sequence[OutboundRecord]) -> None:
        await publish[0]([record for record in records if record.topic != kafka.topics.facts])

    app = build_streams_app(settings, kafka, PRIVACY, publisher=without_facts)
    publish.append(KafkaPublisher(app, Blocks({kafka.topics.archive: raw_archive_codecs(kafka)[1]},
                                              settings.block_max_bytes)))
    return app


@asynccontextmanager
async def archive_stack(tmp_path: Path, kafka: KafkaSettings, facts: bool = True) -> AsyncIterator[Stack]:
    """The sink (its loader with the student key: facts and the raw archive; its HTTP app), a streams worker
    (``streams_worker``) and a gateway that publishes to the broker and reads through the sink, for school-a."""
    clickhouse = ClickHouseSettings(data_path=tmp_path / "chdb")
    target = connect(clickhouse, create_database=True)
    apply_migrations(target, Layout("learning"))
    sink_settings = SinkSettings(batch_rows=500, batch_seconds=0.2, archive_batch_seconds=0.2,
                                 group_id=f"sink-{secrets.token_hex(4)}",
                                 analyst_token=SecretStr(ANALYST), admin_token=SecretStr(ADMIN),
                                 reader_token=SecretStr(READER))
    loader = SinkLoader(sink_settings, kafka, target, student_key=PRIVACY.student_key_bytes)
    queries = AnalystQueries(clickhouse, sink_settings.queries)
    process = SinkProcess(sink_settings, clickhouse, target, loader, queries, target, PRIVACY.student_key_bytes)
    loading = asyncio.create_task(loader.run())
    worker = streams_worker(kafka, facts)
    await worker.start()
    try:
        async with TestServer(build_sink_app(process)) as sink_server:
            sink_url = str(sink_server.make_url("")).rstrip("/")
            settings = GatewaySettings(clients_file=tmp_path / "clients.json", jwt_secret=secrets.token_urlsafe(32))
            _, secret = ClientRegistry(settings.clients_file).add("school-a", client_id="lms",
                                                                  scopes=(INGEST_SCOPE, READ_SCOPE))
            reader = HttpEventReader(sink_url, READER)
            async with TestClient(TestServer(build_app(settings, kafka, reader=reader))) as client:
                token = await client.post("/oauth2/token", data={
                    "grant_type": "client_credentials", "client_id": "lms", "client_secret": secret})
                auth = {"Authorization": f"Bearer {(await token.json())['access_token']}"}
                yield Stack(kafka, clickhouse, target, loader, sink_url, client, auth)
    finally:
        await worker.stop()
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        queries.close()
        target.close()


def activity(event_id: str, xp: float, actor: str = "https://example.edu/users/ana") -> dict[str, Any]:
    event = with_value(seed_activity_event(), "actor", {"id": actor, "type": "TimebackUser",
                                                         "email": "ana@example.edu"})
    event = with_value(event, "generated.items", [{"type": "xpEarned", "value": xp}])
    return {**event, "id": event_id, "eventTime": "2026-11-20T05:59:00.000Z"}


EVENT_X = "urn:uuid:7a7d3b6e-0000-4000-8000-000000000001"


async def test_a_corrected_event_is_read_back_once_in_its_current_version(tmp_path: Path,
                                                                          kafka_settings: KafkaSettings) -> None:
    """v1 sent at 06:00, v2 at 06:05, then v1 again byte for byte (a sender's late retry): the read API returns
    the event once, as v2 was sent, and says it has two versions."""
    async with archive_stack(tmp_path, kafka_settings) as stack:
        await stack.send(activity(EVENT_X, 10.0))
        await stack.send(activity(EVENT_X, 20.0), send_time="2026-11-20T06:05:00.000Z")
        await stack.send(activity(EVENT_X, 10.0))
        await stack.wait_for(lambda: stack.loader.rows_written >= 3)
        page = await stack.events()
        assert page["count"] == 1 and page["next"] is None
        [event] = page["events"]
        assert event["event"] == activity(EVENT_X, 20.0)  # as it was sent (the gateway's JSON of it)
        assert (event["versions"], event["sendTime"]) == (2, "2026-11-20T06:05:00.000Z")
        assert event["receivedTime"].endswith("Z") and event["eventTime"] == "2026-11-20T05:59:00.000Z"
        assert stack.count("SELECT count() FROM learning.raw_events FINAL") == 2


async def test_erasure_removes_the_students_archived_events_and_keeps_later_ones_out(
        tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    ana, bia = "https://example.edu/users/ana", "https://example.edu/users/bia"
    async with archive_stack(tmp_path, kafka_settings) as stack:
        await stack.send(activity("urn:uuid:7a7d3b6e-0000-4000-8000-00000000000a", 1.0, ana),
                         activity("urn:uuid:7a7d3b6e-0000-4000-8000-00000000000b", 2.0, ana),
                         activity("urn:uuid:7a7d3b6e-0000-4000-8000-00000000000c", 3.0, bia))
        await stack.wait_for(lambda: stack.count("SELECT count() FROM learning.raw_events") == 3)
        await stack.wait_for(lambda: stack.count("SELECT count() FROM learning.learning_facts") == 3)
        erase = await stack.client.session.post(
            f"{stack.sink_url}/admin/erase", json={"tenant": "school-a", "student_id": ana, "requested_by": "dpo"},
            headers={"Authorization": f"Bearer {ADMIN}"})
        # ana's two archived events and their two facts (the stack's worker derived them)
        assert erase.status == 200 and (await erase.json())["rows_deleted"] == 4
        assert stack.count("SELECT count() FROM learning.raw_events") == 1
        assert stack.count(f"SELECT countIf(position(payload, '{ana}') > 0) FROM learning.raw_events") == 0
        await stack.send(activity("urn:uuid:7a7d3b6e-0000-4000-8000-00000000000d", 4.0, ana))  # after the erasure
        archived = stack.loader.metrics.rows_inserted.labels("raw_events")
        await stack.wait_for(lambda: archived._value.get() >= 4)  # inserted, and dropped by the view
        assert stack.count("SELECT count() FROM learning.raw_events") == 1
        assert [e["event"]["actor"]["id"] for e in (await stack.events())["events"]] == [bia]


def old_derivation(raw: RawEvent) -> list[Any]:
    """The facts an older normalizer made of ``raw``: it took the actor for the student and
    counted no XP, a day earlier."""
    options = NormalizeOptions(b"archive-email-key", False, "caliper-streams/old", PRIVACY.student_key_bytes)
    return [replace(fact, student_id=raw.student_id or "app", xp_earned=0.0)
            for fact in stamp_derived(normalize_with(raw, options), at_ms=int(time.time() * 1000) - 86_400_000)]


async def test_renormalize_makes_the_new_derivation_current_with_the_same_fact_ids(
        tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    grade_by_app = {
        "@context": CONTEXT, "id": "urn:uuid:7a7d3b6e-0000-4000-8000-0000000000f1", "type": "GradeEvent",
        "profile": "GradingProfile", "action": "Graded", "eventTime": "2026-11-20T05:00:00.000Z",
        "actor": {"id": "https://example.edu/autograder", "type": "SoftwareApplication"},
        "object": {"id": "https://example.edu/attempts/1", "type": "Attempt",
                   "assignee": {"id": "https://example.edu/users/ana", "type": "Person"},
                   "assignable": {"id": "https://example.edu/assess/1", "type": "Assessment"}, "count": 1},
        "generated": {"id": "https://example.edu/attempts/1/scores/1", "type": "Score", "maxScore": 15.0,
                      "scoreGiven": 10.0, "attempt": "https://example.edu/attempts/1"},
        "extensions": {"lms": {"hostname": "lms.example", "user_login": "ana77", "term": "2026-2"}}}
    activities = [activity(f"urn:uuid:7a7d3b6e-0000-4000-8000-{i:012d}", float(i)) for i in range(100, 140)]
    async with archive_stack(tmp_path, kafka_settings, facts=False) as stack:  # the facts: the old derivation's
        await stack.send(*activities, grade_by_app)
        hub = await stack.client.post("/hub/v1/events", json=seed_hub_event(), headers=stack.auth)
        assert hub.status == 200, await hub.text()
        # an event today's normalizers refuse (the hub's skill code missing), put on the raw topic directly
        codec = RawEventCodec()
        broken_payload = {key: value for key, value in seed_hub_event().items() if key != "object"}
        broken = RawEvent(tenant="school-a", client_id="lms", source="hub", event_id="urn:uuid:broken-1",
                          event_type="GradeEvent", profile="GradingProfile", student_id=STUDENT_URN, sensor="s",
                          send_time_ms=0, received_time_ms=int(time.time() * 1000), envelope_index=0,
                          payload=orjson.dumps({**broken_payload, "id": "urn:uuid:broken-1"}))
        producer = AIOKafkaProducer(acks="all", partitioner=crc32_partitioner, **kafka_settings.client_options())
        await producer.start()
        try:
            await producer.send_and_wait(kafka_settings.topics.raw(Source.HUB), codec.encode_record(broken),
                                         key=partition_key("school-a", STUDENT_URN))
            await stack.wait_for(lambda: stack.count("SELECT count() FROM learning.raw_events") == 43)
            # the facts an older normalizer made of them, loaded first
            archived = await asyncio.to_thread(stack.target.query_rows,
                                               "SELECT payload, student_id, source, send_time, received_time, "
                                               "tenant_timezone, event_type, profile FROM learning.raw_events")
            fact_codec = LearningFactCodec()
            old = []
            for payload, student, source, send, received, zone, event_type, profile in archived[1]:
                raw = RawEvent(tenant="school-a", client_id="lms", source=source, event_id="",
                               event_type=event_type, profile=profile, student_id=student, sensor="s",
                               send_time_ms=0 if send is None else int(send.replace(tzinfo=UTC).timestamp() * 1000),
                               received_time_ms=int(received.replace(tzinfo=UTC).timestamp() * 1000),
                               envelope_index=0, payload=payload.encode(), tenant_timezone=zone)
                try:
                    old += old_derivation(raw)
                except Exception:  # the broken one had no facts then either
                    continue
            for fact in old:
                await producer.send(kafka_settings.topics.facts, fact_codec.encode_record(fact), key=fact_key(fact))
            await producer.flush()
        finally:
            await producer.stop()
        assert len(old) == 42
        await stack.wait_for(lambda: stack.count("SELECT count() FROM learning.current_facts") == 42)
        assert stack.count("SELECT countIf(normalizer_version = 'caliper-streams/old') "
                           "FROM learning.current_facts") == 42
        # the tenant's personal-data policy changed since: the re-derivation follows the current one
        ClientRegistry(tmp_path / "clients.json").set_extensions_policy("school-a", keep=["user_login"],
                                                                         drop=["hostname"])
        settings = Settings(kafka=kafka_settings, clickhouse=stack.clickhouse, privacy=PRIVACY,
                            gateway=GatewaySettings(clients_file=tmp_path / "clients.json"),
                            sink=SinkSettings(sink_url=stack.sink_url, admin_token=SecretStr(ADMIN)),
                            streams=StreamsSettings(worker_version="2.0-renormalize-test"))
        started = datetime.now(UTC)
        summary = await renormalize(settings, "school-a", progress=False)
        assert (summary.total, summary.events, summary.facts, summary.dead_letters) == (43, 43, 42, 1)
        new_version = settings.streams.normalizer_version
        await stack.wait_for(lambda: stack.count(
            f"SELECT countIf(normalizer_version = '{new_version}') FROM learning.current_facts") == 42)
        assert stack.count("SELECT count() FROM learning.current_facts") == 42  # the same fact ids, one each
        assert stack.count("SELECT uniqExact(fact_id) FROM learning.learning_facts") == 42
        _, rows = stack.target.query_rows("SELECT fact_id, student_id, xp_earned, derived_time "
                                          "FROM learning.current_facts")
        assert {row[0] for row in rows} == {fact.fact_id for fact in old}
        current = {row[0]: row for row in rows}
        by_event = {fact.event_id: fact.fact_id for fact in old}
        assert current[by_event[grade_by_app["id"]]][1] == "https://example.edu/users/ana"  # the assignee now
        extensions = stack.target.scalar("SELECT extensions_json FROM learning.current_facts WHERE fact_id = "
                                         f"'{by_event[grade_by_app['id']]}'")
        assert orjson.loads(extensions)["extensions"] == {"lms": {"user_login": "ana77", "term": "2026-2"}}
        assert current[by_event[activities[7]["id"]]][2] == 107.0  # the XP the new normalizer reads
        assert all(row[3].replace(tzinfo=UTC) >= started.replace(microsecond=0) for row in rows)
        # the old derivations are still there, not current
        assert stack.count("SELECT count() FROM learning.learning_facts FINAL") > 42
