"""``purge-kafka`` on the real broker: records older than a moment go, records not yet processed downstream stay."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from caliper_pipeline.ops.purge import purge_kafka
from schemas.kafka import KafkaSettings

pytestmark = pytest.mark.integration


async def _produce(kafka: KafkaSettings, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(acks="all", **kafka.client_options())
    await producer.start()
    try:
        for number in range(count):
            await producer.send_and_wait(topic, f"m{number}".encode(), partition=0)
    finally:
        await producer.stop()


async def _commit(kafka: KafkaSettings, group: str, topic: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): offset})
    finally:
        await consumer.stop()


async def _first_offset(kafka: KafkaSettings, topic: str) -> int:
    consumer = AIOKafkaConsumer(**kafka.client_options())
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.beginning_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_purge_deletes_old_records_but_not_unprocessed_ones(kafka_settings: KafkaSettings) -> None:
    topics = kafka_settings.topics
    await _produce(kafka_settings, topics.facts, 10)
    await _produce(kafka_settings, topics.dead_letters, 3)
    await _commit(kafka_settings, "sink-group", topics.facts, 6)  # the sink has loaded 6 of the 10
    now_ms = int(time.time() * 1000) + 1000
    downstream = {topics.facts: "sink-group"}
    dry = await purge_kafka(kafka_settings, now_ms, downstream_groups=downstream, dry_run=True)
    assert dry.deleted[topics.facts] == 6 and dry.held_back[topics.facts] == 4
    assert await _first_offset(kafka_settings, topics.facts) == 0  # a dry run deletes nothing
    summary = await purge_kafka(kafka_settings, now_ms, downstream_groups=downstream)
    assert summary.deleted == dry.deleted
    assert await _first_offset(kafka_settings, topics.facts) == 6
    assert await _first_offset(kafka_settings, topics.dead_letters) == 3
    again = await purge_kafka(kafka_settings, now_ms, downstream_groups=downstream)
    assert sum(again.deleted.values()) == 0 and again.held_back[topics.facts] == 4
    forced = await purge_kafka(kafka_settings, now_ms, downstream_groups=downstream, force=True)
    assert forced.deleted[topics.facts] == 4
    old = await purge_kafka(kafka_settings, 0, downstream_groups=downstream, force=True)
    assert sum(old.deleted.values()) == 0  # nothing is older than 1970


async def test_a_raw_record_stays_until_every_group_that_reads_it_has(kafka_settings: KafkaSettings) -> None:
    """A raw topic feeds the streams worker and the sink's raw archive: the slower of the two decides."""
    raw = kafka_settings.topics.raw_topics[0]
    await _produce(kafka_settings, raw, 10)
    await _commit(kafka_settings, "streams-group", raw, 8)
    await _commit(kafka_settings, "sink-group", raw, 5)  # the archive is behind
    now_ms = int(time.time() * 1000) + 1000
    summary = await purge_kafka(kafka_settings, now_ms, downstream_groups={raw: ("streams-group", "sink-group")})
    assert summary.deleted[raw] == 5 and summary.held_back[raw] == 5
    assert await _first_offset(kafka_settings, raw) == 5
    unseen = await purge_kafka(kafka_settings, now_ms, downstream_groups={raw: ("streams-group", "never-ran")})
    assert sum(unseen.deleted.values()) == 0  # a group that committed nothing holds everything
