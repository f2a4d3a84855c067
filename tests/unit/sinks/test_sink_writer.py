"""Writing batches: Avro containers decoded by ClickHouse, recorded ranges, and the isolation of the messages
ClickHouse refuses (the real engine, embedded chDB)."""

from __future__ import annotations

import base64
import io
import typing

import fastavro
from fastavro.schema import parse_schema, to_parsing_canonical_form
from sink_fixtures import DAY_MS, make_fact, scalar

from schemas.avro.codec import LearningFactCodec
from schemas.records import LearningFact
from sinks.avro_container import WriterGroup, container_of, group_by_writer
from sinks.batches import BatchSink, facts_target
from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseQueryError, SinkBackpressureError
from sinks.migrations import Layout, apply_migrations
from sinks.tables import FACT_COLUMNS, FACT_INPUT_TABLE, fact_records, facts_to_arrow
from sinks.writer import INSERT_SETTINGS

CODEC = LearningFactCodec()
TARGET = facts_target(CODEC)


def write_all(sink: BatchSink) -> list[typing.Any]:
    return [sink.write(batch) for batch in sink.take_due(now=1e12)]


def varied_facts(count: int) -> list[LearningFact]:
    """Facts that exercise every column type: nulls and values, booleans, times, non-ASCII, big numbers."""
    facts = []
    for i in range(count):
        changes: dict[str, typing.Any] = {
            "fact_index": i % 3, "xp_earned": i * 0.25, "extensions_json": f'{{"n": {i}, "é": "ü"}}',
            "object_name": "Fração ✓ " * (i % 4), "student_email_hash": f"{i:064x}"}
        if i % 2:
            changes |= {"score_given": i / 7, "max_score": 10.0, "score_ratio": 0.5, "attempts": 2**40 + i,
                        "started_time_ms": DAY_MS - i, "ended_time_ms": DAY_MS + i, "last_access_time_ms": 0,
                        "total_time_seconds": 1e-3, "percent_read": 99.5, "finished": i % 4 == 1,
                        "frequency_assigned": -i}
        facts.append(make_fact(i, **changes))
    return facts


def all_rows(target: ClickHouse, database: str) -> list[tuple[typing.Any, ...]]:
    return target.query_rows(f"SELECT * FROM {database}.learning_facts ORDER BY fact_id, content_hash")[1]


# -- containers --------------------------------------------------------------------------------------------

def test_a_container_of_message_bodies_reads_back_as_the_same_records() -> None:
    records = fact_records(varied_facts(50))
    messages = [CODEC.encode(record) for record in records]
    groups, unreadable = group_by_writer(list(range(50)), messages, TARGET.read)
    assert unreadable == [] and len(groups) == 1 and groups[0].offsets == list(range(50))
    read = list(fastavro.reader(io.BytesIO(groups[0].container())))
    assert read == records == [CODEC.decode(m) for m in messages]
    assert container_of(groups[0].schema_json, groups[0].bodies) == groups[0].container()  # deterministic
    assert groups[0].originals == messages and groups[0].counts == [1] * 50


def test_messages_are_grouped_by_writer_and_bad_headers_set_apart() -> None:
    good = CODEC.encode_record(make_fact(1))
    groups, unreadable = group_by_writer([5, 6, 7, 8], [good, b"\xc3\x01" + b"\x00" * 8 + b"x", None, good],
                                         TARGET.read)
    assert [g.offsets for g in groups] == [[5, 8]] and groups[0].bodies == [good[10:]] * 2
    assert [(offset, raw) for offset, raw, _ in unreadable] == [(6, b"\xc3\x01" + b"\x00" * 8 + b"x"), (7, b"")]
    assert "unknown learning_fact writer fingerprint" in unreadable[0][2]


def test_clickhouse_decoding_the_avro_gives_the_rows_of_an_arrow_insert(target: ClickHouse) -> None:
    facts = varied_facts(200)
    sink = BatchSink(target, "g", batch_rows=200, batch_seconds=60)
    for offset, fact in enumerate(facts):
        sink.add(CODEC.encode_record(fact), "facts", 0, offset)
    (result,) = write_all(sink)
    assert (result.rows, result.rejected) == (200, 0)
    apply_migrations(target, Layout("by_arrow"))  # the same tables, filled from Arrow instead of Avro
    target.insert_arrow(f"by_arrow.{FACT_INPUT_TABLE}", facts_to_arrow(fact_records(facts)),
                        {**INSERT_SETTINGS, "insert_deduplication_token": "arrow"})
    by_clickhouse, by_arrow = all_rows(target, "learning"), all_rows(target, "by_arrow")
    assert len(by_clickhouse) == 200
    for fast, slow in zip(by_clickhouse, by_arrow, strict=True):
        assert fast == slow  # every column
    finished = FACT_COLUMNS.index("finished")
    assert {row[finished] for row in by_clickhouse} == {None, True, False}  # null and both values seen


