"""The broker under the tests is a real Kafka: group offsets survive a restart, idempotence, transactions."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.kafka import KafkaSettings

pytestmark = pytest.mark.integration


async def _consume(settings: KafkaSettings, topic: str, group: str, *, expect: int,
                   isolation_level: str = "read_uncommitted") -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level=isolation_level, **settings.client_options())  # type: ignore[arg-type]
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(40):
            batches = await consumer.getmany(timeout_ms=500)
            values += [m.value for messages in batches.values() for m in messages if m.value is not None]
            if len(values) >= expect:
                break
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def test_committed_offsets_survive_a_consumer_group_restart(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics.facts
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(acks="all", **kafka_settings.client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"first-{i}".encode(), key=b"k")
        first = await _consume(kafka_settings, topic, group, expect=10)
        for i in range(5):
            await producer.send_and_wait(topic, f"second-{i}".encode(), key=b"k")
    finally:
        await producer.stop()
    second = await _consume(kafka_settings, topic, group, expect=5)
    assert first == [f"first-{i}".encode() for i in range(10)]
    assert second == [f"second-{i}".encode() for i in range(5)]


async def test_idempotent_producer_writes_each_message_once(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics.raw_topics[0]
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all",
                                **kafka_settings.client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        futures = [await producer.send(topic, f"m{i}".encode(), key=str(i % 3).encode()) for i in range(300)]
        metadata = [await f for f in futures]
    finally:
        await producer.stop()
    assert len({(m.partition, m.offset) for m in metadata}) == 300
    values = await _consume(kafka_settings, topic, f"g-{uuid.uuid4().hex[:8]}", expect=300)
    assert sorted(values) == sorted(f"m{i}".encode() for i in range(300))


async def test_read_committed_consumer_does_not_see_aborted_transactions(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics.conflicts
    producer = AIOKafkaProducer(transactional_id=f"tx-{uuid.uuid4().hex[:8]}",
                                **kafka_settings.client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed-1", key=b"k")
        await producer.begin_transaction()
        await producer.send(topic, b"aborted", key=b"k")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"committed-2", key=b"k")
    finally:
        await producer.stop()
    committed = await _consume(kafka_settings, topic, f"g-{uuid.uuid4().hex[:8]}", expect=2,
                               isolation_level="read_committed")
    everything = await _consume(kafka_settings, topic, f"g-{uuid.uuid4().hex[:8]}", expect=3)
    assert committed == [b"committed-1", b"committed-2"]
    assert b"aborted" in everything
