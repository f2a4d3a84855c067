"""``FactLoader``: consume the facts topic, write per-partition batches to ClickHouse, commit after each insert.

- aiokafka consumer, ``enable_auto_commit=False``, ``isolation_level="read_committed"``;
- a partition's offset ``last + 1`` is committed only after its batch's insert returned;
- when a batch cannot be written, only ITS partition is paused and rewound to its first unwritten offset for the
  ``retry_after`` the sink asks for (exponential per partition); every other partition keeps loading, and the
  loader keeps polling so it stays in the group; the paused partition is then resumed and re-reads the same
  range. ``ready`` is False while any partition is paused;
- messages ClickHouse cannot load are isolated and go to ``sink_rejects`` with the reason (``sinks.writer``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from schemas.kafka import KafkaSettings
from schemas.registry import learning_fact_codec
from sinks.batches import FactBatchSink, PartitionBatch
from sinks.clickhouse import ClickHouse
from sinks.errors import SinkBackpressureError, SinkError
from sinks.metrics import SinkMetrics
from sinks.settings import SinkSettings

log = logging.getLogger(__name__)

POLL_MS = 100


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loader: FactLoader) -> None:
        self._loader = loader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._loader.sink.drop([(tp.topic, tp.partition) for tp in revoked])
        for tp in revoked:
            self._loader.paused.pop(tp, None)

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
        self, sink: SinkSettings, kafka: KafkaSettings, clickhouse: ClickHouse,
        *, metrics: SinkMetrics | None = None, topic: str | None = None,
    ) -> None:
        self.settings = sink
        self.kafka = kafka
        self.topic = topic or kafka.topics.facts
        self.metrics = metrics or SinkMetrics()
        self.sink = FactBatchSink(
            clickhouse, sink.group_id, batch_rows=sink.batch_rows, batch_seconds=sink.batch_seconds,
            metrics=self.metrics, codec=learning_fact_codec(kafka),
            isolate_after_failures=sink.isolate_after_failures,
            backoff_min_seconds=sink.retry_backoff_min_seconds, backoff_max_seconds=sink.retry_backoff_max_seconds)
        self.rows_written = 0
        self.started = False
        self.assigned_at: float | None = None  # when the group first gave this loader partitions
        self.paused: dict[TopicPartition, float] = {}  # partition -> when to resume it
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def backing_off(self) -> bool:
        return bool(self.paused)

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
        self._resume_due(consumer)
        fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=self.settings.batch_rows)
        add = self.sink.add
        now = time.monotonic()
        for tp, messages in fetched.items():
            if tp in self.paused:  # fetched before the pause: read again after the resume
                continue
            topic, partition = tp.topic, tp.partition
            for message in messages:
                add(message.value, topic, partition, message.offset, now)
            if messages:
                self._update_lag(consumer, tp, messages[-1].offset + 1)
        await self._write_due(consumer)

    async def _write_due(self, consumer: AIOKafkaConsumer) -> None:
        for batch in self.sink.take_due():
            tp = TopicPartition(batch.topic, batch.partition)
            if tp in self.paused:  # a batch behind one that failed: re-read after the resume
                continue
            try:
                result = await asyncio.to_thread(self.sink.write, batch)
            except SinkBackpressureError as error:
                self._pause(consumer, tp, batch.first_offset, error)
                continue
            await self._commit(consumer, batch)
            self.rows_written += result.rows

    async def _commit(self, consumer: AIOKafkaConsumer, batch: PartitionBatch) -> None:
        tp = TopicPartition(batch.topic, batch.partition)
        try:
            await consumer.commit({tp: batch.last_offset + 1})
        except Exception as error:  # a rebalance took the partition: its new owner re-reads the recorded range
            log.warning("commit of %s failed after insert: %s", batch.dedup_token, error)

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, first_unwritten: int,
               error: SinkBackpressureError) -> None:
        """Pause one partition, forget what it accumulated, rewind it to its first unwritten offset, and resume
        it after the ``retry_after`` the sink asked for."""
        rewind = min(first_unwritten, self.sink.pending_first_offsets().get((tp.topic, tp.partition), first_unwritten))
        self.sink.drop([(tp.topic, tp.partition)])
        if tp in consumer.assignment():
            consumer.pause(tp)
            consumer.seek(tp, rewind)
        self.paused[tp] = time.monotonic() + error.retry_after
        self.metrics.backing_off.set(len(self.paused))
        log.warning("%s[%d]: ClickHouse did not take the batch from offset %d (%s); retrying in %.2fs",
                    tp.topic, tp.partition, rewind, error.cause, error.retry_after)

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        due = [tp for tp, at in self.paused.items() if at <= now]
        for tp in due:
            del self.paused[tp]
            if tp in consumer.assignment():
                consumer.resume(tp)
        if due:
            self.metrics.backing_off.set(len(self.paused))

    def _update_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, next_offset: int) -> None:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return
        first_unwritten = self.sink.pending_first_offsets().get((tp.topic, tp.partition), next_offset)
        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - first_unwritten))
