"""Per-partition ranges of the sink's topics gathered into windows: accumulating them, and their recorded state.

Follows quix-streams' batching-sink contract (``add`` a message, ``take_due`` what to flush, ``write`` raises
``SinkBackpressureError(retry_after)`` when the destination cannot take it now, and the caller pauses the
partition for that long), with the exactly-once bookkeeping of ClickHouse's Kafka Connect sink applied per window
(``sinks.windows``: each partition's range is recorded in ``sink_batches`` before the window's one insert, marked
done after it; a retry rebuilds exactly the recorded ranges, so the insert carries the same deduplication token and
ClickHouse drops the repeated block). Each partition accumulates one range at a time; a range closes when it holds
``batch_rows`` messages or ``batch_bytes`` bytes of them (a block message holds many rows), when it reaches a
recorded range's end, or when its window (``batch_seconds``, or the topic's own in ``topic_seconds``) has passed
since the oldest open range of its target - then every open range of that target and window closes with it, and
``take_due`` hands one ``Window`` per target table. How a window is written, and how rows ClickHouse refuses are
isolated, is ``sinks.writer``; how a topic's messages become inserts is the topic's target (``sinks.targets``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from schemas.avro.codec import LearningFactCodec
from schemas.blocks import BlockCodec, fact_block_codec
from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseQueryError, SinkBackpressureError, SinkError
from sinks.failed import describe_fact
from sinks.metrics import SinkMetrics
from sinks.tables import BATCHES_TABLE, FACT_INPUT_TABLE, FACT_TABLE
from sinks.targets import AvroTarget, Target
from sinks.windows import PartitionBatch, Plan, TopicPartition, Window, plan_rows, regroup, split, token_of
from sinks.writer import BatchWriter

log = logging.getLogger(__name__)

__all__ = ["BatchSink", "PartitionBatch", "Window", "WriteResult", "facts_target"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    rows: int
    rejected: int
    # parts of a multi-part window that ClickHouse did not take when retried one by one (the others are written)
    failed: list[SinkBackpressureError] = field(default_factory=list)


def facts_target(codec: LearningFactCodec | None = None, blocks: BlockCodec | None = None) -> AvroTarget:
    """The facts topic's target: LearningFact Avro (blocks, and single facts of older writers) into
    ``learning_facts_in``."""
    codec = codec or LearningFactCodec()
    blocks = blocks or fact_block_codec(codec)
    return AvroTarget(FACT_INPUT_TABLE, codec, blocks=blocks, destination=FACT_TABLE,
                      describe=describe_fact(codec, blocks))


class BatchSink:
    """Accumulates messages per partition and writes each window as one deduplicated ClickHouse insert per target
    table (``targets``; a topic not listed is loaded by ``default_target``, facts unless said otherwise)."""

    def __init__(
        self, clickhouse: ClickHouse, consumer_group: str, *, batch_rows: int, batch_seconds: float,
        metrics: SinkMetrics | None = None, targets: Mapping[str, Target] | None = None,
        default_target: Target | None = None,
        isolate_after_failures: int = 5, backoff_min_seconds: float = 0.5, backoff_max_seconds: float = 30.0,
        student_key: bytes = b"", topic_seconds: Mapping[str, float] | None = None, batch_bytes: int = 16 << 20,
    ) -> None:
        self.clickhouse = clickhouse
        self.consumer_group = consumer_group
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.batch_seconds = batch_seconds
        self.topic_seconds = dict(topic_seconds or {})  # a longer window for topics off the freshness path
        self.metrics = metrics or SinkMetrics()
        self.targets = dict(targets or {})
        self.default_target = default_target or facts_target()
        self._open: dict[TopicPartition, PartitionBatch] = {}
        self._closed: dict[TopicPartition, deque[PartitionBatch]] = {}
        self._plans: dict[TopicPartition, Plan] = {}
        self._repositioned: set[TopicPartition] = set()  # partitions whose next message is the first read again
        self._writer = BatchWriter(clickhouse, self.metrics, student_key)
        self.isolate_after_failures = isolate_after_failures
        self.backoff_min_seconds = backoff_min_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._failures: dict[str, int] = {}  # window token -> failed writes in a row
        # held while a window is written: an erasure takes it to order itself against in-flight inserts
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
            if plan is not None and plan.first == offset:
                batch.planned_last, batch.plan = plan.last, plan
            elif plan is not None and offset > plan.first and not plan.done and tp in self._repositioned:
                self._abandon(tp, plan)
            self._repositioned.discard(tp)
            self._open[tp] = batch
        batch.values.append(value)
        batch.offsets.append(offset)
        batch.nbytes += len(value)
        batch.last_offset = offset
        if batch.planned_last is not None:
            if offset >= batch.planned_last:
                self._close(tp)
        elif batch.size >= self.batch_rows or batch.nbytes >= self.batch_bytes:
            self._close(tp)

    def _close(self, tp: TopicPartition) -> None:
        self._closed.setdefault(tp, deque()).append(self._open.pop(tp))

    def take_due(self, now: float | None = None) -> list[Window]:
        """Windows ready to write, in the order to write them: rebuilt recorded windows whose every part is here,
        then one window per target of the closed ranges (one range per partition each; a partition with more
        closed ranges gives the next window). A window of a target is due when its oldest open range is older than
        its topic's window: every open range of that target and window closes then."""
        self._close_windows(time.monotonic() if now is None else now)
        windows: list[Window] = []
        rebuilt: dict[str, list[TopicPartition]] = {}
        for tp, queue in self._closed.items():
            plan = queue[0].plan if queue else None
            if plan is not None:
                rebuilt.setdefault(plan.window_id, []).append(tp)
        for members in rebuilt.values():
            plan = self._closed[members[0]][0].plan
            if plan is not None and len(members) >= plan.parts:  # every part of the window is here
                windows.append(self._window([self._closed[tp].popleft() for tp in sorted(members)]))
        while True:
            fresh: dict[int, list[PartitionBatch]] = {}
            for tp in sorted(self._closed):
                queue = self._closed[tp]
                if queue and queue[0].plan is None:
                    batch = queue.popleft()
                    fresh.setdefault(id(self.target_of(batch.topic)), []).append(batch)
            if not fresh:
                break
            windows += [self._window(parts) for parts in fresh.values()]
        for tp in [tp for tp, queue in self._closed.items() if not queue]:
            del self._closed[tp]
        return windows

    def _window(self, parts: list[PartitionBatch]) -> Window:
        return Window(self.target_of(parts[0].topic), parts)

    def _close_windows(self, now: float) -> None:
        window, default = self.topic_seconds.get, self.batch_seconds
        oldest: dict[tuple[int, float], float] = {}
        members: dict[tuple[int, float], list[TopicPartition]] = {}
        for tp, batch in self._open.items():
            if batch.planned_last is None:  # a recorded range closes at its end, whatever the time
                key = (id(self.target_of(tp[0])), window(tp[0], default))
                oldest[key] = min(oldest.get(key, batch.opened_at), batch.opened_at)
                members.setdefault(key, []).append(tp)
        for key, opened_at in oldest.items():
            if now - opened_at >= key[1]:
                for tp in members[key]:
                    self._close(tp)

    def closed_size(self) -> int:
        """Messages in closed ranges not yet taken by ``take_due``."""
        return sum(batch.size for queue in self._closed.values() for batch in queue)

    def closed_bytes(self) -> int:
        """Bytes of the messages in closed ranges not yet taken by ``take_due``."""
        return sum(batch.nbytes for queue in self._closed.values() for batch in queue)

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
        self._repositioned.update(self._plans if partitions is None else partitions)

    # -- recorded ranges ------------------------------------------------------------------------------------

    def load_plans(self, topic: str) -> None:
        """Read the recorded state of every partition of ``topic`` (at start and on assignment)."""
        _, rows = self.clickhouse.query_rows(
            "SELECT partition, first_offset, last_offset, window_id, parts, done "
            f"FROM {self.clickhouse.database}.{BATCHES_TABLE} FINAL "
            "WHERE consumer_group = {group:String} AND topic = {topic:String}",
            {"group": self.consumer_group, "topic": topic})
        for partition, first, last, window_id, parts, done in rows:
            first, last = int(first), int(last)
            # a row recorded before windows is a window of its one range
            window_id = str(window_id) or token_of([(topic, int(partition), first, last)])
            self._plans[(topic, int(partition))] = Plan(first, last, window_id, int(parts), bool(done))
            self._repositioned.add((topic, int(partition)))

    def claim(self, owned: set[TopicPartition]) -> None:
        """Keep the recorded state of the partitions this consumer owns now; a window not done whose parts are
        split across consumers is replayed here part by part (``sinks.windows``)."""
        for topic, partition in regroup(self._plans, owned):
            log.warning("%s[%d]: its recorded window is not done and its partitions moved apart: its range is "
                        "replayed alone (a copy collapses in the ReplacingMergeTree if the window was inserted)",
                        topic, partition)

    def _abandon(self, tp: TopicPartition, plan: Plan) -> None:
        """The partition reads past its recorded range (gone from Kafka, or committed past): its window's other
        parts, which would wait for it for ever, are written as windows of their own."""
        self._plans.pop(tp, None)
        parts = split(self._plans, plan.window_id)
        for batch in [*self._open.values(), *(b for queue in self._closed.values() for b in queue)]:
            if batch.plan is not None and batch.plan.window_id == plan.window_id:
                batch.plan = self._plans.get((batch.topic, batch.partition))
        log.warning("%s[%d]: read from past its recorded range %d-%d: the %d other parts of its window are written "
                    "alone", tp[0], tp[1], plan.first, plan.last, len(parts))

    def done_through(self) -> dict[TopicPartition, int]:
        """The last offset of each partition whose recorded range is inserted: read again, it needs no insert."""
        return {tp: plan.last for tp, plan in list(self._plans.items()) if plan.done}

    def _record(self, window: Window, *, done: bool) -> None:
        at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        body = b"".join(orjson.dumps(row) + b"\n" for row in plan_rows(self.consumer_group, window, at, done=done))
        self.metrics.inserts.labels(BATCHES_TABLE).inc()
        self.clickhouse.insert_raw(BATCHES_TABLE, body, "JSONEachRow")
        token, parts = window.token, len(window.parts)
        for part in window.parts:
            self._plans[(part.topic, part.partition)] = part.plan = Plan(
                part.first_offset, part.last_offset, token, parts, done)

    # -- writing --------------------------------------------------------------------------------------------

    def write(self, window: Window) -> WriteResult:
        """Write one window (blocking): its intent, its insert, its done marker. Raises
        ``SinkBackpressureError(retry_after)`` when ClickHouse cannot take a one-part window now, or a window rebuilt
        from its record (the caller pauses its partitions for that long and offers the same ranges again); a new
        window of several parts is then retried part by part, and the parts that still fail come back in
        ``WriteResult.failed``."""
        rebuilt = window.recorded  # a recorded window may be in ClickHouse already: only its own token is safe
        try:
            return self._write(window)
        except SinkBackpressureError as error:
            if len(window.parts) == 1 or rebuilt:
                raise
            log.warning("the window %s was not taken (%s): retrying its %d parts one by one", window.token,
                        error.cause, len(window.parts))
            self._failures.pop(window.token, None)
        rows = rejected = 0
        failed: list[SinkBackpressureError] = []
        for part in window.parts:
            part.plan = None  # recorded anew as a window of its own
            try:
                result = self._write(Window(window.target, [part]))
            except SinkBackpressureError as error:
                failed.append(error)
                continue
            rows, rejected = rows + result.rows, rejected + result.rejected
        return WriteResult(rows=rows, rejected=rejected, failed=failed)

    def _write(self, window: Window) -> WriteResult:
        target, token = window.target, window.token
        failures = self._failures.get(token, 0)
        started = time.perf_counter()
        try:
            with self.write_lock:
                if not window.recorded:
                    self._record(window, done=False)
                outcome = self._writer.write(target, window.keys, window.values, token,
                                             isolate_any_refusal=failures >= self.isolate_after_failures)
                self._record(window, done=True)
        except SinkError as error:
            self.metrics.insert_failures.inc()
            failures += 1
            self._failures[token] = failures
            isolating = isinstance(error, ClickHouseQueryError) and failures >= self.isolate_after_failures
            retry_after = 0.0 if isolating else min(
                self.backoff_max_seconds, self.backoff_min_seconds * 2 ** (failures - 1))
            raise SinkBackpressureError(retry_after, window.topic, window.partition, error) from error
        self._failures.pop(token, None)
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.rows_inserted.labels(target.destination).inc(outcome.rows)
        self.metrics.rejected.inc(len(outcome.rejects))
        self.metrics.batches.inc()
        for part in window.parts:
            self._plans.pop((part.topic, part.partition), None)
        return WriteResult(rows=outcome.rows, rejected=len(outcome.rejects))
