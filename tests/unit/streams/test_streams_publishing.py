"""The worker's batched producing (``streams.publishing``): grouping by (topic, partition), full batches, the
partition chosen as the producer's ``send`` chooses it, and no return before every batch was acknowledged."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.protocol.metadata import MetadataResponse_v0
from pydantic import SecretStr

from schemas.kafka import KafkaSettings, crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings
from schemas.record_batches import OutboundRecord
from streams import publishing
from streams.publishing import BatchingProducer, Blocks, KafkaPublisher, send_in_batches
from streams.settings import StreamsSettings
from streams.worker import build_app, new_app

KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit.")
PRIVACY = PrivacySettings(email_hash_key=SecretStr("k"), student_key=SecretStr("s"))
NO_BLOCKS = Blocks({}, StreamsSettings().block_max_bytes)  # no block topic: records pass as they are


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes) -> object | None:
        if len(self.records) >= self.capacity and self.records:  # like aiokafka: an empty batch takes any record
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """The batch API of ``AIOKafkaProducer`` over ``partitions`` partitions per topic; batches of ``capacity``
    records; delivery futures the test settles."""

    def __init__(self, partitions: int = 3, capacity: int = 2, fail_on_send: int | None = None) -> None:
        self.partitions = partitions
        self.capacity = capacity
        self.fail_on_send = fail_on_send
        self.sent: list[tuple[str, int, FakeBatch]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    @property
    def client(self) -> Any:
        return SimpleNamespace(cluster=SimpleNamespace(
            available_partitions_for_topic=lambda topic: set(range(self.partitions))))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.fail_on_send is not None and len(self.sent) == self.fail_on_send:
            raise RuntimeError("the accumulator is closed")
        self.sent.append((topic, partition, batch))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def records(count: int, topic: str = "facts") -> list[OutboundRecord]:
    return [OutboundRecord(topic, partition_key("t", f"student-{i % 7}"), f"value-{i}".encode())
            for i in range(count)]


async def test_records_are_grouped_per_topic_and_partition_in_order_and_full_batches_are_split() -> None:
    producer = FakeProducer(partitions=3, capacity=2)
    sent = records(20) + records(5, topic="conflicts")
    futures = await send_in_batches(producer, sent, crc32_partitioner)  # type: ignore[arg-type]
    assert len(futures) == len(producer.sent)
    assert all(len(batch.records) <= 2 for _, _, batch in producer.sent)
    for topic in ("facts", "conflicts"):
        for partition in range(3):
            want = [(r.key, r.value) for r in sent
                    if r.topic == topic and crc32_partitioner(r.key, [0, 1, 2], [0, 1, 2]) == partition]
            got = [record for t, p, batch in producer.sent if (t, p) == (topic, partition) for record in batch.records]
            assert got == want  # every record once, on its key's partition, in the order given
    for future in futures:
        future.cancel()


async def test_a_failed_send_raises_and_leaves_no_unretrieved_delivery_error(
        caplog: pytest.LogCaptureFixture) -> None:
    producer = FakeProducer(partitions=1, capacity=1, fail_on_send=2)
    with pytest.raises(RuntimeError, match="accumulator"):
        await send_in_batches(producer, records(5), crc32_partitioner)  # type: ignore[arg-type]
    for future in producer.futures:  # the batches handed off before the failure fail later
        future.set_exception(ConnectionError("broker gone"))
    await asyncio.sleep(0)
    producer.futures.clear()  # the last references: asyncio logs an unretrieved exception when they go
    gc.collect()
    assert "exception was never retrieved" not in caplog.text


def _metadata(producer: AIOKafkaProducer, topics: dict[str, int]) -> None:
    """Give an unstarted producer the metadata of a one-broker cluster with these topics."""
    producer.client.cluster.update_metadata(MetadataResponse_v0(
        brokers=[(0, "127.0.0.1", 1)],
        topics=[(0, topic, [(0, partition, 0, [0], [0]) for partition in range(count)])
                for topic, count in topics.items()]))


async def test_the_partition_is_the_one_aiokafka_send_picks() -> None:
    """The batched path asks the partitioner with the same partition lists as aiokafka's per-record ``send``
    (``AIOKafkaProducer._partition``), so a key's records land where they landed before the batching."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", partitioner=crc32_partitioner, acks="all")
    _metadata(producer, {"facts": 6, "conflicts": 5})
    placed: dict[int, tuple[str, int]] = {}

    async def send_batch(batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        placed[id(batch)] = (topic, partition)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    batches: list[FakeBatch] = []

    def create_batch() -> FakeBatch:
        batches.append(FakeBatch(capacity=1000))
        return batches[-1]

    producer.create_batch = create_batch  # type: ignore[method-assign]
    producer.send_batch = send_batch  # type: ignore[method-assign]
    sent = [OutboundRecord("facts" if i % 4 else "conflicts", partition_key(f"tenant-{i % 3}", f"student-{i}"),
                           str(i).encode()) for i in range(400)]
    await send_in_batches(producer, sent, crc32_partitioner)
    where = {value: placed[id(batch)] for batch in batches for _, value in batch.records}
    assert len(where) == len(sent)
    assert len(set(where.values())) == 11  # every partition of both topics got records
    for record in sent:  # the partition aiokafka's send computes for this record, with this producer's metadata
        assert where[record.value] == (record.topic, producer._partition(record.topic, None, None, None,
                                                                         record.key, record.value))


async def test_the_publisher_returns_only_after_every_batch_was_acknowledged() -> None:
    app = build_app(StreamsSettings(worker_version="t"), KAFKA, PRIVACY)
    publisher = KafkaPublisher(app, NO_BLOCKS)
    producer = app.producer
    assert isinstance(producer, BatchingProducer)
    futures: list[asyncio.Future[Any]] = []

    async def send_records(batch: Any, blocks: Any) -> list[asyncio.Future[Any]]:
        futures.extend(asyncio.get_running_loop().create_future() for _ in range(3))
        return futures

    producer.send_records = send_records  # type: ignore[method-assign]

    async def started() -> Any:
        return producer

    app.maybe_start_producer = started  # type: ignore[method-assign]
    publishing = asyncio.ensure_future(publisher(records(4)))
    for future in futures[:2] or []:
        future.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
        for future in futures[:2]:
            if not future.done():
                future.set_result(None)
    assert not publishing.done()  # one batch is still unacknowledged: the offsets must not be acked yet
    futures[2].set_result(None)
    await asyncio.wait_for(publishing, 1)


async def test_a_failed_batch_fails_the_publish() -> None:
    app = build_app(StreamsSettings(worker_version="t"), KAFKA, PRIVACY)
    producer = app.producer

    async def send_records(batch: Any, blocks: Any) -> list[asyncio.Future[Any]]:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("not enough replicas"))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done, failed]

    producer.send_records = send_records  # type: ignore[attr-defined]

    async def started() -> Any:
        return producer

    app.maybe_start_producer = started  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await KafkaPublisher(app, NO_BLOCKS)(records(2))


