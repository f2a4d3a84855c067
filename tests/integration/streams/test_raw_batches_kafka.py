"""Raw batch records on the real broker: the gateway's publisher writes one record per (request, raw topic,
partition), on the partition of its events; the worker turns batch records and lone RawEvent records (written
before batches) into facts, and a bad event of a batch into its own dead letter."""

from __future__ import annotations

import secrets
import uuid
import zlib
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer
from published import fact_count, facts_in
from pydantic import SecretStr
from test_streams_kafka import PRIVACY, read_topic, worker_settings

from caliper_pipeline.bench.streams_bench import publish_raw, sample_raw_events
from gateway.publisher import EncodedEvent, EventPublisher
from gateway.settings import GatewaySettings
from schemas.avro.codec import RawEventCodec
from schemas.kafka import KafkaSettings, Source, partition_key
from schemas.records import RawEvent
from schemas.side_topics import DeadLetter
from streams.worker import build_app

pytestmark = pytest.mark.integration

CODEC = RawEventCodec()


async def raw_records(kafka: KafkaSettings, source: Source, expect: int) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of every committed record of the source's raw topic."""
    consumer = AIOKafkaConsumer(kafka.topics.raw(source), auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed", **kafka.client_options())
    await consumer.start()
    found: list[tuple[int, bytes | None, bytes]] = []
    try:
        for _ in range(30):
            batches = await consumer.getmany(timeout_ms=500)
            found += [(m.partition, m.key, m.value) for ms in batches.values() for m in ms if m.value is not None]
            if len(found) >= expect and not batches:
                break
    finally:
        await consumer.stop()
    return found


def raw_event(index: int, student: str) -> RawEvent:
    return RawEvent(tenant="it", client_id="c", source="caliper", event_id=f"urn:uuid:{index}",
                    event_type="ViewEvent", profile="ReadingProfile", student_id=student, sensor="s", send_time_ms=1,
                    received_time_ms=2, envelope_index=index, payload=b'{"n": %d}' % index, job_id="job")


async def test_one_request_of_n_events_for_k_partitions_is_exactly_k_records(kafka_settings: KafkaSettings) -> None:
    raws = [raw_event(i, f"student-{i % 11}") for i in range(60)]
    partitions = {zlib.crc32(partition_key(r.tenant, r.student_id)) % kafka_settings.partitions for r in raws}
    assert len(partitions) == kafka_settings.partitions  # the request spans every partition
    publisher = EventPublisher(kafka_settings, GatewaySettings(jwt_secret=SecretStr(secrets.token_urlsafe(32)),
                                                               transactional_id=f"it-{uuid.uuid4().hex[:8]}"))
    await publisher.start()
    try:
        await publisher.publish([EncodedEvent(Source.CALIPER, partition_key(r.tenant, r.student_id),
                                              CODEC.encode_record(r)) for r in raws])
    finally:
        await publisher.stop()
    records = await raw_records(kafka_settings, Source.CALIPER, expect=len(partitions))
    assert sorted(partition for partition, _, _ in records) == sorted(partitions)  # one record per partition
    for partition, key, value in records:
        events = CODEC.decode_events(value)
        assert {zlib.crc32(partition_key(e.tenant, e.student_id)) % kafka_settings.partitions
                for e in events} == {partition}
        assert key == partition_key(events[0].tenant, events[0].student_id)
        assert [e.envelope_index for e in events] == sorted(e.envelope_index for e in events)
    assert sorted((e for _, _, value in records for e in CODEC.decode_events(value)),
                  key=lambda e: e.envelope_index) == raws


async def test_lone_and_batch_records_become_facts_and_a_bad_event_of_a_batch_is_its_own_dead_letter(
        kafka_settings: KafkaSettings) -> None:
    settings = worker_settings()
    topics = kafka_settings.topics
    good = sample_raw_events(8, tenant="it")
    timeback = [raw for raw in good if raw.source == "timeback"]
    broken = replace(timeback[0], event_id="urn:uuid:broken", payload=b'{"type": "ActivityEvent"}')
    lone = [(topics.raw(Source(raw.source)), partition_key(raw.tenant, raw.student_id), CODEC.encode_record(raw))
            for raw in good if raw.source != "timeback"]  # as written before batch records
    batch = (topics.raw(Source.TIMEBACK), partition_key(timeback[0].tenant, timeback[0].student_id),
             CODEC.encode_events([timeback[0], broken, *timeback[1:]]))
    await publish_raw(kafka_settings, [*lone, batch])
    app = build_app(settings, kafka_settings, PRIVACY)
    await app.start()
    try:
        facts = await read_topic(kafka_settings, topics.facts, expect=len(good), count=fact_count)
        letters = await read_topic(kafka_settings, topics.dead_letters, expect=1, settle_s=0.5)
    finally:
        await app.stop()
    assert sorted(fact.event_id for fact in facts_in([value for _, value in facts])) == sorted(
        raw.event_id for raw in good)
    [(key, value)] = letters
    letter = DeadLetter.from_json(value)
    assert (letter.topic, letter.batch_index, letter.event_id) == (topics.raw(Source.TIMEBACK), 1, "urn:uuid:broken")
    assert CODEC.decode_events(letter.original) == [broken] and key == partition_key(broken.tenant, broken.student_id)
