"""Per-partition batches of the sink's topics: accumulating them, and their recorded offset ranges.

Follows quix-streams' batching-sink contract (``add`` a message, ``take_due`` the batches to flush, ``write``
raises ``SinkBackpressureError(retry_after)`` when the destination cannot take a batch now, and the caller
pauses that partition for that long), with one addition taken from ClickHouse's Kafka Connect sink: a batch is a
deterministic offset range ``[first, last]`` of one partition, recorded in ``sink_batches`` before it is
inserted with ``insert_deduplication_token = topic:partition:first-last``. A retry - after a failure, or after a
crash that came before the offset commit - rebuilds exactly that range, so ClickHouse drops the repeated block.
How a batch is written, and how rows ClickHouse refuses are isolated, is ``sinks.writer``; how a topic's messages
become inserts is the topic's target (``sinks.targets``: the facts topic's Avro, the raw archive's JSON rows).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.codec import LearningFactCodec
from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseQueryError, SinkBackpressureError, SinkError
from sinks.failed import describe_fact
from sinks.metrics import SinkMetrics
from sinks.tables import BATCHES_TABLE, FACT_INPUT_TABLE, FACT_TABLE
from sinks.targets import AvroTarget, Target
from sinks.writer import BatchWriter

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class PartitionBatch:
    """Consecutive messages of one partition, ``first_offset`` to ``last_offset``."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    opened_at: float
    values: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # not contiguous: transaction markers take offsets
    planned_last: int | None = None  # a recorded range this batch must reproduce exactly

    @property
    def dedup_token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"

    @property
    def size(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class WriteResult:
    rows: int
    rejected: int


def facts_target(codec: LearningFactCodec | None = None) -> AvroTarget:
    """The facts topic's target: LearningFact Avro into ``learning_facts_in``."""
    codec = codec or LearningFactCodec()
    return AvroTarget(FACT_INPUT_TABLE, codec, destination=FACT_TABLE, describe=describe_fact(codec))


class BatchSink:
    """Accumulates messages per partition and writes each closed batch as one deduplicated ClickHouse insert
    through its topic's target (``targets``; a topic not listed is loaded by ``default_target``, facts unless
    said otherwise)."""

    def __init__(
        self, clickhouse: ClickHouse, consumer_group: str, *, batch_rows: int, batch_seconds: float,
        metrics: SinkMetrics | None = None, targets: Mapping[str, Target] | None = None,
        default_target: Target | None = None,
        isolate_after_failures: int = 5, backoff_min_seconds: float = 0.5, backoff_max_seconds: float = 30.0,
        student_key: bytes = b"", topic_seconds: Mapping[str, float] | None = None,
    ) -> None:
        self.clickhouse = clickhouse
        self.consumer_group = consumer_group
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.topic_seconds = dict(topic_seconds or {})  # a longer window for topics off the freshness path
        self.metrics = metrics or SinkMetrics()
        self.targets = dict(targets or {})
        self.default_target = default_target or facts_target()
        self._open: dict[TopicPartition, PartitionBatch] = {}
        self._closed: dict[TopicPartition, deque[PartitionBatch]] = {}
        self._plans: dict[TopicPartition, tuple[int, int]] = {}
        self._writer = BatchWriter(clickhouse, self.metrics, student_key)
        self.isolate_after_failures = isolate_after_failures
        self.backoff_min_seconds = backoff_min_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._failures: dict[TopicPartition, tuple[int, int]] = {}  # partition -> (first offset, failures)
        # held while a batch is written: an erasure takes it to order itself against in-flight inserts
        self.write_lock = threading.Lock()

    def target_of(self, topic: str) -> Target:
        return self.targets.get(topic, self.default_target)

    # -- accumulating ---------------------------------------------------------------------------------------

    def add(self, value: bytes, topic: str, partition: int, offset: int, now: float | None = None) -> None:
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is not None and batch.planned_last is not None and offset > batch.planned_last:
            self._close(tp)
            batch = None
        if batch is None:
            batch = PartitionBatch(topic, partition, offset, offset, time.monotonic() if now is None else now)
            plan = self._plans.get(tp)
            if plan is not None and plan[0] == offset:
                batch.planned_last = plan[1]
            self._open[tp] = batch
        batch.values.append(value)
        batch.offsets.append(offset)
        batch.last_offset = offset
        if batch.planned_last is not None:
            if offset >= batch.planned_last:
                self._close(tp)
        elif batch.size >= self.batch_rows:
            self._close(tp)

    def _close(self, tp: TopicPartition) -> None:
        self._closed.setdefault(tp, deque()).append(self._open.pop(tp))

    def take_due(self, now: float | None = None) -> list[PartitionBatch]:
        """Batches ready to write, oldest first per partition: full ones, and open ones older than the window."""
        now = time.monotonic() if now is None else now
        window, default = self.topic_seconds.get, self.batch_seconds
        for tp, batch in list(self._open.items()):
            if batch.planned_last is None and now - batch.opened_at >= window(tp[0], default):
                self._close(tp)
        due = [batch for queue in self._closed.values() for batch in queue]
        self._closed.clear()
        return due

    def closed_size(self) -> int:
        """Messages in closed batches not yet taken by ``take_due``."""
        return sum(batch.size for queue in self._closed.values() for batch in queue)

    def pending_first_offsets(self) -> dict[TopicPartition, int]:
        """The first offset not yet written of every partition holding messages."""
        firsts: dict[TopicPartition, int] = {}
        for tp, queue in self._closed.items():
            if queue:
                firsts[tp] = queue[0].first_offset
        for tp, batch in self._open.items():
            firsts.setdefault(tp, batch.first_offset)
        return firsts

    def drop(self, partitions: list[TopicPartition] | None = None) -> None:
        """Forget accumulated messages (all, or of some partitions): they are read again from Kafka."""
        for tp in list(self._open) if partitions is None else partitions:
            self._open.pop(tp, None)
            self._closed.pop(tp, None)
        if partitions is None:
            self._closed.clear()

    # -- recorded ranges ------------------------------------------------------------------------------------

    def load_plans(self, topic: str) -> None:
        """Read the last recorded range of every partition of ``topic`` (at start and on assignment)."""
        _, rows = self.clickhouse.query_rows(
            f"SELECT partition, first_offset, last_offset FROM {self.clickhouse.database}.{BATCHES_TABLE} FINAL "
            "WHERE consumer_group = {group:String} AND topic = {topic:String}",
            {"group": self.consumer_group, "topic": topic})
        for partition, first, last in rows:
            self._plans[(topic, int(partition))] = (int(first), int(last))

    def _record_plan(self, batch: PartitionBatch) -> None:
        self.clickhouse.command(
            f"INSERT INTO {self.clickhouse.database}.{BATCHES_TABLE} "
            "(consumer_group, topic, partition, first_offset, last_offset, recorded_at) VALUES "
            "({group:String}, {topic:String}, {partition:UInt32}, {first:UInt64}, {last:UInt64}, now64(6))",
            {"group": self.consumer_group, "topic": batch.topic, "partition": batch.partition,
             "first": batch.first_offset, "last": batch.last_offset})
        self._plans[(batch.topic, batch.partition)] = (batch.first_offset, batch.last_offset)

    # -- writing --------------------------------------------------------------------------------------------

    def write(self, batch: PartitionBatch) -> WriteResult:
        """Insert one batch (blocking). Raises ``SinkBackpressureError(retry_after)`` when ClickHouse cannot take
        it now; the caller pauses the partition for that long and offers the same range again."""
        tp = (batch.topic, batch.partition)
        target = self.target_of(batch.topic)
        first, failures = self._failures.get(tp, (batch.first_offset, 0))
        if first != batch.first_offset:
            failures = 0
        started = time.perf_counter()
        try:
            with self.write_lock:
                if batch.planned_last is None:
                    self._record_plan(batch)
                outcome = self._writer.write(target, batch.topic, batch.partition, batch.offsets, batch.values,
                                             isolate_any_refusal=failures >= self.isolate_after_failures)
        except SinkError as error:
            self.metrics.insert_failures.inc()
            failures += 1
            self._failures[tp] = (batch.first_offset, failures)
            isolating = isinstance(error, ClickHouseQueryError) and failures >= self.isolate_after_failures
            retry_after = 0.0 if isolating else min(
                self.backoff_max_seconds, self.backoff_min_seconds * 2 ** (failures - 1))
            raise SinkBackpressureError(retry_after, batch.topic, batch.partition, error) from error
        self._failures.pop(tp, None)
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.rows_inserted.labels(target.destination).inc(outcome.rows)
        self.metrics.rejected.inc(len(outcome.rejects))
        self.metrics.batches.inc()
        self._plans.pop(tp, None)
        return WriteResult(rows=outcome.rows, rejected=len(outcome.rejects))