def test_the_publisher_refuses_an_app_that_cannot_batch() -> None:
    import faust

    plain = faust.App("unit-plain", broker="kafka://127.0.0.1:1", autodiscover=False)
    with pytest.raises(RuntimeError, match="BatchingProducer"):
        KafkaPublisher(plain, NO_BLOCKS)
    assert issubclass(new_app(StreamsSettings(worker_version="t"), KAFKA).transport.Producer, BatchingProducer)


async def test_the_publisher_sends_facts_and_archive_rows_as_one_block_per_partition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's publisher (build_app's) joins the facts and archive rows of one publish into blocks over the
    producer's partitions; the other records pass as they are."""
    from sink_fixtures import make_fact

    from schemas.avro.codec import LearningFactCodec
    from schemas.blocks import fact_block_codec

    app = build_app(StreamsSettings(worker_version="t"), KAFKA, PRIVACY)
    producer = app.producer
    sent: list[OutboundRecord] = []

    async def send_in_batches(_: Any, records: Any, partitioner: Any) -> list[asyncio.Future[Any]]:
        sent.extend(records)
        return []

    async def partitions_for(topic: str) -> set[int]:
        return {0, 1, 2}

    monkeypatch.setattr(publishing, "send_in_batches", send_in_batches)
    producer._ensure_producer = lambda: SimpleNamespace(partitions_for=partitions_for)  # type: ignore[attr-defined]

    async def started() -> Any:
        return producer

    app.maybe_start_producer = started  # type: ignore[method-assign]
    codec = LearningFactCodec()
    facts = [make_fact(i, student_id=f"s{i}") for i in range(12)]
    blocks = Blocks({"unit.facts": fact_block_codec(codec)}, StreamsSettings().block_max_bytes)
    publisher = KafkaPublisher(app, blocks)
    await publisher([*[OutboundRecord("unit.facts", partition_key(f.tenant, f.student_id), codec.encode_record(f))
                       for f in facts], OutboundRecord("unit.conflicts", b"k", b"{}")])
    assert sent[0] == OutboundRecord("unit.conflicts", b"k", b"{}")
    assert 1 < len(sent) - 1 <= 3  # at most one block per partition
    decoded = [item["event_id"] for record in sent[1:] for item in fact_block_codec(codec).decode_items(record.value)]
    assert sorted(decoded) == sorted(f.event_id for f in facts)
