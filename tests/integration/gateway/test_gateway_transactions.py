"""All-or-nothing publishing on the real broker: what a read_committed consumer sees of grouped transactions."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.transactions import TransactionalPublisher, TransactionFailedError
from schemas.kafka import KafkaSettings, crc32_partitioner
from schemas.record_batches import OutboundRecord

pytestmark = pytest.mark.integration


def factory(kafka: KafkaSettings, **options: object):  # type: ignore[no-untyped-def]
    def make(transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(transactional_id=transactional_id, acks="all", linger_ms=2,
                                transaction_timeout_ms=20_000, **options, **kafka.client_options())
    return make


async def committed_values(kafka: KafkaSettings, topic: str, seconds: float = 3.0,
                           isolation: str = "read_committed") -> list[bytes]:
    """Every message of ``topic`` a consumer with that isolation level sees."""
    consumer = AIOKafkaConsumer(topic, **kafka.client_options(), isolation_level=isolation,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                values += [m.value for m in messages]
    finally:
        await consumer.stop()
    return values


async def test_concurrent_requests_share_transactions_and_all_commit(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics.raw_topics[0]
    publisher = TransactionalPublisher(factory(kafka_settings), f"test-{uuid.uuid4().hex[:8]}", producers=2,
                                       window_seconds=0.01)
    await publisher.start()
    try:
        requests = [[OutboundRecord(topic, b"k", f"r{r}-e{e}".encode()) for e in range(3)] for r in range(60)]
        await asyncio.gather(*(publisher.publish(records, 20.0) for records in requests))
    finally:
        await publisher.stop()
    assert publisher.stats.requests == 60 and publisher.stats.records == 180
    assert publisher.stats.transactions < 60  # grouped
    assert sorted(await committed_values(kafka_settings, topic)) == sorted(r.value for rs in requests for r in rs)


async def test_a_request_that_times_out_leaves_nothing_visible(kafka_settings: KafkaSettings) -> None:
    """A request answered 503 after a timeout had already put 22,954 of its 100,000 events on
    the raw topic, and the streams worker processed them."""
    topic = kafka_settings.topics.raw_topics[1]
    publisher = TransactionalPublisher(factory(kafka_settings, max_batch_size=16 * 1024), f"t-{uuid.uuid4().hex[:8]}",
                                       producers=1)

    def request(marker: bytes) -> list[OutboundRecord]:
        return [OutboundRecord(topic, f"k{i}".encode(), marker + b"x" * 200 + str(i).encode()) for i in range(200_000)]

    await publisher.start()
    try:
        # how long 200,000 events take on this machine now (quiet, they fit in well under a second; busy, in
        # several): the request that must time out gets a third of that, so that it times out part way through
        clock = asyncio.get_running_loop().time
        started = clock()
        await publisher.publish(request(b"measured-"), 60.0)
        took = clock() - started
        with pytest.raises(TransactionFailedError):
            await publisher.publish(request(b"refused-"), took / 3)
        await publisher.publish([OutboundRecord(topic, b"k", b"after")], 20.0)  # the producer recovers for the next one
    finally:
        await publisher.stop()
    assert publisher.stats.aborted == 1
    committed = await committed_values(kafka_settings, topic, seconds=10.0)
    assert b"after" in committed and sum(v.startswith(b"measured-") for v in committed) == 200_000
    assert not [v for v in committed if v.startswith(b"refused-")], "nothing of the refused request is visible"
    # ... although part of the aborted transaction did reach the log (what a read_uncommitted consumer sees)
    uncommitted = await committed_values(kafka_settings, topic, seconds=10.0, isolation="read_uncommitted")
    assert any(v.startswith(b"refused-") for v in uncommitted), f"the timeout came before any send ({took:.2f} s)"


async def test_a_request_fails_fast_when_the_broker_is_unreachable() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    publisher = TransactionalPublisher(factory(kafka, request_timeout_ms=1000), "unreachable", producers=1)
    with pytest.raises(Exception):  # noqa: B017 - start itself fails: the gateway's readiness says so
        await asyncio.wait_for(publisher.start(), 10)
    with pytest.raises(TransactionFailedError):
        await publisher.publish([OutboundRecord("t", None, b"x")], 1.0)


async def committed_messages(kafka: KafkaSettings, topic: str, seconds: float = 3.0) -> list[object]:
    consumer = AIOKafkaConsumer(topic, **kafka.client_options(), isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[object] = []
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                messages += batch
    finally:
        await consumer.stop()
    return messages


async def test_records_land_on_their_key_partition_in_order_across_full_batches(kafka_settings: KafkaSettings) -> None:
    """The records of a group go in record batches the publisher builds per partition (several when one is full):
    each lands where ``crc32_partitioner`` puts its key (where every other producer of the pipeline puts it), in
    the order of the requests."""
    topic = kafka_settings.topics.raw_topics[2]
    publisher = TransactionalPublisher(factory(kafka_settings, max_batch_size=16 * 1024, partitioner=crc32_partitioner),
                                       f"p-{uuid.uuid4().hex[:8]}", producers=1)
    await publisher.start()
    try:
        requests = [[OutboundRecord(topic, f"student-{(r * 7 + e) % 13}".encode(),
                                    f"{r:03d}-{e:03d}".encode() + b"x" * 300)
                     for e in range(40)] for r in range(30)]  # 1,200 records of ~300 bytes: ~22 batches of 16 KiB
        for records in requests:
            await publisher.publish(records, 20.0)
    finally:
        await publisher.stop()
    messages = await committed_messages(kafka_settings, topic)
    assert len(messages) == 1200
    partitions = sorted({m.partition for m in messages})  # type: ignore[attr-defined]
    for message in messages:
        assert message.partition == crc32_partitioner(message.key, partitions, partitions)  # type: ignore[attr-defined]
    for partition in partitions:
        values = [m.value for m in messages if m.partition == partition]  # type: ignore[attr-defined]
        assert values == sorted(values)  # within a partition, in the order sent
