"""The sink's ClickHouse tables on the real engine (embedded chDB in a temporary directory)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import typing
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import fastavro
import pytest
from aiohttp.test_utils import TestClient, TestServer
from fastavro.schema import parse_schema
from pydantic import SecretStr

from schemas.codec import LearningFactCodec
from schemas.kafka import KafkaSettings
from schemas.records import LEARNING_FACT_FIELDS, LearningFact, fact_id_for
from sinks.avro_container import WriterGroup, container_of, group_by_writer
from sinks.avro_insert import fact_insert_for
from sinks.batches import FactBatchSink
from sinks.erasure import erase_student, student_id_hash
from sinks.errors import MigrationError, QueryRejectedError
from sinks.fact_rows import FACT_ARROW_SCHEMA, FACT_COLUMNS, FACT_TABLE, column_for, fact_records, facts_to_arrow
from sinks.http import SinkProcess, build_app
from sinks.loader import FactLoader
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations, discover, render
from sinks.query_client import check_read_only
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.targets import EmbeddedClickHouse, ServerClickHouse

DAY_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z


@pytest.fixture(params=["chdb", "server"])
def target(request: pytest.FixtureRequest, tmp_path: Path,
           clickhouse_server: dict[str, typing.Any] | None) -> Iterator[EmbeddedClickHouse]:
    """The real ClickHouse engine: embedded chDB always; a ClickHouse server too where one is available
    (testcontainers with a Docker engine, or CALIPER_TEST_CLICKHOUSE_HOST: its ``learning`` database is dropped
    and recreated for every test, so point it at a test server only)."""
    if request.param == "server":
        if clickhouse_server is None:
            pytest.skip("no ClickHouse server here: no Docker engine and CALIPER_TEST_CLICKHOUSE_HOST unset")
        settings = ClickHouseSettings(host=clickhouse_server["host"], port=clickhouse_server["port"],
                                      username=clickhouse_server["username"],
                                      password=SecretStr(clickhouse_server["password"]), database="learning")
        server = ServerClickHouse(settings)
        server.command("DROP DATABASE IF EXISTS learning SYNC")
        server.command("CREATE DATABASE learning")
        engine = typing.cast(EmbeddedClickHouse, server)  # the tests use the common ClickHouseTarget interface
    else:
        engine = EmbeddedClickHouse(tmp_path / "chdb", database="learning")
    apply_migrations(engine, Layout("learning"))
    yield engine
    engine.close()


def make_fact(number: int, **changes: typing.Any) -> LearningFact:
    tenant = changes.pop("tenant", "school-a")
    event_id = changes.pop("event_id", f"event-{number}")
    fact = LearningFact(
        fact_id=fact_id_for(tenant, event_id), fact_index=0, content_hash=f"hash-{number}", tenant=tenant,
        client_id="client", source="hub", event_id=event_id, event_type="GradeEvent", profile="GradingProfile",
        action="Graded", event_time_ms=DAY_MS + number * 1000, send_time_ms=DAY_MS + number * 1000,
        received_time_ms=DAY_MS + number * 1000 + 5, student_id="student-1", course_id="course-1",
        subject_name="Math")
    return replace(fact, **changes)


def insert(target: EmbeddedClickHouse, facts: list[LearningFact], token: str) -> None:
    target.insert_arrow(FACT_TABLE, facts_to_arrow(fact_records(facts)), token)


def scalar(target: EmbeddedClickHouse, sql: str) -> typing.Any:
    return target.query_rows(sql)[1][0][0]


# -- migrations --------------------------------------------------------------------------------------------

def test_migrations_apply_once_and_are_recorded(target: EmbeddedClickHouse) -> None:
    assert apply_migrations(target, Layout("learning")) == []
    versions = [m.version for m in discover()]
    _, rows = target.query_rows("SELECT version FROM learning.schema_migrations FINAL ORDER BY version")
    assert [r[0] for r in rows] == versions == [1, 2, 3, 4]
    _, tables = target.query_rows("SHOW TABLES FROM learning")
    assert {"learning_facts", "sink_rejects", "sink_batches", "erasures", "student_daily_xp",
            "student_daily_time_on_task", "student_skill_mastery", "fact_conflicts"} <= {t[0] for t in tables}


def test_an_applied_migration_that_changed_is_refused(tmp_path: Path, target: EmbeddedClickHouse) -> None:
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copied)
    assert apply_migrations(target, Layout("learning"), copied) == []
    edited = copied / "003_analytics_views.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(target, Layout("learning"), copied)


def test_fact_table_columns_are_the_learning_fact_fields(target: EmbeddedClickHouse) -> None:
    _, rows = target.query_rows("SELECT name, type FROM system.columns "
                                "WHERE database = 'learning' AND table = 'learning_facts' ORDER BY position")
    assert [name for name, _ in rows] == [column_for(field) for field in LEARNING_FACT_FIELDS]
    hints = typing.get_type_hints(LearningFact)
    for field, (name, column_type) in zip(LEARNING_FACT_FIELDS, rows, strict=True):
        optional = type(None) in typing.get_args(hints[field])
        assert column_type.startswith("Nullable(") == optional, (name, column_type)
        assert ("DateTime64(3, 'UTC')" in column_type) == field.endswith("_ms"), (name, column_type)
    assert FACT_ARROW_SCHEMA.names == [name for name, _ in rows]


def test_cluster_layout_renders_replicated_tables_and_distributed_ones() -> None:
    migration = discover()[0]
    cluster = render(migration.text, Layout("learning", cluster="main"))
    assert len(cluster) == 2
    assert "CREATE TABLE IF NOT EXISTS learning.learning_facts_local ON CLUSTER main" in cluster[0]
    assert "ENGINE = ReplicatedReplacingMergeTree(received_time)" in cluster[0]
    assert "replicated_deduplication_window = 1000" in cluster[0]
    assert cluster[1] == ("CREATE TABLE IF NOT EXISTS learning.learning_facts ON CLUSTER main AS "
                          "learning.learning_facts_local ENGINE = Distributed(main, learning, "
                          "learning_facts_local, cityHash64(tenant, student_id))")
    single = render(migration.text, Layout("learning"))
    assert len(single) == 1 and "Replicated" not in single[0] and "ON CLUSTER" not in single[0]
    assert "non_replicated_deduplication_window = 1000" in single[0]
    for m in discover():
        for statement in render(m.text, Layout("learning", cluster="main")):
            assert "{" not in statement.replace("{shard}", ""), statement


# -- deduplication and views -------------------------------------------------------------------------------

def test_a_retried_block_with_the_same_token_is_dropped(target: EmbeddedClickHouse) -> None:
    facts = [make_fact(i) for i in range(100)]
    insert(target, facts, "facts:0:0-99")
    insert(target, facts, "facts:0:0-99")
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 100
    insert(target, facts, "facts:0:100-199")  # the same facts produced twice: a new range
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 200
    assert scalar(target, "SELECT count() FROM learning.learning_facts FINAL") == 100


def test_views_count_each_fact_once_under_duplicates(target: EmbeddedClickHouse) -> None:
    facts = [
        make_fact(1, xp_earned=10.0, total_questions=5, correct_questions=4, seconds_active=60.0,
                  seconds_inactive=5.0, bncc_code="EF05MA01", score_ratio=0.4, score_given=4.0, attempts=1,
                  proficiency_level="developing"),
        make_fact(2, xp_earned=20.0, total_questions=10, correct_questions=9, seconds_active=120.0,
                  bncc_code="EF05MA01", score_ratio=0.9, score_given=9.0, attempts=2, proficiency_level="proficient"),
        make_fact(3, xp_earned=7.0, course_id="course-2", student_id="student-2", seconds_waste=30.0),
    ]
    insert(target, facts, "a")
    redelivered = [replace(f, received_time_ms=f.received_time_ms + 60_000) for f in facts]
    insert(target, redelivered, "b")
    insert(target, redelivered, "c")
    _, xp = target.query_rows("SELECT student_id, course_id, xp, questions, correct_questions, facts "
                              "FROM learning.student_daily_xp ORDER BY student_id")
    assert xp == [("student-1", "course-1", 30.0, 15.0, 13.0, 2), ("student-2", "course-2", 7.0, 0.0, 0.0, 1)]
    _, time_on_task = target.query_rows("SELECT student_id, active_seconds, total_seconds "
                                        "FROM learning.student_daily_time_on_task ORDER BY student_id")
    assert time_on_task == [("student-1", 180.0, 185.0), ("student-2", 0.0, 30.0)]
    _, mastery = target.query_rows("SELECT student_id, bncc_code, best_score_ratio, scored_attempts, attempts, "
                                   "latest_proficiency FROM learning.student_skill_mastery")
    assert mastery == [("student-1", "EF05MA01", 0.9, 2, 2, "proficient")]
    assert scalar(target, "SELECT count() FROM learning.fact_conflicts") == 0


def test_a_fact_resent_with_other_content_is_kept_and_flagged(target: EmbeddedClickHouse) -> None:
    original = make_fact(1, xp_earned=10.0)
    changed = replace(original, content_hash="hash-other", xp_earned=25.0,
                      received_time_ms=original.received_time_ms + 1)
    insert(target, [original, make_fact(2, xp_earned=1.0)], "a")
    insert(target, [changed], "b")
    assert scalar(target, "SELECT count() FROM learning.learning_facts FINAL") == 3
    _, conflicts = target.query_rows(
        "SELECT event_id, versions, arraySort(content_hashes) FROM learning.fact_conflicts")
    assert conflicts == [("event-1", 2, ["hash-1", "hash-other"])]
    assert scalar(target, "SELECT sum(xp) FROM learning.student_daily_xp") == 26.0  # the latest content, once


# -- rejects and batch ranges ------------------------------------------------------------------------------

def test_undecodable_messages_are_kept_in_sink_rejects(target: EmbeddedClickHouse) -> None:
    codec = LearningFactCodec()
    sink = FactBatchSink(target, "g", batch_rows=3, batch_seconds=60)
    sink.add(codec.encode_record(make_fact(1)), "facts", 0, 10)
    sink.add(b"not avro at all", "facts", 0, 12)
    sink.add(codec.encode_record(make_fact(2)), "facts", 0, 13)
    (batch,) = sink.take_due()
    assert batch.dedup_token == "facts:0:10-13"
    result = sink.write(batch)
    assert (result.rows, result.rejected) == (2, 1)
    _, rejects = target.query_rows("SELECT topic, partition, offset, raw_base64, error FROM learning.sink_rejects")
    assert rejects[0][:4] == ("facts", 0, 12, base64.b64encode(b"not avro at all").decode())
    assert "header" in rejects[0][4]
    assert sink.metrics.rejected._value.get() == 1


def test_a_range_rebuilt_after_a_crash_carries_the_same_token(target: EmbeddedClickHouse) -> None:
    codec = LearningFactCodec()
    messages = [codec.encode_record(make_fact(i)) for i in range(10)]
    first_run = FactBatchSink(target, "g", batch_rows=1000, batch_seconds=0.5)
    for offset in range(6):
        first_run.add(messages[offset], "facts", 2, offset, now=0.0)
    (batch,) = first_run.take_due(now=1.0)  # closed by time after six messages
    first_run.write(batch)  # ... and the process dies before committing offset 6
    restarted = FactBatchSink(target, "g", batch_rows=4, batch_seconds=0.5)
    restarted.load_plans("facts")
    for offset in range(10):
        restarted.add(messages[offset], "facts", 2, offset, now=5.0)
    rebuilt = restarted.take_due(now=10.0)
    assert [b.dedup_token for b in rebuilt] == ["facts:2:0-5", "facts:2:6-9"]
    for b in rebuilt:
        restarted.write(b)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 10  # no FINAL: nothing doubled


# -- ClickHouse decodes the Avro (fast path) ----------------------------------------------------------------

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


def all_rows(target: EmbeddedClickHouse, table: str) -> list[tuple[typing.Any, ...]]:
    return target.query_rows(f"SELECT * FROM learning.{table} ORDER BY fact_id, content_hash")[1]


def test_a_container_of_message_bodies_reads_back_as_the_same_records() -> None:
    codec = LearningFactCodec()
    records = fact_records(varied_facts(50))
    messages = [codec.encode(record) for record in records]
    groups, unreadable = group_by_writer(list(range(50)), messages, codec.writer_schema_of)
    assert unreadable == [] and len(groups) == 1 and groups[0].offsets == list(range(50))
    read = list(fastavro.reader(io.BytesIO(groups[0].container())))
    assert read == records == [codec.decode(m) for m in messages]
    assert container_of(groups[0].schema_json(), groups[0].bodies) == groups[0].container()  # deterministic


def test_messages_are_grouped_by_writer_and_bad_headers_set_apart() -> None:
    codec = LearningFactCodec()
    good = codec.encode_record(make_fact(1))
    groups, unreadable = group_by_writer([5, 6, 7, 8], [good, b"\xc3\x01" + b"\x00" * 8 + b"x", None, good],
                                         codec.writer_schema_of)
    assert [g.offsets for g in groups] == [[5, 8]] and groups[0].bodies == [good[10:]] * 2
    assert [(offset, raw) for offset, raw, _ in unreadable] == [(6, b"\xc3\x01" + b"\x00" * 8 + b"x"), (7, b"")]
    assert "unknown learning_fact writer fingerprint" in unreadable[0][2]


def test_clickhouse_decoding_gives_the_rows_of_the_python_path(
        target: EmbeddedClickHouse, monkeypatch: pytest.MonkeyPatch) -> None:
    codec = LearningFactCodec()
    facts = varied_facts(200)
    sink = FactBatchSink(target, "g", batch_rows=200, batch_seconds=60)
    for offset, fact in enumerate(facts):
        sink.add(codec.encode_record(fact), "facts", 0, offset)
    (batch,) = sink.take_due()
    arrow_inserts: list[str] = []
    real_insert_arrow = target.insert_arrow
    monkeypatch.setattr(target, "insert_arrow", lambda table, block, token: (
        arrow_inserts.append(table), real_insert_arrow(table, block, token)))
    assert sink.write(batch).rows == 200
    assert arrow_inserts == [] and sink.metrics.python_decoded._value.get() == 0  # ClickHouse decoded them
    target.command("CREATE TABLE learning.facts_by_arrow AS learning.learning_facts")
    records, rejects = sink.decode(batch)
    real_insert_arrow("facts_by_arrow", facts_to_arrow(records), "arrow")
    by_clickhouse, by_python = all_rows(target, "learning_facts"), all_rows(target, "facts_by_arrow")
    assert len(by_clickhouse) == 200 and rejects == []
    for fast, slow in zip(by_clickhouse, by_python, strict=True):
        assert fast == slow  # every column
    finished = FACT_COLUMNS.index("finished")
    assert {row[finished] for row in by_clickhouse} == {None, True, False}  # null and both values seen


def test_an_older_writer_gets_the_readers_defaults_as_in_python(target: EmbeddedClickHouse) -> None:
    codec = LearningFactCodec()
    dropped = {"extensions_json", "started_time_ms", "score_ratio", "ed_app"}
    older = {**codec.reader_schema, "fields": [f for f in codec.reader_schema["fields"] if f["name"] not in dropped]}
    older_parsed = parse_schema({k: v for k, v in older.items() if not k.startswith("__")})
    records = fact_records(varied_facts(20))
    bodies = []
    for record in records:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, older_parsed, record)
        bodies.append(body.getvalue())
    plan = fact_insert_for(older_parsed, codec.reader_schema, "learning")
    assert "'{}'" in plan.expressions and "NULL" in plan.expressions and "`extensions_json`" not in plan.structure
    target.insert_avro(plan, WriterGroup(older_parsed, bodies=bodies).container(), "older")
    resolved = [fastavro.schemaless_reader(io.BytesIO(b), older_parsed, codec.reader_schema) for b in bodies]
    target.command("CREATE TABLE learning.facts_by_arrow AS learning.learning_facts")
    target.insert_arrow("facts_by_arrow", facts_to_arrow(resolved), "arrow")
    assert all_rows(target, "learning_facts") == all_rows(target, "facts_by_arrow")
    assert scalar(target, "SELECT countIf(extensions_json = '{}' AND started_time IS NULL) "
                          "FROM learning.learning_facts") == 20


def test_a_corrupt_message_is_rejected_and_the_rest_inserted(target: EmbeddedClickHouse) -> None:
    codec = LearningFactCodec()
    messages = [codec.encode_record(make_fact(i)) for i in range(10)]
    messages[4] = messages[4][:10] + b"\xff\xff\xff\xff"  # a known writer, a body that runs out
    messages[6] = messages[6] + b"\x07\x07"  # trailing bytes: both decoders read the record and skip them
    messages[8] = b"garbage"
    sink = FactBatchSink(target, "g", batch_rows=10, batch_seconds=60)
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 1, 100 + offset)
    (batch,) = sink.take_due()
    assert (sink.write(batch).rows, sink.metrics.rejected._value.get()) == (8, 2)
    assert sink.metrics.python_decoded._value.get() == 1  # ClickHouse refused the container
    _, rejected = target.query_rows("SELECT offset, raw_base64 FROM learning.sink_rejects ORDER BY offset")
    assert rejected == [(104, base64.b64encode(messages[4]).decode()), (108, base64.b64encode(b"garbage").decode())]
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 8
    assert scalar(target, "SELECT countIf(event_id = 'event-6') FROM learning.learning_facts") == 1


@pytest.mark.parametrize("paths", [("clickhouse", "clickhouse"), ("clickhouse", "python"),
                                   ("python", "clickhouse")])
def test_a_retried_range_inserts_nothing_new_whichever_path(target: EmbeddedClickHouse, paths: tuple[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    codec = LearningFactCodec()
    messages = [codec.encode_record(make_fact(i)) for i in range(30)]
    for attempt, path in enumerate(paths):
        sink = FactBatchSink(target, "g", batch_rows=30, batch_seconds=60)
        sink.load_plans("facts")
        if path == "python":  # as if ClickHouse had refused the container
            monkeypatch.setattr(sink, "_avro_insert_for", lambda group: None)
        for offset, message in enumerate(messages):
            sink.add(message, "facts", 3, offset)
        (batch,) = sink.take_due()
        assert batch.dedup_token == "facts:3:0-29" and sink.write(batch).rows == 30
        assert scalar(target, "SELECT count() FROM learning.learning_facts") == 30, attempt  # no FINAL
        monkeypatch.undo()
    assert os.listdir(target.staging_path) == []  # staged containers are deleted


def test_the_server_statement_reads_the_body_as_avro_with_the_token() -> None:
    codec = LearningFactCodec()
    plan = fact_insert_for(codec.reader_schema, codec.reader_schema, "learning")
    statement = plan.input_statement()
    assert statement.startswith("INSERT INTO learning.learning_facts (`fact_id`, `fact_index`, ")
    assert ", fromUnixTimestamp64Milli(`event_time_ms`, 'UTC'), " in statement
    assert ", fromUnixTimestamp64Milli(`started_time_ms`, 'UTC'), " in statement
    assert statement.endswith("FROM input('`fact_id` String, `fact_index` Int64, " + plan.structure.split(
        "Int64, ", 1)[1] + "') FORMAT Avro")
    assert "`started_time_ms` Nullable(Int64)" in plan.structure and "`finished` Nullable(Bool)" in plan.structure
    calls: list[tuple[str, bytes, dict[str, str]]] = []

    class RecordingClient:
        def command(self, sql: str, *, data: bytes, settings: dict[str, str]) -> None:
            calls.append((sql, data, settings))

    server = ServerClickHouse.__new__(ServerClickHouse)
    server.database, server._client = "learning", RecordingClient()  # type: ignore[assignment]
    server.insert_avro(plan, b"Obj\x01...", "facts:0:0-9")
    assert calls == [(statement, b"Obj\x01...", {"insert_deduplication_token": "facts:0:0-9"})]


def test_the_server_statement_parses(target: EmbeddedClickHouse) -> None:
    codec = LearningFactCodec()
    statement = fact_insert_for(codec.reader_schema, codec.reader_schema, "learning").input_statement()
    ast = target.query_formatted("EXPLAIN AST " + statement.removesuffix(" FORMAT Avro"), "TSV", read_only=False)
    assert b"Function input" in ast and b"Function fromUnixTimestamp64Milli" in ast


# -- erasure -----------------------------------------------------------------------------------------------

def test_erasure_deletes_the_students_rows_and_records_a_hash(target: EmbeddedClickHouse) -> None:
    insert(target, [make_fact(1), make_fact(2), make_fact(3, student_id="student-2")], "a")
    insert(target, [make_fact(1)], "b")
    deleted = erase_student(target, "school-a", "student-1", "dpo@school-a", hash_key=b"k")
    assert deleted == 3
    _, left = target.query_rows("SELECT student_id FROM learning.learning_facts")
    assert left == [("student-2",)]
    _, erasures = target.query_rows("SELECT tenant, student_id_hash, requested_by, rows_deleted FROM learning.erasures")
    assert erasures == [("school-a", student_id_hash("school-a", "student-1", b"k"), "dpo@school-a", 3)]
    assert "student-1" not in repr(erasures)


# -- the SQL endpoint --------------------------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "INSERT INTO learning.erasures SELECT * FROM learning.erasures", "DROP TABLE learning.learning_facts",
    "SELECT 1; DROP TABLE learning.learning_facts", "ALTER TABLE learning.learning_facts DELETE WHERE 1",
    "SELECT 1 INTO OUTFILE '/tmp/x'", "", "-- just a comment",
])
def test_only_read_statements_pass_the_check(statement: str) -> None:
    with pytest.raises(QueryRejectedError):
        check_read_only(statement)


def test_read_statements_pass_the_check() -> None:
    for statement in ["SELECT 1;", "with a as (select 1) select * from a", "SHOW TABLES", "DESCRIBE t",
                      "EXPLAIN SELECT 1", "/* why */ SELECT 2"]:
        assert check_read_only(statement)


async def test_http_endpoints_serve_sql_readiness_metrics_and_erasure(target: EmbeddedClickHouse) -> None:
    insert(target, [make_fact(1, xp_earned=3.0), make_fact(2, student_id="student-2")], "a")
    settings = SinkSettings(admin_token="secret")  # type: ignore[arg-type]
    loader = FactLoader(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), target)
    app = build_app(SinkProcess(settings, ClickHouseSettings(), target, loader))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        not_ready = await client.get("/readyz")
        assert not_ready.status == 503 and (await not_ready.json())["clickhouse"] is True
        answer = await client.post("/sql", params={"format": "JSON"},
                                   data="SELECT student_id, xp FROM learning.student_daily_xp ORDER BY student_id")
        assert answer.status == 200
        assert [row["xp"] for row in (await answer.json())["data"]] == [3.0, 0.0]
        csv = await client.post("/sql", params={"format": "CSV"}, data="SELECT 1 AS one")
        assert (await csv.text()).splitlines() == ['"one"', "1"]
        assert (await client.post("/sql", data="DROP TABLE learning.learning_facts")).status == 400
        assert (await client.post("/sql", data="SELECT * FROM learning.nope")).status == 400
        assert "sink_batches_total" in await (await client.get("/metrics")).text()
        body = {"tenant": "school-a", "student_id": "student-2", "requested_by": "dpo"}
        assert (await client.post("/admin/erase", json=body)).status == 401
        erased = await client.post("/admin/erase", json=body, headers={"Authorization": "Bearer secret"})
        assert (await erased.json()) == {"rows_deleted": 1}
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 1
