"""One insert per window per table, across partitions, exactly once by window (``sinks.windows``), on the real
engine (embedded chDB): the ranges of every partition are recorded before the one insert, a crash at any point
replays the identical block (ClickHouse drops it), a window split across consumers is replayed part by part, and
refused messages of any partition are isolated while the rest loads.

A crash is a fault injected at the exact point (an exception that is not the sink's: nothing after it runs, as
when the process dies there), then a new ``BatchSink`` that knows only what ClickHouse recorded."""

from __future__ import annotations

import typing

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sink_fixtures import make_fact, scalar

from schemas.avro.codec import LearningFactCodec
from schemas.kafka import KafkaSettings
from sinks.batches import BatchSink, facts_target
from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseUnavailableError, SinkBackpressureError
from sinks.loader import SinkLoader
from sinks.settings import SinkSettings
from sinks.tables import BATCHES_TABLE, FACT_INPUT_TABLE
from sinks.windows import token_of

CODEC = LearningFactCodec()
PARTITIONS = (0, 1, 2)
PER_PARTITION = 5


class Crash(Exception):
    """The process dying at the injected point (not a SinkError: the sink does not handle it)."""


class Faulty:
    """The real engine, with a fault at one point of a window's write, and a count of the inserts by table."""

    def __init__(self, real: ClickHouse, crash_at: str = "", refuse_partitions: frozenset[int] = frozenset()) -> None:
        self.real = real
        self.database = real.database
        self.crash_at = crash_at  # "intent": before the data insert; "done": after it, before the done marker
        self.refuse_partitions = refuse_partitions
        self.inserts: list[tuple[str, str]] = []  # (table, token or "")

    def insert_avro(self, table: str, container: bytes, settings: typing.Any = None) -> None:
        token = str(settings["insert_deduplication_token"])
        if self.crash_at == "intent":
            raise Crash("killed after the intent, before the insert")
        if int(token.split(":")[1]) in self.refuse_partitions:
            raise ClickHouseUnavailableError("injected: refused")
        self.real.insert_avro(table, container, settings)
        self.inserts.append((table, token))

    def insert_raw(self, table: str, body: bytes, fmt: str, settings: typing.Any = None) -> None:
        if table == BATCHES_TABLE and b'"done":1' in body and self.crash_at == "done":
            raise Crash("killed after the insert, before the done marker")
        self.real.insert_raw(table, body, fmt, settings)
        self.inserts.append((table, ""))

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self.real, name)


def messages() -> dict[int, list[bytes]]:
    return {p: [CODEC.encode_record(make_fact(p * 100 + i)) for i in range(PER_PARTITION)] for p in PARTITIONS}


def fill(sink: BatchSink, by_partition: dict[int, list[bytes]], first_offset: int = 10) -> None:
    for partition, values in by_partition.items():
        for index, value in enumerate(values):
            sink.add(value, "facts", partition, first_offset + index, now=0.0)


def exact(target: ClickHouse) -> tuple[int, int]:
    """Rows without FINAL, and distinct event ids."""
    return (scalar(target, "SELECT count() FROM learning.learning_facts"),
            scalar(target, "SELECT uniqExact(event_id) FROM learning.learning_facts"))


def test_one_insert_per_window_for_all_partitions_with_its_ranges_recorded(target: ClickHouse) -> None:
    faulty = Faulty(target)
    sink = BatchSink(typing.cast(ClickHouse, faulty), "g", batch_rows=1000, batch_seconds=1.0)
    fill(sink, messages())
    assert sink.take_due(now=0.5) == []  # the window has not passed
    (window,) = sink.take_due(now=1.0)
    assert [(p.partition, p.first_offset, p.last_offset) for p in window.parts] == [(0, 10, 14), (1, 10, 14),
                                                                                     (2, 10, 14)]
    assert sink.write(window).rows == 15
    data = [token for table, token in faulty.inserts if table == FACT_INPUT_TABLE]
    assert data == [token_of([("facts", p, 10, 14) for p in PARTITIONS])]  # ONE insert, the window's token
    assert data[0].startswith("facts:0:10-14+2:")
    assert [table for table, _ in faulty.inserts] == [BATCHES_TABLE, FACT_INPUT_TABLE, BATCHES_TABLE]
    assert sink.metrics.inserts.labels(FACT_INPUT_TABLE)._value.get() == 1
    assert sink.metrics.inserts.labels(BATCHES_TABLE)._value.get() == 2  # intent and done marker
    _, rows = target.query_rows("SELECT partition, first_offset, last_offset, window_id, parts, done "
                                "FROM learning.sink_batches FINAL ORDER BY partition")
    assert rows == [(p, 10, 14, data[0], 3, 1) for p in PARTITIONS]
    assert exact(target) == (15, 15)


