"""The streams worker on the real broker: raw events in -> exactly the expected facts out; bad events -> dead
letters while processing goes on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from published import fact_count, facts_in
from pydantic import SecretStr

from caliper_pipeline.bench.streams_bench import publish_raw, raw_messages, sample_raw_events
from schemas.avro.codec import RawEventCodec
from schemas.kafka import KafkaSettings, Source, crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings
from schemas.records import LearningFact, RawEvent
from schemas.side_topics import DeadLetter
from streams.normalizers import normalize
from streams.settings import StreamsSettings
from streams.worker import build_app

pytestmark = pytest.mark.integration

EMAIL_KEY = "integration-key"
PRIVACY = PrivacySettings(email_hash_key=SecretStr(EMAIL_KEY), student_key=SecretStr("integration-student-key"))


def worker_settings() -> StreamsSettings:
    return StreamsSettings(app_id=f"it-streams-{uuid.uuid4().hex[:8]}", worker_version="it")


async def read_topic(kafka: KafkaSettings, topic: str, expect: int, timeout_s: float = 90.0,
                     settle_s: float = 3.0,
                     count: Callable[[bytes], int] = lambda value: 1) -> list[tuple[bytes | None, bytes]]:
    """Every message of ``topic`` once ``expect`` records arrived (``count``: how many a message holds; a facts
    block holds many) and nothing more came for ``settle_s``."""
    reader = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                              **kafka.client_options())
    await reader.start()
    messages: list[tuple[bytes | None, bytes]] = []
    records = 0
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    try:
        while time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            new = [(m.key, m.value) for batch in batches.values() for m in batch if m.value is not None]
            messages += new
            records += sum(count(value) for _, value in new)
            if records >= expect:
                quiet_since = quiet_since if not new and quiet_since is not None else time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    break
    finally:
        await reader.stop()
    return messages


async def uncommitted_offsets(kafka: KafkaSettings, group_id: str) -> dict[TopicPartition, int]:
    """Per raw partition holding records: how far the group's committed offset is behind the partition's end."""
    reader = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, **kafka.client_options())
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in kafka.topics.raw_topics for p in range(kafka.partitions)]
        ends = await reader.end_offsets(partitions)
        return {tp: ends[tp] - (await reader.committed(tp) or 0) for tp in partitions if ends[tp] > 0}
    finally:
        await reader.stop()


def underived(facts: list[LearningFact]) -> list[LearningFact]:
    """The worker's facts without their derivation time (which ``normalize`` does not set), after checking that
    the worker stamped every one (learning_fact v4: the newest derivation is the current version)."""
    assert all(fact.derived_time_ms is not None and fact.derived_time_ms > 1_700_000_000_000 for fact in facts)
    return [replace(fact, derived_time_ms=None) for fact in facts]


def expected_facts(raws: list[RawEvent], settings: StreamsSettings) -> list[LearningFact]:
    facts: list[LearningFact] = []
    for raw in raws:
        facts += normalize(raw, email_hash_key=EMAIL_KEY.encode(), keep_raw_email=False,
                           normalizer_version=settings.normalizer_version,
                           student_key=PRIVACY.student_key_bytes)
    return facts


async def test_raw_events_become_exactly_the_expected_facts(kafka_settings: KafkaSettings) -> None:
    settings = worker_settings()
    raws = sample_raw_events(120, tenant="it")
    await publish_raw(kafka_settings, raw_messages(kafka_settings, raws))
    app = build_app(settings, kafka_settings, PRIVACY)
    await app.start()
    try:
        out = await read_topic(kafka_settings, kafka_settings.topics.facts, expect=len(raws), count=fact_count)
    finally:
        await app.stop()
    decoded = underived(facts_in([value for _, value in out]))
    want = expected_facts(raws, settings)
    assert sorted(decoded, key=lambda f: f.fact_id) == sorted(want, key=lambda f: f.fact_id)
    assert len(out) < len(want)  # blocks: one record per produce step and partition
    partitions = list(range(kafka_settings.partitions))
    for key, value in out:  # a block's key is one of its facts' keys, and all of them map to its partition
        keys = {partition_key("it", f.student_id) for f in facts_in([value])}
        assert key in keys and {crc32_partitioner(k, partitions, partitions) for k in keys} == {
            crc32_partitioner(key, partitions, partitions)}
    assert {f.source for f in decoded} == {"timeback", "hub", "caliper"}


async def test_a_bad_event_goes_to_the_dead_letter_topic_and_processing_continues(
        kafka_settings: KafkaSettings) -> None:
    settings = worker_settings()
    topics = kafka_settings.topics
    codec = RawEventCodec()
    good_before, good_after = sample_raw_events(3, tenant="it")[:2], sample_raw_events(4, tenant="it")[3:]
    broken = RawEvent(tenant="it", client_id="c", source="hub", event_id="urn:uuid:broken", event_type="GradeEvent",
                      profile="GradingProfile", student_id="", sensor="s", send_time_ms=1, received_time_ms=2,
                      envelope_index=0, payload=b'{"type": "GradeEvent"}')
    garbage = b"not an avro message"
    # good events, then the undecodable and the invalid one, then (same key, so same partition, after them) a
    # good one that must still become a fact
    after = raw_messages(kafka_settings, good_after)
    same_key = after[0][1]
    messages = raw_messages(kafka_settings, good_before)
    messages += [(topics.raw(Source.HUB), same_key, garbage),
                 (topics.raw(Source.HUB), same_key, codec.encode_record(broken))]
    messages += after
    await publish_raw(kafka_settings, messages)
    app = build_app(settings, kafka_settings, PRIVACY)
    await app.start()
    try:
        letters, facts = await asyncio.gather(
            read_topic(kafka_settings, topics.dead_letters, expect=2),
            read_topic(kafka_settings, topics.facts, expect=3, count=fact_count))
    finally:
        await app.stop()
    records = [DeadLetter.from_json(value) for _, value in letters]
    assert sorted(r.original for r in records) == sorted([garbage, codec.encode_record(broken)])
    assert all(r.topic == topics.raw(Source.HUB) and r.worker_version == "it" for r in records)
    reasons = " | ".join(r.reason for r in records)
    assert "SchemaEncodingError" in reasons and "Field object.assignable.skillCode not informed" in reasons
    decoded = {fact.event_id for fact in facts_in([value for _, value in facts])}
    assert decoded == {r.event_id for r in good_before + good_after}


async def test_only_records_of_committed_transactions_become_facts(kafka_settings: KafkaSettings) -> None:
    """The gateway publishes an envelope in one Kafka transaction: the worker reads with read_committed, so an
    aborted transaction yields no fact (nor dead letter) and a committed one on the same partitions yields all
    of its facts."""
    settings = worker_settings()
    aborted = raw_messages(kafka_settings, sample_raw_events(24, tenant="aborted"))
    committed_raws = sample_raw_events(24, tenant="committed")
    committed = raw_messages(kafka_settings, committed_raws)
    producer = AIOKafkaProducer(transactional_id=f"it-gateway-{uuid.uuid4().hex[:8]}", acks="all",
                                partitioner=crc32_partitioner, **kafka_settings.client_options())
    await producer.start()
    try:
        for messages, commit in ((aborted, False), (committed, True)):
            await producer.begin_transaction()
            for topic, key, value in messages:
                await producer.send(topic, value, key=key)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()
    app = build_app(settings, kafka_settings, PRIVACY)
    await app.start()
    try:
        facts = await read_topic(kafka_settings, kafka_settings.topics.facts, expect=len(committed),
                                 count=fact_count)
        # by now the worker has been past both transactions for seconds: a dead letter would be there
        letters = await read_topic(kafka_settings, kafka_settings.topics.dead_letters, expect=0, settle_s=1)
    finally:
        await app.stop()
    decoded = facts_in([value for _, value in facts])
    assert {fact.tenant for fact in decoded} == {"committed"}
    # the worker's commits moved past both transactions: only the final commit marker may stay unconsumed
    # (a restarted worker would replay nothing; faust skips the offsets read_committed never delivers)
    behind = await uncommitted_offsets(kafka_settings, settings.app_id)
    assert behind and all(count <= 1 for count in behind.values()), behind
    assert sorted(f.fact_id for f in decoded) == sorted(f.fact_id for f in expected_facts(committed_raws, settings))
    assert letters == []
