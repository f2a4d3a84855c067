"""caliper-pipeline replay: dead letters go back to their original topic; any range can be copied."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.kafka import KafkaSettings
from schemas.side_topics import DeadLetter
from streams.replay import ReplayError, replay

pytestmark = pytest.mark.integration


async def _read_all(kafka: KafkaSettings, topic: str, expect: int) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **kafka.client_options())  # type: ignore[arg-type]
    await consumer.start()
    found: list[tuple[bytes | None, bytes]] = []
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=300)
            found += [(m.key, m.value or b"") for ms in batches.values() for m in ms]
            if len(found) >= expect:
                break
    finally:
        await consumer.stop()
    return found


async def test_dead_letters_return_to_their_topic(kafka_settings: KafkaSettings) -> None:
    topics = kafka_settings.topics
    producer = AIOKafkaProducer(acks="all", **kafka_settings.client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        for i in range(5):
            record = DeadLetter(reason="NormalizationError: no actor", worker_version="test",
                                topic=topics.raw_topics[i % 2], partition=0, offset=i,
                                original=f"original-{i}".encode()).to_json()
            await producer.send_and_wait(topics.dead_letters, record, key=f"k{i}".encode())
        await producer.send_and_wait(topics.dead_letters, b"not a dead-letter record", key=b"x")
    finally:
        await producer.stop()

    dry = await replay(kafka_settings, dry_run=True, progress=False)
    assert (dry.read, dry.republished, dry.skipped) == (6, 0, 1)
    summary = await replay(kafka_settings, progress=False)
    assert (summary.read, summary.republished, summary.skipped) == (6, 5, 1)
    assert summary.by_destination == {topics.raw_topics[0]: 3, topics.raw_topics[1]: 2}
    first = await _read_all(kafka_settings, topics.raw_topics[0], 3)
    assert sorted(first) == [(b"k0", b"original-0"), (b"k2", b"original-2"), (b"k4", b"original-4")]


async def test_a_topic_range_is_copied(kafka_settings: KafkaSettings) -> None:
    topics = kafka_settings.topics
    producer = AIOKafkaProducer(acks="all", **kafka_settings.client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topics.rejected, f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()
    with pytest.raises(ReplayError, match="--to-topic is needed"):
        await replay(kafka_settings, topic=topics.rejected, progress=False)
    with pytest.raises(ReplayError, match="has no partition 99"):
        await replay(kafka_settings, topic=topics.rejected, to_topic=topics.conflicts, partition=99, progress=False)
    with pytest.raises(ReplayError, match="no topic 'nowhere' on the broker"):
        await replay(kafka_settings, topic=topics.rejected, to_topic="nowhere", progress=False)
    summary = await replay(kafka_settings, topic=topics.rejected, to_topic=topics.conflicts, partition=0,
                           from_offset=2, to_offset=4, progress=False)
    assert summary.republished == 3
    assert sorted(v for _, v in await _read_all(kafka_settings, topics.conflicts, 3)) == [b"m2", b"m3", b"m4"]


async def test_a_missing_topic_is_a_clear_error(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(ReplayError, match="no topic 'no-such-topic' on the broker"):
        await replay(kafka_settings, topic="no-such-topic", to_topic=kafka_settings.topics.conflicts, progress=False)
