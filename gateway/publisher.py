"""Publishing validated events to Kafka: answer only after the broker has them, all of a request or none.

A request's events go to their raw topics as ``RawEventBatch`` records, one per (raw topic, partition) of the
request (``raw_batch_records``; more when one would exceed a Kafka message), in ONE Kafka transaction
(``gateway.transactions``: concurrent requests share transactions): consumers reading ``read_committed`` (the
streams worker, the sink) see all of them or, when the request is answered with an error, none. Rejected requests
go to the rejected topic through a plain idempotent producer (best effort, outside any transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.errors import KafkaUnavailableError
from gateway.settings import GatewaySettings
from gateway.transactions import TransactionalPublisher, TransactionFailedError, TransactionStats
from schemas.avro.codec import RawEventCodec
from schemas.avro.registry import raw_event_codec
from schemas.jobs import JobRecord
from schemas.kafka import KafkaSettings, Source, crc32_partitioner
from schemas.kafka_lz4 import use_kafka_lz4_frames
from schemas.record_batches import OutboundRecord, PartitionLists, partition_lists
from schemas.side_topics import RejectedRequest

log = logging.getLogger(__name__)

# The LZ4 level of the record batches the gateway writes (as Kafka's own producers lay them out:
# ``schemas.kafka_lz4``). The Java producer's default is 9 (LZ4 HC); level 1 (LZ4's fast mode) compresses a
# 100-event envelope's batch several times faster for ~10 % more bytes (`caliper-pipeline bench gateway-steps`),
# and any LZ4 level reads the same.
LZ4_LEVEL = 1


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event as it goes on its raw topic: the Kafka key and the Avro-encoded ``RawEvent``."""

    source: Source
    key: bytes
    value: bytes

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value)


def raw_batch_records(events: Sequence[EncodedEvent], codec: RawEventCodec, topics: Mapping[Source, str],
                      partitions: Mapping[Source, PartitionLists], max_record_bytes: int) -> list[OutboundRecord]:
    """The raw-topic records of one request's events: a ``RawEventBatch`` per (source, partition), the events in
    request order. An event's partition is ``crc32_partitioner`` of its key (``partition_key(tenant, student)``)
    over the topic's ``partitions``, as if it were sent alone, so a student's events keep one partition and their
    order. The record's key is its first event's key, which that partitioner maps to the same partition: the
    producer puts the record where its events belong (and a reader keyed by student keeps working). A partition
    whose events would make a record larger than ``max_record_bytes`` (key and value) gets several consecutive
    records, each as large as fits; an event alone is a record of its own, a few bytes (the array's count and end)
    over the event's size, which the gateway's limit on one event keeps below Kafka's (``max_event_bytes``)."""
    groups: dict[tuple[Source, int], list[EncodedEvent]] = {}
    for item in events:
        every, available = partitions[item.source]
        where = (item.source, crc32_partitioner(item.key, every, available))
        group = groups.get(where)
        if group is None:
            groups[where] = [item]
        else:
            group.append(item)
    records = []
    for (source, _), group in groups.items():
        start, size = 0, 0
        for index, item in enumerate(group):
            if index > start and size + len(item.value) > max_record_bytes:
                records.append(_batch_record(topics[source], group[start:index], codec))
                start, size = index, 0
            size += len(item.value) if index > start else item.size + _BATCH_OVERHEAD
        records.append(_batch_record(topics[source], group[start:], codec))
    return records


_BATCH_OVERHEAD = 16  # bytes of a batch record beyond its key and its events' messages: header, counts


def _batch_record(topic: str, group: Sequence[EncodedEvent], codec: RawEventCodec) -> OutboundRecord:
    return OutboundRecord(topic, group[0].key, codec.encode_batch([item.value for item in group]))