@pytest.mark.parametrize("crash_at", ["intent", "done"])
def test_a_crash_inside_a_window_replays_the_identical_block(target: ClickHouse, crash_at: str) -> None:
    """Killed between the intent and the insert (nothing inserted) or between the insert and the done marker
    (inserted): the restarted sink, given the same messages in another order of partitions, rebuilds the recorded
    window exactly - one window, the same token - and every event is in ClickHouse once, counted without FINAL."""
    by_partition = messages()
    first = BatchSink(typing.cast(ClickHouse, Faulty(target, crash_at)), "g", batch_rows=1000, batch_seconds=1.0)
    fill(first, by_partition)
    (window,) = first.take_due(now=1.0)
    with pytest.raises(Crash):
        first.write(window)
    assert exact(target) == ((15, 15) if crash_at == "done" else (0, 0))

    restarted_engine = Faulty(target)
    restarted = BatchSink(typing.cast(ClickHouse, restarted_engine), "g", batch_rows=3, batch_seconds=1.0)
    restarted.load_plans("facts")
    restarted.claim({("facts", p) for p in PARTITIONS})
    fill(restarted, dict(reversed(by_partition.items())))  # batch_rows=3 would cut other ranges: the plan wins
    (rebuilt,) = restarted.take_due(now=100.0)
    assert rebuilt.token == window.token
    assert restarted.write(rebuilt).rows == 15
    assert [table for table, _ in restarted_engine.inserts] == [FACT_INPUT_TABLE, BATCHES_TABLE]  # no new intent
    assert exact(target) == (15, 15)  # the replay of an inserted window was dropped by its token


def test_a_window_whose_partitions_moved_apart_is_replayed_part_by_part(target: ClickHouse) -> None:
    """Killed after the insert, before the done marker, then partitions 0-1 go to one sink and 2 to another: each
    replays its own part under the part's range token, recorded first. The window WAS inserted, so its rows come
    again: learning_facts is a ReplacingMergeTree on the fact identity, FINAL shows each fact once, and a count
    without FINAL sees the copies until a merge."""
    by_partition = messages()
    first = BatchSink(typing.cast(ClickHouse, Faulty(target, "done")), "g", batch_rows=1000, batch_seconds=1.0)
    fill(first, by_partition)
    (window,) = first.take_due(now=1.0)
    with pytest.raises(Crash):
        first.write(window)
    for owned in ({0, 1}, {2}):
        sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=1.0)
        sink.load_plans("facts")
        sink.claim({("facts", p) for p in owned})
        fill(sink, {p: by_partition[p] for p in owned})
        windows = sink.take_due(now=100.0)
        assert [w.token for w in windows] == [token_of([("facts", p, 10, 14)]) for p in sorted(owned)]
        for part in windows:
            sink.write(part)
    _, rows = target.query_rows("SELECT partition, window_id, parts, done FROM learning.sink_batches FINAL "
                                "ORDER BY partition")
    assert rows == [(p, token_of([("facts", p, 10, 14)]), 1, 1) for p in PARTITIONS]
    assert scalar(target, "SELECT count() FROM learning.learning_facts FINAL") == 15
    assert scalar(target, "SELECT uniqExact(event_id) FROM learning.learning_facts") == 15
    assert scalar(target, "SELECT count() FROM learning.learning_facts") in (15, 30)  # 30 until a merge


def test_a_window_clickhouse_does_not_take_is_retried_part_by_part(target: ClickHouse) -> None:
    faulty = Faulty(target, refuse_partitions=frozenset({0}))
    sink = BatchSink(typing.cast(ClickHouse, faulty), "g", batch_rows=1000, batch_seconds=1.0)
    by_partition = messages()
    fill(sink, by_partition)
    (window,) = sink.take_due(now=1.0)
    result = sink.write(window)
    assert result.rows == 10 and [(e.topic, e.partition) for e in result.failed] == [("facts", 0)]
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 10
    # partition 0's range is now a window of its own: offered again (after the pause) it is rebuilt alone
    sink.drop([("facts", 0)])
    faulty.refuse_partitions = frozenset()
    fill(sink, {0: by_partition[0]})
    (alone,) = sink.take_due(now=100.0)
    assert alone.token == "facts:0:10-14" and sink.write(alone).rows == 5
    assert exact(target) == (15, 15)


