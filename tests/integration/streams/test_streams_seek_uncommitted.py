"""After a rebalance the streams worker goes back to the committed offsets, and a partition without one to its
beginning.

faust undoes what it read ahead and dropped around a rebalance by seeking every partition to its committed offset;
aiokafka seeks only to a committed offset above 0, so a partition nobody had committed yet kept a position past
records no worker had processed. In the three-worker test (``test_kafka_cluster_faults``) a worker SIGKILLed
before its first commit left 65 acknowledged events that the worker taking its partitions never turned into facts.
Here on the real broker: a group consumer reads a fresh partition and processes nothing (the records faust drops),
then the worker's ``seek_to_committed`` must make the same records come again.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.kafka import KafkaSettings
from streams.worker import ReadCommittedConsumerThread

pytestmark = pytest.mark.integration


def consumer_thread_of(consumer: AIOKafkaConsumer) -> ReadCommittedConsumerThread:
    """The worker's consumer thread around ``consumer``, calling it in this event loop (faust runs it in a
    thread of its own)."""
    thread = object.__new__(ReadCommittedConsumerThread)
    thread._consumer = consumer

    async def call_here(function: Any, *args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    thread.call_thread = call_here  # type: ignore[method-assign]
    return thread


async def read(consumer: AIOKafkaConsumer, expect: int) -> list[bytes]:
    values: list[bytes] = []
    for _ in range(40):
        for messages in (await consumer.getmany(timeout_ms=250)).values():
            values += [m.value for m in messages if m.value is not None]
        if len(values) >= expect:
            break
    return values


async def test_a_partition_never_committed_is_read_again_from_its_beginning(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics.raw_topics[0]
    sent = [f"event-{i}".encode() for i in range(20)]
    producer = AIOKafkaProducer(acks="all", **kafka_settings.client_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        for value in sent:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, group_id=f"g-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                **kafka_settings.client_options())  # type: ignore[arg-type]
    await consumer.start()
    try:
        assert await read(consumer, len(sent)) == sent  # read ahead, processed by nobody, nothing committed
        committed = await consumer_thread_of(consumer).seek_to_committed()
        again = await read(consumer, len(sent))
    finally:
        await consumer.stop()
    assert committed[TopicPartition(topic, 0)] is None
    assert again == sent, "the records read ahead and dropped come again"
