"""The worker's batched producing on the real broker: every record arrives once, on the partition the per-record
``send`` path picks for its key, in the order given per partition, across full batches; facts joined into blocks
arrive once each, in blocks on the partition of their keys, in order."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from published import FACT_BLOCKS, FACT_CODEC, facts_in
from sink_fixtures import make_fact

from schemas.kafka import KafkaSettings, partition_key
from schemas.record_batches import OutboundRecord
from streams.publishing import Blocks, KafkaPublisher
from streams.settings import StreamsSettings
from streams.worker import new_app

pytestmark = pytest.mark.integration


async def read_all(kafka: KafkaSettings, topic: str, expect: int) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of the topic's first ``expect`` records, in offset order per partition."""
    reader = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                              **kafka.client_options())
    await reader.start()
    found: list[tuple[int, bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expect:
                for tp, messages in (await reader.getmany(timeout_ms=500)).items():
                    found += [(tp.partition, m.key, m.value) for m in messages if m.value is not None]
    finally:
        await reader.stop()
    return found


async def test_batched_records_land_where_per_record_send_puts_them(kafka_settings: KafkaSettings) -> None:
    topics = kafka_settings.topics
    app = new_app(StreamsSettings(app_id=f"it-publish-{uuid.uuid4().hex[:8]}", worker_version="it"), kafka_settings)
    # 1,500 records of ~1 KB over 3 partitions: several full record batches (16 KiB) per partition
    sent = [OutboundRecord(topics.facts, partition_key("it", f"student-{i % 97}"), b"%06d" % i + b"x" * 1000)
            for i in range(1500)]
    try:
        await KafkaPublisher(app, Blocks({}, 1 << 18))(sent)  # returns once the broker acknowledged every batch
        producer = await app.maybe_start_producer()
        per_record = [await producer.send(topics.conflicts, record.key, record.value, partition=None,
                                          timestamp=None, headers=None) for record in sent]
        await asyncio.gather(*per_record)
    finally:
        await app.stop()
    batched = await read_all(kafka_settings, topics.facts, len(sent))
    reference = await read_all(kafka_settings, topics.conflicts, len(sent))
    assert sorted(value for _, _, value in batched) == sorted(record.value for record in sent)  # each once
    assert {key: partition for partition, key, _ in batched} == {key: partition for partition, key, _ in reference}
    assert len({partition for partition, _, _ in batched}) == kafka_settings.partitions
    for partition in range(kafka_settings.partitions):  # one student's facts keep their order
        assert [v for p, _, v in batched if p == partition] == [v for p, _, v in reference if p == partition]


async def test_facts_published_in_blocks_arrive_once_each_on_their_keys_partition_in_order(
        kafka_settings: KafkaSettings) -> None:
    topics = kafka_settings.topics
    app = new_app(StreamsSettings(app_id=f"it-blocks-{uuid.uuid4().hex[:8]}", worker_version="it"), kafka_settings)
    facts = [make_fact(i, student_id=f"student-{i % 41}") for i in range(900)]
    sent = [OutboundRecord(topics.facts, partition_key(f.tenant, f.student_id), FACT_CODEC.encode_record(f))
            for f in facts]
    publisher = KafkaPublisher(app, Blocks({topics.facts: FACT_BLOCKS}, max_bytes=16 << 10))
    try:
        for start in range(0, len(sent), 300):  # three produce steps
            await publisher(sent[start:start + 300])
        producer = await app.maybe_start_producer()
        per_record = [await producer.send(topics.conflicts, record.key, record.value, partition=None,
                                          timestamp=None, headers=None) for record in sent]
        await asyncio.gather(*per_record)
    finally:
        await app.stop()
    reference = await read_all(kafka_settings, topics.conflicts, len(sent))
    partition_of = {key: partition for partition, key, _ in reference}
    blocks = await read_all(kafka_settings, topics.facts, 1)
    deadline = asyncio.get_running_loop().time() + 30
    while sum(len(facts_in([value])) for _, _, value in blocks) < len(sent):
        assert asyncio.get_running_loop().time() < deadline
        blocks = await read_all(kafka_settings, topics.facts, len(blocks) + 1)
    assert 3 <= len(blocks) < len(sent)
    for partition in range(kafka_settings.partitions):
        arrived = facts_in([value for p, _, value in blocks if p == partition])
        assert all(partition_of[partition_key(f.tenant, f.student_id)] == partition for f in arrived)
        assert [f.event_id for f in arrived] == [f.event_id for f in facts
                                                 if partition_of[partition_key(f.tenant, f.student_id)] == partition]