def test_a_one_part_window_refused_raises_for_its_partition(target: ClickHouse) -> None:
    sink = BatchSink(typing.cast(ClickHouse, Faulty(target, refuse_partitions=frozenset({2}))), "g",
                     batch_rows=1000, batch_seconds=1.0)
    fill(sink, {2: messages()[2]})
    (window,) = sink.take_due(now=1.0)
    with pytest.raises(SinkBackpressureError) as raised:
        sink.write(window)
    assert (raised.value.topic, raised.value.partition) == ("facts", 2)


def test_refused_messages_of_any_partition_are_isolated_and_the_rest_of_the_window_loads(
        target: ClickHouse) -> None:
    by_partition = messages()
    by_partition[1][2] = by_partition[1][2][:10] + b"\xff\xff\xff\xff"  # a known writer, a body that runs out
    by_partition[2][4] = b"not avro"
    sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=1.0)
    fill(sink, by_partition)
    (window,) = sink.take_due(now=1.0)
    result = sink.write(window)
    assert (result.rows, result.rejected) == (13, 2)
    _, rejects = target.query_rows("SELECT topic, partition, offset FROM learning.sink_rejects ORDER BY partition")
    assert rejects == [("facts", 1, 12), ("facts", 2, 14)]
    assert exact(target) == (13, 13)


def test_each_table_gets_its_window_and_a_partition_at_most_one_range_per_window() -> None:
    sink = BatchSink(typing.cast(ClickHouse, None), "g", batch_rows=2, batch_seconds=1.0,
                     topic_seconds={"raw": 5.0})
    for offset in range(5):  # three ranges of partition 0: [0, 1], [2, 3], then [4] open
        sink.add(b"f", "facts", 0, offset, now=0.0)
    sink.add(b"g", "facts", 1, 7, now=0.5)
    sink.add(b"r", "raw", 0, 3, now=0.0)
    windows = sink.take_due(now=1.0)
    assert [[(p.topic, p.partition, p.first_offset) for p in w.parts] for w in windows] == [
        [("facts", 0, 0), ("facts", 1, 7)], [("facts", 0, 2)], [("facts", 0, 4)]]
    assert [w.ranges for w in sink.take_due(now=5.0)] == [[("raw", 0, 3, 3)]]


def test_a_part_read_past_its_recorded_range_does_not_hold_the_others_back(target: ClickHouse) -> None:
    """Killed after the intent; on restart partition 1 starts past its recorded range (its messages are gone
    from Kafka): the parts of partitions 0 and 2 do not wait for it for ever, they are written alone."""
    by_partition = messages()
    first = BatchSink(typing.cast(ClickHouse, Faulty(target, "intent")), "g", batch_rows=1000, batch_seconds=1.0)
    fill(first, by_partition)
    (window,) = first.take_due(now=1.0)
    with pytest.raises(Crash):
        first.write(window)
    restarted = BatchSink(target, "g", batch_rows=1000, batch_seconds=1.0)
    restarted.load_plans("facts")
    restarted.claim({("facts", p) for p in PARTITIONS})
    fill(restarted, {0: by_partition[0], 2: by_partition[2]})
    fill(restarted, {1: by_partition[1][:2]}, first_offset=40)
    windows = restarted.take_due(now=100.0)
    assert [w.token for w in windows[:2]] == ["facts:0:10-14", "facts:2:10-14"]
    assert [w.ranges for w in windows[2:]] == [[("facts", 1, 40, 41)]]
    for w in windows:
        restarted.write(w)
    assert exact(target) == (12, 12)


class RecordingConsumer:
    """What the loader asks of its consumer while writing windows: commits, seeks and pauses."""

    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []
        self.seeks: list[tuple[int, int]] = []
        self.paused: list[int] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("facts", p) for p in PARTITIONS}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append({(tp.topic, tp.partition): offset for tp, offset in offsets.items()})

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))

    def pause(self, tp: TopicPartition) -> None:
        self.paused.append(tp.partition)


