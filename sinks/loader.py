"""``SinkLoader``: consume the sink's topics, write one window per target table to ClickHouse, commit after it.

Each topic has a target (``sinks.targets``): the facts topic's LearningFact Avro blocks go to ``learning_facts``, the
archive topic's raw-archive rows (Avro blocks the streams worker built) to ``raw_events`` (``sinks.archive``); the
raw topics are not read. One consumer group and one loading machinery for all of them:

- aiokafka consumer, ``enable_auto_commit=False``, ``isolation_level="read_committed"``;
- the ranges of all partitions feeding one table are written as one window (``sinks.windows``: intent recorded,
  one insert with the window's token, done marker); each part's offset ``last + 1`` is committed only after that;
- on assignment, the recorded state of the partitions is read (records fetched before it is known are read
  again after): a range already done is skipped when read again (committed, not inserted), a window recorded but
  not done is rebuilt exactly (or part by part when its partitions were split across consumers);
- one background writer inserts the due windows while the consumer fetches the next ones (fetching and inserting
  overlap; a partition's ranges are still inserted and committed in offset order, one writer at a time, and a
  revocation waits for the writer, so inserted windows are committed while the partitions are still ours);
- when a partition's range cannot be written (a window ClickHouse does not take is retried part by part), only
  ITS partition is paused and rewound to its first unwritten offset for the ``retry_after`` the sink asks for
  (exponential per partition); every other partition keeps loading, and the loader keeps polling so it stays in
  the group; the paused partition is then resumed and re-reads the same range. A window holding a range of a
  paused partition is not written: its other partitions are rewound to re-read their ranges at once. ``ready``
  is False while any partition is paused;
- messages ClickHouse cannot load are isolated and go to ``sink_rejects`` with the reason (``sinks.writer``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from schemas.avro.registry import learning_fact_block_codec, learning_fact_codec, raw_archive_codecs, raw_event_codec
from schemas.kafka import KafkaSettings
from sinks.archive import raw_archive_target
from sinks.batches import BatchSink, Window, WriteResult, facts_target
from sinks.clickhouse import ClickHouse
from sinks.errors import SinkBackpressureError, SinkError
from sinks.failed import dead_letters_target, jobs_target, rejected_requests_target
from sinks.metrics import SinkMetrics
from sinks.query_slots import OwnThreads
from sinks.settings import SinkSettings
from sinks.targets import Target

log = logging.getLogger(__name__)

POLL_MS = 100


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loader: SinkLoader) -> None:
        self._loader = loader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loader.finish_writing()  # inserted batches are committed while the partitions are still ours
        self._loader.sink.drop([(tp.topic, tp.partition) for tp in revoked])
        self._loader.loading -= revoked
        for tp in revoked:
            self._loader.paused.pop(tp, None)
            self._loader.skip_through.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        loader = self._loader
        if loader.assigned_at is None:
            loader.assigned_at = time.monotonic()
        for topic in {tp.topic for tp in assigned}:
            try:
                await loader.threads.run(loader.sink.load_plans, topic)
            except SinkError as error:  # without the plans a retried range may be cut differently: FINAL still dedups
                log.warning("cannot read recorded batch ranges of %s: %s", topic, error)
        loader.sink.claim({(tp.topic, tp.partition) for tp in assigned})
        loader.skip_through = {TopicPartition(*tp): last for tp, last in loader.sink.done_through().items()}
        loader.loading = set(assigned)


def default_targets(kafka: KafkaSettings, student_key: bytes = b"") -> dict[str, Target]:
    """The facts topic, the archive topic (its rows carry the pseudonyms the worker computed: erasable) and the jobs
    topic, and (with the student key secret) the dead letters and rejected requests into the failed events (both
    hold what was sent: they must be erasable by the student key)."""
    topics = kafka.topics
    fact_codec = learning_fact_codec(kafka)
    targets: dict[str, Target] = {topics.facts: facts_target(fact_codec, learning_fact_block_codec(kafka, fact_codec)),
                                  topics.archive: raw_archive_target(*raw_archive_codecs(kafka)),
                                  topics.jobs: jobs_target()}
    if student_key:
        raw_codec = raw_event_codec(kafka)
        targets[topics.dead_letters] = dead_letters_target(raw_codec, student_key)
        targets[topics.rejected] = rejected_requests_target(student_key)
    else:
        log.warning("the failed events are off: CALIPER_PRIVACY__STUDENT_KEY is not set, and what they keep of the "
                    "events as sent must be erasable by the student key")
    return targets


class SinkLoader:
    """Loads its targets' topics (``default_targets`` unless given) into ClickHouse until cancelled."""

    def __init__(
        self, sink: SinkSettings, kafka: KafkaSettings, clickhouse: ClickHouse,
        *, metrics: SinkMetrics | None = None, targets: dict[str, Target] | None = None, student_key: bytes = b"",
    ) -> None:
        self.settings = sink
        self.kafka = kafka
        self.targets = targets if targets is not None else default_targets(kafka, student_key)
        self.metrics = metrics or SinkMetrics()
        self.sink = BatchSink(
            clickhouse, sink.group_id, batch_rows=sink.batch_rows, batch_bytes=sink.batch_bytes,
            batch_seconds=sink.batch_seconds,
            metrics=self.metrics, targets=self.targets, isolate_after_failures=sink.isolate_after_failures,
            backoff_min_seconds=sink.retry_backoff_min_seconds, backoff_max_seconds=sink.retry_backoff_max_seconds,
            student_key=student_key,
            topic_seconds={topic: sink.archive_batch_seconds
                           for topic in (kafka.topics.archive,) if topic in self.targets})
        self.rows_written = 0
        self.started = False
        self.assigned_at: float | None = None  # when the group first gave this loader partitions
        self.paused: dict[TopicPartition, float] = {}  # partition -> when to resume it
        # partition -> the last offset of its recorded range already inserted: read again, skipped and committed
        self.skip_through: dict[TopicPartition, int] = {}
        # the partitions whose recorded state is read: aiokafka hands out a new assignment's records while the
        # assignment callback still reads it, and what arrives before is read again once it is known
        self.loading: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._writing: asyncio.Task[None] | None = None  # the windows being inserted while the next are fetched
        # the inserts' own thread: nothing else the process runs in threads (reads, analyst queries) can make the
        # next insert wait for a thread (windows are inserted one at a time anyway)
        self.threads = OwnThreads("load", 1)

    @property
    def topics(self) -> list[str]:
        return list(self.targets)

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
            fetch_min_bytes=self.settings.fetch_min_bytes,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            **self.kafka.client_options(),
        )

    async def run(self) -> None:
        consumer = self._consumer = self._new_consumer()
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        await consumer.start()
        self.started = True
        try:
            while True:
                await self._poll_once(consumer)
        finally:
            self.started = False
            if self._writing is not None:  # an insert already in ClickHouse's hands finishes uncommitted: replayed
                self._writing.cancel()
                await asyncio.gather(self._writing, return_exceptions=True)
            await consumer.stop()
            self.threads.close()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        self._resume_due(consumer)
        fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=self.settings.batch_rows)
        add = self.sink.add
        now = time.monotonic()
        for tp, messages in fetched.items():
            if tp in self.paused:  # fetched before the pause: read again after the resume
                continue
            if tp not in self.loading:  # fetched before its recorded state was read: read again after
                if messages and tp in consumer.assignment():
                    consumer.seek(tp, messages[0].offset)
                continue
            topic, partition = tp.topic, tp.partition
            if tp in self.skip_through and messages:
                messages = await self._skip_done(consumer, tp, messages)
            for message in messages:
                add(message.value, topic, partition, message.offset, now)
            if messages:
                self._update_lag(consumer, tp, messages[-1].offset + 1)
        await self._write_due(consumer)

    async def _skip_done(self, consumer: AIOKafkaConsumer, tp: TopicPartition, messages: list[Any]) -> list[Any]:
        """Drop what is read again of a range whose window is done (inserted before a crash or a rebalance came
        before the commit), and commit past it: no insert."""
        last = self.skip_through[tp]
        kept = [message for message in messages if message.offset > last]
        if len(kept) < len(messages) and messages[len(messages) - len(kept) - 1].offset == last:
            await self._commit(consumer, {tp: last + 1})
            log.info("%s[%d]: offsets up to %d were inserted before: committed without a new insert",
                     tp.topic, tp.partition, last)
        if kept or messages[-1].offset == last:
            del self.skip_through[tp]
        return kept

    async def _write_due(self, consumer: AIOKafkaConsumer) -> None:
        """Hand the due windows to one background writer, so the next messages are fetched while ClickHouse
        inserts (one writer at a time: a partition's ranges are inserted and committed in offset order). While
        it runs, ranges keep filling up to ``batch_rows`` (fewer, larger inserts when inserting is the slower
        side); once more than ``batch_rows`` messages (or ``batch_bytes`` bytes) wait in closed ranges, fetching
        waits for the writer."""
        writing = self._writing
        if writing is not None:
            if (not writing.done() and self.sink.closed_size() <= self.settings.batch_rows
                    and self.sink.closed_bytes() <= self.settings.batch_bytes):
                return
            self._writing = None
            await writing  # raises what the writer raised (never a SinkBackpressureError: that pauses)
        due = self.sink.take_due()
        if due:
            self._writing = asyncio.create_task(self._write_batches(consumer, due))

    async def finish_writing(self) -> None:
        """Wait for the windows being inserted (and their commits); a failure is raised by the next poll."""
        writing = self._writing
        if writing is not None:
            await asyncio.wait([writing])

    async def _write_batches(self, consumer: AIOKafkaConsumer, due: list[Window]) -> None:
        rewound: set[TopicPartition] = set()  # partitions sent back to re-read from a range of these windows
        for window in due:
            parts = {TopicPartition(part.topic, part.partition): part for part in window.parts}
            if any(tp in self.paused or tp in rewound for tp in parts):
                # behind a range that failed: the paused partitions re-read theirs after the resume, the others
                # now, from their first range not written (a later window of theirs is skipped too)
                for tp, part in parts.items():
                    if tp not in self.paused and tp not in rewound:
                        self._rewind(consumer, tp, part.first_offset)
                        rewound.add(tp)
                continue
            try:
                result: WriteResult = await self.threads.run(self.sink.write, window)
            except SinkBackpressureError as error:
                for tp, part in parts.items():
                    self._pause(consumer, tp, part.first_offset, error)
                continue
            for refused in result.failed:
                tp = TopicPartition(refused.topic, refused.partition)
                self._pause(consumer, tp, parts.pop(tp).first_offset, refused)
            await self._commit(consumer, {tp: part.last_offset + 1 for tp, part in parts.items()})
            self.rows_written += result.rows

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as error:  # a rebalance took the partitions: their new owners re-read the recorded ranges
            log.warning("commit of %s failed after insert: %s", offsets, error)

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, first_unwritten: int,
               error: SinkBackpressureError) -> None:
        """Pause one partition, forget what it accumulated, rewind it to its first unwritten offset, and resume
        it after the ``retry_after`` the sink asked for."""
        rewind = self._rewind(consumer, tp, first_unwritten)
        if tp in consumer.assignment():
            consumer.pause(tp)
        self.paused[tp] = time.monotonic() + error.retry_after
        self.metrics.backing_off.set(len(self.paused))
        log.warning("%s[%d]: ClickHouse did not take the batch from offset %d (%s); retrying in %.2fs",
                    tp.topic, tp.partition, rewind, error.cause, error.retry_after)

    def _rewind(self, consumer: AIOKafkaConsumer, tp: TopicPartition, first_unwritten: int) -> int:
        """Forget what a partition accumulated and seek it back to its first unwritten offset (returned)."""
        rewind = min(first_unwritten, self.sink.pending_first_offsets().get((tp.topic, tp.partition), first_unwritten))
        self.sink.drop([(tp.topic, tp.partition)])
        if tp in consumer.assignment():
            consumer.seek(tp, rewind)
        return rewind

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
