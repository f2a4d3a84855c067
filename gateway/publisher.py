"""Publishing validated events to Kafka: answer only after the broker has them, all of a request or none.

A request's events go to their raw topics in ONE Kafka transaction (``gateway.transactions``: concurrent
requests share transactions): consumers reading ``read_committed`` (the streams worker, the sink) see all of them
or, when the request is answered with an error, none. Rejected requests go to the rejected topic through a plain
idempotent producer (best effort, outside any transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.errors import KafkaUnavailableError
from gateway.settings import GatewaySettings
from gateway.transactions import TransactionalPublisher, TransactionFailedError, TransactionStats
from schemas.codec import RawEventCodec
from schemas.jobs import JobRecord
from schemas.kafka import KafkaSettings, Source, crc32_partitioner
from schemas.kafka_lz4 import use_kafka_lz4_frames
from schemas.record_batches import OutboundRecord
from schemas.registry import raw_event_codec
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
        topics = self._raw_topics
        records = [OutboundRecord(topics[item.source], item.key, item.value) for item in events]
        records += [OutboundRecord(self._kafka.topics.jobs, job.tenant.encode(), job.to_json()) for job in jobs]
        try:
            await self._transactions.publish(records, self._gateway.publish_timeout_seconds)
        except TransactionFailedError as error:
            log.warning("publishing %d events failed: %s", len(events), error)
            raise KafkaUnavailableError(f"Kafka did not take the events; none was published ({error})",
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