def test_an_older_writer_gets_the_readers_defaults_as_in_python(target: ClickHouse) -> None:
    dropped = {"extensions_json", "started_time_ms", "score_ratio", "ed_app", "student_key"}
    older = {**CODEC.reader_schema, "fields": [f for f in CODEC.reader_schema["fields"] if f["name"] not in dropped]}
    older_parsed = parse_schema({k: v for k, v in older.items() if not k.startswith("__")})
    records = fact_records(varied_facts(20))
    bodies = []
    for record in records:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, older_parsed, record)
        bodies.append(body.getvalue())
    older_json = str(to_parsing_canonical_form(older_parsed))
    target.insert_avro(FACT_INPUT_TABLE, WriterGroup(older_json, bodies=bodies, counts=[1] * len(bodies)).container(),
                       {**INSERT_SETTINGS, "insert_deduplication_token": "older"})
    resolved = [fastavro.schemaless_reader(io.BytesIO(b), older_parsed, CODEC.reader_schema) for b in bodies]
    apply_migrations(target, Layout("by_arrow"))
    target.insert_arrow(f"by_arrow.{FACT_INPUT_TABLE}", facts_to_arrow(resolved),
                        {**INSERT_SETTINGS, "insert_deduplication_token": "arrow"})
    assert all_rows(target, "learning") == all_rows(target, "by_arrow")
    assert scalar(target, "SELECT countIf(extensions_json = '{}' AND started_time IS NULL AND student_key = '') "
                          "FROM learning.learning_facts") == 20


# -- recorded ranges ---------------------------------------------------------------------------------------

def test_a_range_rebuilt_after_a_crash_carries_the_same_token(target: ClickHouse) -> None:
    messages = [CODEC.encode_record(make_fact(i)) for i in range(10)]
    first_run = BatchSink(target, "g", batch_rows=1000, batch_seconds=0.5)
    for offset in range(6):
        first_run.add(messages[offset], "facts", 2, offset, now=0.0)
    (batch,) = first_run.take_due(now=1.0)  # closed by time after six messages
    first_run.write(batch)  # ... and the process dies before committing offset 6
    restarted = BatchSink(target, "g", batch_rows=4, batch_seconds=0.5)
    restarted.load_plans("facts")
    for offset in range(10):
        restarted.add(messages[offset], "facts", 2, offset, now=5.0)
    rebuilt = restarted.take_due(now=10.0)
    assert [b.dedup_token for b in rebuilt] == ["facts:2:0-5", "facts:2:6-9"]
    for b in rebuilt:
        restarted.write(b)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 10  # no FINAL: nothing doubled


# -- rows ClickHouse refuses -------------------------------------------------------------------------------

def test_undecodable_messages_are_kept_in_sink_rejects(target: ClickHouse) -> None:
    sink = BatchSink(target, "g", batch_rows=3, batch_seconds=60)
    sink.add(CODEC.encode_record(make_fact(1)), "facts", 0, 10)
    sink.add(b"not avro at all", "facts", 0, 12)
    sink.add(CODEC.encode_record(make_fact(2)), "facts", 0, 13)
    (batch,) = sink.take_due()
    assert batch.dedup_token == "facts:0:10-13"
    result = sink.write(batch)
    assert (result.rows, result.rejected) == (2, 1)
    _, rejects = target.query_rows("SELECT topic, partition, offset, raw_base64, error FROM learning.sink_rejects")
    assert rejects[0][:4] == ("facts", 0, 12, base64.b64encode(b"not avro at all").decode())
    assert "header" in rejects[0][4]
    assert sink.metrics.rejected._value.get() == 1


def test_a_corrupt_message_is_isolated_and_the_rest_inserted(target: ClickHouse) -> None:
    messages = [CODEC.encode_record(make_fact(i)) for i in range(10)]
    messages[4] = messages[4][:10] + b"\xff\xff\xff\xff"  # a known writer, a body that runs out
    messages[6] = messages[6] + b"\x07\x07"  # trailing bytes: ClickHouse reads the record and skips them
    messages[8] = b"garbage"
    sink = BatchSink(target, "g", batch_rows=10, batch_seconds=60)
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 1, 100 + offset)
    (batch,) = sink.take_due()
    assert (sink.write(batch).rows, sink.metrics.rejected._value.get()) == (8, 2)
    assert sink.metrics.isolating._value.get() == 1  # ClickHouse refused the whole container once
    _, rejected = target.query_rows("SELECT offset, raw_base64, error FROM learning.sink_rejects ORDER BY offset")
    assert [row[:2] for row in rejected] == [(104, base64.b64encode(messages[4]).decode()),
                                             (108, base64.b64encode(b"garbage").decode())]
    assert rejected[0][2].startswith("ClickHouse refused it")
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 8
    assert scalar(target, "SELECT countIf(event_id = 'event-6') FROM learning.learning_facts") == 1