class EventPublisher:
    """Owns the aiokafka producer of the gateway process."""

    def __init__(self, kafka: KafkaSettings, gateway: GatewaySettings) -> None:
        self._kafka = kafka
        self._gateway = gateway
        self._codec = raw_event_codec(kafka)
        self._raw_topics = {source: kafka.topics.raw(source) for source in Source}
        self._producer: AIOKafkaProducer | None = None  # rejections and readiness
        self._transactions: TransactionalPublisher | None = None
        self._pending_rejections: set[asyncio.Task[None]] = set()

    def _new_producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        gateway = self._gateway
        return AIOKafkaProducer(
            # a transaction's records are sent as whole batches once its group is complete: nothing to linger for
            enable_idempotence=True, acks="all", linger_ms=0 if transactional_id else gateway.producer_linger_ms,
            compression_type=gateway.compression, max_batch_size=512 * 1024, partitioner=crc32_partitioner,
            request_timeout_ms=int(gateway.publish_timeout_seconds * 1000), transactional_id=transactional_id,
            # the broker aborts a transaction left open longer than this (a gateway killed mid-transaction)
            transaction_timeout_ms=int((gateway.publish_timeout_seconds + 30) * 1000),
            **self._kafka.client_options(),
        )

    async def start(self) -> None:
        gateway = self._gateway
        use_kafka_lz4_frames(LZ4_LEVEL)
        self._producer = self._new_producer()
        await self._producer.start()
        transactions = TransactionalPublisher(
            self._new_producer, gateway.effective_transactional_id, producers=gateway.transaction_producers,
            window_seconds=gateway.transaction_window_ms / 1000, max_group_records=gateway.transaction_max_events,
            commit_timeout_seconds=gateway.publish_timeout_seconds + 30, partitioner=crc32_partitioner)
        await transactions.start()
        self._transactions = transactions

    async def stop(self) -> None:
        if self._transactions is not None:
            await self._transactions.stop()
            self._transactions = None
        if self._producer is not None:
            if self._pending_rejections:
                await asyncio.wait(self._pending_rejections, timeout=5)
            await self._producer.stop()
            self._producer = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaUnavailableError("the Kafka producer is not started",
                                        retry_after=self._gateway.retry_after_seconds)
        return self._producer

    @property
    def transaction_stats(self) -> TransactionStats | None:
        """Counts of the transactions so far (None before start): what ``gateway_transactions_total`` reports."""
        return self._transactions.stats if self._transactions is not None else None

    @property
    def raw_event_codec(self) -> RawEventCodec:
        return self._codec

    async def publish(self, events: list[EncodedEvent], jobs: Sequence[JobRecord] = ()) -> None:
        """Return only when a committed transaction carries every event and the job records (acks=all); else
        raise KafkaUnavailableError, and none of them is visible to read_committed consumers."""
        if self._transactions is None:
            raise KafkaUnavailableError("the Kafka producer is not started",
                                        retry_after=self._gateway.retry_after_seconds)
        records = raw_batch_records(events, self._codec, self._raw_topics, await self._partitions(events),
                                    self._gateway.max_event_bytes)
        records += [OutboundRecord(self._kafka.topics.jobs, job.tenant.encode(), job.to_json()) for job in jobs]
        try:
            await self._transactions.publish(records, self._gateway.publish_timeout_seconds,
                                             weight=len(events) + len(jobs))
        except TransactionFailedError as error:
            log.warning("publishing %d events failed: %s", len(events), error)
            raise KafkaUnavailableError(f"Kafka did not take the events; none was published ({error})",
                                        retry_after=self._gateway.retry_after_seconds) from error

    async def _partitions(self, events: Sequence[EncodedEvent]) -> dict[Source, PartitionLists]:
        """The partition lists of the raw topics the events go to, as the producer knows them now."""
        try:
            async with asyncio.timeout(self._gateway.publish_timeout_seconds):
                return {source: await partition_lists(self.producer, self._raw_topics[source])
                        for source in {item.source for item in events}}
        except (KafkaError, TimeoutError) as error:
            raise KafkaUnavailableError(f"Kafka did not say the raw topics' partitions ({error})",
                                        retry_after=self._gateway.retry_after_seconds) from error

    def record_rejection(self, record: RejectedRequest) -> None:
        """Write a rejected request with its reasons to the bounded rejected-events topic (best effort)."""
        if self._producer is None:
            return
        value, tenant = record.to_json(), record.tenant

        async def send() -> None:
            try:
                assert self._producer is not None
                await self._producer.send_and_wait(self._kafka.topics.rejected, value, key=tenant.encode())
            except KafkaError as error:
                log.warning("could not record a rejection: %r", error)

        task = asyncio.ensure_future(send())
        self._pending_rejections.add(task)
        task.add_done_callback(self._pending_rejections.discard)

    async def is_ready(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 3)
            return True
        except (KafkaError, TimeoutError):
            return False
