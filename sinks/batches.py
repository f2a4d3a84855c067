"""Per-partition batches of the facts topic and how one is written to ClickHouse.

Follows quix-streams' batching-sink contract (``add`` a message, ``flush`` a partition's batch, ``write``
raises ``SinkBackpressureError`` when the destination cannot take it), with one addition taken from
ClickHouse's Kafka Connect sink: a batch is a deterministic offset range ``[first, last]`` of one partition,
recorded in ``sink_batches`` before it is inserted with ``insert_deduplication_token = topic:partition:first-last``.
A retry - after a failure, or after a crash that came before the offset commit - rebuilds exactly that range,
so ClickHouse drops the repeated block.

How a batch is written (``write``):

- fast path: the messages are grouped by the writer schema their header names; when there is one group, its
  bodies are joined into an Avro container (``sinks.avro_container``) that ClickHouse decodes itself in one
  ``INSERT ... SELECT`` (``sinks.avro_insert``); messages whose header names no known writer are rejects;
- Python path: each message decoded with fastavro, the good ones inserted as one Arrow block, the others
  rejected. It is taken when ClickHouse refuses the container (a corrupt body: the Python decoder then
  isolates it), when a batch mixes writer schemas (only during a schema rollout), or when a writer schema
  has fields the mapping does not handle.

Both paths insert the range's facts as ONE insert carrying the range's token, so whichever path a retry takes,
ClickHouse drops it: with ``insert_deduplication_token`` set, deduplication compares tokens, not block contents.
A retry normally takes the same path anyway: the same bytes are accepted or refused by ClickHouse the same way.
Rejects go in with ``<token>:rejects``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import LearningFactCodec
from sinks.avro_container import WriterGroup, group_by_writer
from sinks.avro_insert import AvroFactInsert, fact_insert_for
from sinks.errors import AvroMappingError, ClickHouseQueryError, SinkBackpressureError, SinkError
from sinks.fact_rows import FACT_TABLE, REJECTS_TABLE, RejectedMessage, facts_to_arrow, rejects_to_arrow
from sinks.metrics import SinkMetrics
from sinks.targets import ClickHouseTarget, quote_literal

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


class FactBatchSink:
    """Accumulates facts per partition and writes each closed batch as one deduplicated ClickHouse insert."""

    def __init__(
        self, target: ClickHouseTarget, consumer_group: str, *, batch_rows: int, batch_seconds: float,
        metrics: SinkMetrics | None = None, codec: LearningFactCodec | None = None,
    ) -> None:
        self.target = target
        self.consumer_group = consumer_group
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.metrics = metrics or SinkMetrics()
        self._codec = codec or LearningFactCodec()
        self._open: dict[TopicPartition, PartitionBatch] = {}
        self._closed: dict[TopicPartition, deque[PartitionBatch]] = {}
        self._plans: dict[TopicPartition, tuple[int, int]] = {}
        self._avro_inserts: dict[int, AvroFactInsert | None] = {}  # by id() of a parsed writer schema

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
        for tp, batch in list(self._open.items()):
            if batch.planned_last is None and now - batch.opened_at >= self.batch_seconds:
                self._close(tp)
        due = [batch for queue in self._closed.values() for batch in queue]
        self._closed.clear()
        return due

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
        _, rows = self.target.query_rows(
            f"SELECT partition, first_offset, last_offset FROM {self.target.database}.sink_batches FINAL "
            f"WHERE consumer_group = {quote_literal(self.consumer_group)} AND topic = {quote_literal(topic)}")
        for partition, first, last in rows:
            self._plans[(topic, int(partition))] = (int(first), int(last))

    def _record_plan(self, batch: PartitionBatch) -> None:
        self.target.command(
            f"INSERT INTO {self.target.database}.sink_batches "
            "(consumer_group, topic, partition, first_offset, last_offset, recorded_at) VALUES "
            f"({quote_literal(self.consumer_group)}, {quote_literal(batch.topic)}, {batch.partition}, "
            f"{batch.first_offset}, {batch.last_offset}, now64(6))")
        self._plans[(batch.topic, batch.partition)] = (batch.first_offset, batch.last_offset)

    # -- writing --------------------------------------------------------------------------------------------

    def decode(self, batch: PartitionBatch) -> tuple[list[dict[str, Any]], list[RejectedMessage]]:
        """Every message of the batch decoded in Python, in offset order: the records, and the messages that
        do not decode."""
        records: list[dict[str, Any]] = []
        rejects: list[RejectedMessage] = []
        for offset, value in zip(batch.offsets, batch.values, strict=True):
            try:
                records.append(self._codec.decode(value or b""))
            except Exception as error:  # any undecodable message is kept, never dropped
                rejects.append(RejectedMessage(
                    batch.topic, batch.partition, offset, str(error) or type(error).__name__, value or b""))
        return records, rejects

    def _avro_insert_for(self, group: WriterGroup) -> AvroFactInsert | None:
        """How ClickHouse reads this writer's container, or None: its batches take the Python path."""
        key = id(group.writer_schema)  # parsed writer schemas live as long as the codec
        if key not in self._avro_inserts:
            try:
                self._avro_inserts[key] = fact_insert_for(
                    group.writer_schema, self._codec.reader_schema, self.target.database)
            except AvroMappingError:
                self._avro_inserts[key] = None
        return self._avro_inserts[key]

    def _insert_in_clickhouse(self, batch: PartitionBatch, group: WriterGroup) -> bool:
        """The fast path: ClickHouse decodes the group's container. False when it refused the container."""
        plan = self._avro_insert_for(group)
        if plan is None:
            return False
        try:
            self.target.insert_avro(plan, group.container(), batch.dedup_token)
        except ClickHouseQueryError:  # refused the data (not unreachable): find the bad messages in Python
            self.metrics.python_decoded.inc()
            return False
        return True

    def write(self, batch: PartitionBatch) -> WriteResult:
        """Insert one batch (blocking). Raises ``SinkBackpressureError`` when ClickHouse fails."""
        started = time.perf_counter()
        groups, unreadable = group_by_writer(batch.offsets, batch.values, self._codec.writer_schema_of)
        rejects = [RejectedMessage(batch.topic, batch.partition, offset, error, raw)
                   for offset, raw, error in unreadable]
        try:
            if batch.planned_last is None:
                self._record_plan(batch)
            if len(groups) == 1 and self._insert_in_clickhouse(batch, groups[0]):
                rows = len(groups[0].bodies)
            elif groups:
                records, rejects = self.decode(batch)  # the same header rejects, plus the bad bodies
                rows = len(records)
                if records:
                    self.target.insert_arrow(FACT_TABLE, facts_to_arrow(records), batch.dedup_token)
            else:
                rows = 0
            if rejects:
                self.target.insert_arrow(REJECTS_TABLE, rejects_to_arrow(rejects), batch.dedup_token + ":rejects")
        except SinkError as error:
            self.metrics.insert_failures.inc()
            raise SinkBackpressureError(0.0, batch.topic, batch.partition, error) from error
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.rows_inserted.labels(FACT_TABLE).inc(rows)
        self.metrics.rejected.inc(len(rejects))
        self.metrics.batches.inc()
        self._plans.pop((batch.topic, batch.partition), None)
        return WriteResult(rows=rows, rejected=len(rejects))