def test_a_batch_over_too_many_months_is_split_and_loads_completely(target: ClickHouse) -> None:
    """One envelope whose times fall in more than 100 months made ClickHouse refuse the insert
    ("Too many partitions for single INSERT block") and the loader retried that batch for ever."""
    month_ms = 31 * 86_400_000
    facts = [make_fact(i, event_time_ms=i * month_ms, student_id="poison") for i in range(150)]
    facts += [make_fact(1000 + i) for i in range(50)]  # ordinary facts in the same batch
    sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=60)
    for offset, fact in enumerate(facts):
        sink.add(CODEC.encode_record(fact), "facts", 0, offset)
    (result,) = write_all(sink)
    assert (result.rows, result.rejected) == (200, 0)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 200
    assert scalar(target, "SELECT uniqExact(toYYYYMM(event_time)) FROM learning.learning_facts") > 100


def test_a_retry_of_an_isolated_batch_inserts_nothing_twice(target: ClickHouse) -> None:
    month_ms = 31 * 86_400_000
    messages = [CODEC.encode_record(make_fact(i, event_time_ms=i * month_ms)) for i in range(120)]
    messages[7] = b"garbage"
    for _attempt in range(2):  # the same range twice, as after a crash before the commit
        sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=60)
        sink.load_plans("facts")
        for offset, message in enumerate(messages):
            sink.add(message, "facts", 3, offset)
        (result,) = write_all(sink)
        assert (result.rows, result.rejected) == (119, 1)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 119  # no FINAL
    assert scalar(target, "SELECT count() FROM learning.sink_rejects FINAL") == 1


class RefusingClickHouse:
    """The real client, except that every fact insert is refused with a non-data error for ``refusals`` calls
    (a server condition the error code does not blame on the rows)."""

    def __init__(self, real: ClickHouse, refusals: int, code: int = 999) -> None:
        self._real = real
        self.refusals = refusals
        self.code = code
        self.database = real.database

    def insert_avro(self, table: str, container: bytes, settings: typing.Any = None) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise ClickHouseQueryError(f"Code: {self.code}. DB::Exception: refused", code=self.code)
        self._real.insert_avro(table, container, settings)

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._real, name)


def test_a_refusal_that_is_not_a_data_error_is_retried_with_growing_backoff(target: ClickHouse) -> None:
    flaky = RefusingClickHouse(target, refusals=2)
    sink = BatchSink(typing.cast(ClickHouse, flaky), "g", batch_rows=5, batch_seconds=60,
                         backoff_min_seconds=0.5, backoff_max_seconds=30, isolate_after_failures=5)
    retries = []
    for _attempt in range(3):
        for offset in range(5):
            sink.add(CODEC.encode_record(make_fact(offset)), "facts", 0, offset)
        (batch,) = sink.take_due()
        try:
            assert sink.write(batch).rows == 5
        except SinkBackpressureError as error:
            retries.append((error.partition, error.retry_after))
            sink.drop()
    assert retries == [(0, 0.5), (0, 1.0)]  # honoured by the loader: the partition waits that long
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 5


def test_a_batch_refused_too_often_is_isolated_instead_of_blocking_its_partition(target: ClickHouse) -> None:
    flaky = RefusingClickHouse(target, refusals=3)
    sink = BatchSink(typing.cast(ClickHouse, flaky), "g", batch_rows=4, batch_seconds=60,
                         isolate_after_failures=2)
    outcomes: list[typing.Any] = []
    for _attempt in range(3):
        for offset in range(4):
            sink.add(CODEC.encode_record(make_fact(offset)), "facts", 0, offset)
        (batch,) = sink.take_due()
        try:
            outcomes.append(sink.write(batch))
        except SinkBackpressureError as error:
            outcomes.append(error.retry_after)
            sink.drop()
    # the first refusal waits; at the second the threshold is reached and the next attempt comes at once and
    # isolates: its whole insert is refused once more, then the halves load
    assert outcomes[:2] == [0.5, 0.0] and (outcomes[2].rows, outcomes[2].rejected) == (4, 0)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 4