async def test_the_windows_behind_a_paused_partition_wait_and_nothing_is_committed_past_a_rewind(
        target: ClickHouse) -> None:
    """Partition 0's ranges are refused. Windows: [p0 10-11, p1 10-11], [p0 12-13, p1 12-13], [p1 14-15]. The first
    is retried part by part: p1's part loads and is committed, p0 pauses. The second holds p0: skipped, p1 rewound
    to 12; the third (p1 only) must wait too - committing 16 would skip 12-13."""
    loader = SinkLoader(SinkSettings(batch_rows=2, batch_seconds=3600), KafkaSettings(), typing.cast(
        ClickHouse, Faulty(target, refuse_partitions=frozenset({0}))), targets={"facts": facts_target()})
    fill(loader.sink, {p: [CODEC.encode_record(make_fact(p * 100 + i)) for i in range(count)]
                       for p, count in ((0, 4), (1, 6))})
    due = loader.sink.take_due(now=0.0)
    assert [[(p.partition, p.first_offset) for p in w.parts] for w in due] == [[(0, 10), (1, 10)],
                                                                               [(0, 12), (1, 12)], [(1, 14)]]
    consumer = RecordingConsumer()
    await loader._write_batches(typing.cast(AIOKafkaConsumer, consumer), due)
    assert consumer.commits == [{("facts", 1): 12}]
    assert consumer.paused == [0] and consumer.seeks == [(0, 10), (1, 12)]
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 2


def test_a_rebuilt_window_clickhouse_does_not_take_is_retried_whole(target: ClickHouse) -> None:
    """Killed after the insert, before the done marker; on restart ClickHouse fails once: the rebuilt window (in
    ClickHouse already) is not split into parts with other tokens, which would insert its rows again."""
    by_partition = messages()
    first = BatchSink(typing.cast(ClickHouse, Faulty(target, "done")), "g", batch_rows=1000, batch_seconds=1.0)
    fill(first, by_partition)
    (window,) = first.take_due(now=1.0)
    with pytest.raises(Crash):
        first.write(window)
    flaky = Faulty(target, refuse_partitions=frozenset({0}))
    restarted = BatchSink(typing.cast(ClickHouse, flaky), "g", batch_rows=1000, batch_seconds=1.0)
    restarted.load_plans("facts")
    restarted.claim({("facts", p) for p in PARTITIONS})
    fill(restarted, by_partition)
    (rebuilt,) = restarted.take_due(now=100.0)
    with pytest.raises(SinkBackpressureError):
        restarted.write(rebuilt)
    restarted.drop()  # the loader pauses the window's partitions and re-reads them
    flaky.refuse_partitions = frozenset()
    fill(restarted, by_partition)
    (again,) = restarted.take_due(now=200.0)
    assert again.token == window.token and restarted.write(again).rows == 15
    assert exact(target) == (15, 15)  # no FINAL


class FetchingConsumer(RecordingConsumer):
    """A consumer whose next fetch returns these records (as aiokafka does for a new assignment while the
    assignment callback still runs)."""

    def __init__(self, records: dict[TopicPartition, list[typing.Any]]) -> None:
        super().__init__()
        self.records = records

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[
            typing.Any]]:
        records, self.records = self.records, {}
        return records

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


async def test_records_fetched_before_the_recorded_state_is_read_are_read_again_after(target: ClickHouse) -> None:
    """aiokafka returns a new assignment's records before ``on_partitions_assigned`` has read the partitions'
    recorded state (which says a range is done, or must be rebuilt exactly): such records are not loaded but read
    again (seek back) once the state is known."""
    loader = SinkLoader(SinkSettings(batch_rows=1000, batch_seconds=3600), KafkaSettings(), target,
                        targets={"facts": facts_target()})
    tp = TopicPartition("facts", 1)
    consumer = FetchingConsumer({tp: [Record(10, b"a"), Record(11, b"b")]})
    await loader._poll_once(typing.cast(AIOKafkaConsumer, consumer))
    assert loader.sink.pending_first_offsets() == {} and consumer.seeks == [(1, 10)]
    loader.loading.add(tp)  # the assignment callback is done
    consumer.records = {tp: [Record(10, b"a"), Record(11, b"b")]}
    await loader._poll_once(typing.cast(AIOKafkaConsumer, consumer))
    assert loader.sink.pending_first_offsets() == {("facts", 1): 10}


class Record(typing.NamedTuple):
    offset: int
    value: bytes
