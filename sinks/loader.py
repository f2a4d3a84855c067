"""``FactLoader``: consume the facts topic, write per-partition batches to ClickHouse, commit after each insert.

- aiokafka consumer, ``enable_auto_commit=False``, ``isolation_level="read_committed"``;
- a partition's offset ``last + 1`` is committed only after its batch's insert returned;
- when ClickHouse fails: every partition is paused and rewound to its first unwritten offset, the loader waits
  (exponential backoff, keeps polling so it stays in the group), then resumes and re-reads the same ranges;
  ``ready`` is False meanwhile;
- undecodable messages go to ``sink_rejects`` with the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from schemas.kafka import KafkaSettings
from schemas.registry import learning_fact_codec
from sinks.batches import FactBatchSink, PartitionBatch
from sinks.errors import SinkBackpressureError, SinkError
from sinks.metrics import SinkMetrics
from sinks.settings import SinkSettings
from sinks.targets import ClickHouseTarget

log = logging.getLogger(__name__)

POLL_MS = 100


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loader: FactLoader) -> None:
        self._loader = loader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._loader.sink.drop([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._loader.assigned_at is None:
            self._loader.assigned_at = time.monotonic()
        for topic in {tp.topic for tp in assigned}:
            try:
                await asyncio.to_thread(self._loader.sink.load_plans, topic)
            except SinkError as error:  # without the plans a retried range may be cut differently: FINAL still dedups
                log.warning("cannot read recorded batch ranges of %s: %s", topic, error)


class FactLoader:
    """Loads ``Topics.facts`` into ClickHouse until cancelled."""

    def __init__(
        self, sink: SinkSettings, kafka: KafkaSettings, target: ClickHouseTarget,
        *, metrics: SinkMetrics | None = None, topic: str | None = None,
    ) -> None:
        self.settings = sink
        self.kafka = kafka
        self.topic = topic or kafka.topics.facts
        self.metrics = metrics or SinkMetrics()
        self.sink = FactBatchSink(
            target, sink.group_id, batch_rows=sink.batch_rows, batch_seconds=sink.batch_seconds,
            metrics=self.metrics, codec=learning_fact_codec(kafka))
        self.rows_written = 0
        self.started = False
        self.assigned_at: float | None = None  # when the group first gave this loader partitions
        self._backoff = 0.0
        self._resume_at: float | None = None
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def backing_off(self) -> bool:
        return self._resume_at is not None

    @property
    def ready(self) -> bool:
        return self.started and not self.backing_off

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            group_id=self.settings.group_id,
            group_instance_id=self.settings.group_instance_id or None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **self.kafka.client_options(),
        )

    async def run(self) -> None:
        consumer = self._consumer = self._new_consumer()
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        await consumer.start()
        self.started = True
        try:
            while True:
                await self._poll_once(consumer)
        finally:
            self.started = False
            await consumer.stop()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        if self._resume_at is not None and time.monotonic() >= self._resume_at:
            await self._try_resume(consumer)
        fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=self.settings.batch_rows)
        add = self.sink.add
        now = time.monotonic()
        for tp, messages in fetched.items():
            topic, partition = tp.topic, tp.partition
            for message in messages:
                add(message.value, topic, partition, message.offset, now)
            if messages:
                self._update_lag(consumer, tp, messages[-1].offset + 1)
        if self._resume_at is None:
            await self._write_due(consumer)

    async def _write_due(self, consumer: AIOKafkaConsumer) -> None:
        due = self.sink.take_due()
        for index, batch in enumerate(due):
            try:
                result = await asyncio.to_thread(self.sink.write, batch)
            except SinkBackpressureError as error:
                await self._back_off(consumer, due[index:], error)
                return
            await self._commit(consumer, batch)
            self.rows_written += result.rows
            self._backoff = 0.0

    async def _commit(self, consumer: AIOKafkaConsumer, batch: PartitionBatch) -> None:
        tp = TopicPartition(batch.topic, batch.partition)
        try:
            await consumer.commit({tp: batch.last_offset + 1})
        except Exception as error:  # a rebalance took the partition: its new owner re-reads the recorded range
            log.warning("commit of %s failed after insert: %s", batch.dedup_token, error)

    async def _back_off(
        self, consumer: AIOKafkaConsumer, unwritten: list[PartitionBatch], error: SinkBackpressureError,
    ) -> None:
        """Pause everything, rewind each partition to its first unwritten offset, retry after a delay."""
        rewind = self.sink.pending_first_offsets()
        for batch in unwritten:
            tp_key = (batch.topic, batch.partition)
            rewind[tp_key] = min(rewind.get(tp_key, batch.first_offset), batch.first_offset)
        self.sink.drop()
        assigned = consumer.assignment()
        consumer.pause(*assigned)
        for (topic, partition), offset in rewind.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                consumer.seek(tp, offset)
        self._backoff = min(
            self.settings.retry_backoff_max_seconds,
            max(self.settings.retry_backoff_min_seconds, self._backoff * 2))
        self._resume_at = time.monotonic() + self._backoff
        self.metrics.backing_off.set(1)
        log.warning("ClickHouse write failed (%s); paused, retrying in %.2fs", error.cause, self._backoff)

    async def _try_resume(self, consumer: AIOKafkaConsumer) -> None:
        if not await asyncio.to_thread(self.sink.target.ping):
            self._backoff = min(self.settings.retry_backoff_max_seconds, self._backoff * 2)
            self._resume_at = time.monotonic() + self._backoff
            return
        self._resume_at = None
        self.metrics.backing_off.set(0)
        consumer.resume(*consumer.assignment())

    def _update_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, next_offset: int) -> None:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return
        first_unwritten = self.sink.pending_first_offsets().get((tp.topic, tp.partition), next_offset)
        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - first_unwritten))
