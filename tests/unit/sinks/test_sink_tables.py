"""The sink's ClickHouse tables on the real engine (embedded chDB in a temporary directory; a server too where one
is available), through the one clickhouse-connect client the sink uses."""

from __future__ import annotations

import dataclasses
import re
import shutil
import typing
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sink_fixtures import DAY_MS, SharedEngine, insert, make_fact, open_engine, scalar

from schemas.avro.codec import LearningFactCodec
from schemas.privacy import student_key_for
from schemas.records import LEARNING_FACT_FIELDS, LearningFact
from sinks.clickhouse import ClickHouse
from sinks.erasure import ErasureKeyMissingError, erase_student
from sinks.errors import MigrationError
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations, discover, render
from sinks.tables import FACT_ARROW_SCHEMA, FACT_INPUT_TABLE, column_for

KEY = b"student-key-secret"


@pytest.fixture(params=["chdb", "server"])
def target(request: pytest.FixtureRequest, tmp_path: Path,
           clickhouse_server: dict[str, typing.Any] | None, chdb_engine: SharedEngine) -> Iterator[ClickHouse]:
    yield from open_engine(request, tmp_path, clickhouse_server)


# -- migrations --------------------------------------------------------------------------------------------

def test_migrations_apply_once_and_are_recorded(target: ClickHouse) -> None:
    assert apply_migrations(target, Layout("learning")) == []
    versions = [m.version for m in discover()]
    _, rows = target.query_rows("SELECT version FROM learning.schema_migrations FINAL ORDER BY version")
    assert [r[0] for r in rows] == versions == list(range(1, len(versions) + 1))
    _, tables = target.query_rows("SHOW TABLES FROM learning")
    assert {"learning_facts", "learning_facts_in", "learning_facts_loader", "sink_rejects", "sink_batches",
            "erasures", "student_daily_xp", "student_daily_time_on_task", "student_skill_mastery",
            "fact_conflicts", "raw_events", "raw_events_in", "raw_events_loader"} <= {t[0] for t in tables}


def test_an_applied_migration_that_changed_is_refused(tmp_path: Path, target: ClickHouse) -> None:
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copied)
    assert apply_migrations(target, Layout("learning"), copied) == []
    edited = copied / "003_analytics_views.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(target, Layout("learning"), copied)


def test_fact_table_columns_are_the_learning_fact_fields(target: ClickHouse) -> None:
    _, rows = target.query_rows("SELECT name, type FROM system.columns "
                                "WHERE database = 'learning' AND table = 'learning_facts' ORDER BY position")
    assert [name for name, _ in rows] == [column_for(field) for field in LEARNING_FACT_FIELDS]
    hints = typing.get_type_hints(LearningFact)
    for field, (name, column_type) in zip(LEARNING_FACT_FIELDS, rows, strict=True):
        optional = type(None) in typing.get_args(hints[field])
        assert column_type.startswith("Nullable(") == optional, (name, column_type)
        assert ("DateTime64(3, 'UTC')" in column_type) == field.endswith("_ms"), (name, column_type)
    assert [column_for(name) for name in FACT_ARROW_SCHEMA.names] == [name for name, _ in rows]


def test_the_entry_table_takes_every_field_with_the_avro_readers_default(target: ClickHouse) -> None:
    """An older writer's container lacks the fields added since: ClickHouse fills them with the entry table's
    DEFAULT, which must be the Avro reader schema's default (what a Python decoder would give)."""
    _, rows = target.query_rows(
        "SELECT name, default_kind, default_expression FROM system.columns "
        "WHERE database = 'learning' AND table = {table:String} ORDER BY position", {"table": FACT_INPUT_TABLE})
    assert [name for name, _, _ in rows] == list(LEARNING_FACT_FIELDS)
    reader_defaults = {f["name"]: f.get("default", dataclasses.MISSING)
                       for f in LearningFactCodec().reader_schema["fields"]}
    for name, kind, expression in rows:
        default = reader_defaults[name]
        if default is dataclasses.MISSING or default is None:
            assert kind == "", (name, kind, expression)  # required, or NULL (the type's own default)
        else:
            assert kind == "DEFAULT", name
            assert scalar(target, f"SELECT {expression}") == default, name


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
    entry = render(next(m for m in discover() if m.name == "fact_input").text, Layout("learning", cluster="main"))
    assert any("TO learning.learning_facts AS" in s and "ON CLUSTER main" in s for s in entry)  # the Distributed
    for m in discover():
        for statement in render(m.text, Layout("learning", cluster="main")):
            assert not re.search(r"\{(?!shard\})\w+\}", statement), statement  # every placeholder filled


# -- deduplication and views -------------------------------------------------------------------------------

def test_a_retried_block_with_the_same_token_is_dropped(target: ClickHouse) -> None:
    facts = [make_fact(i) for i in range(100)]
    insert(target, facts, "facts:0:0-99")
    insert(target, facts, "facts:0:0-99")
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 100
    insert(target, facts, "facts:0:100-199")  # the same facts produced twice: a new range
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 200
    assert scalar(target, "SELECT count() FROM learning.learning_facts FINAL") == 100


def test_views_count_each_fact_once_under_duplicates(target: ClickHouse) -> None:
    facts = [
        make_fact(1, event_type="ActivityEvent", xp_earned=10.0, total_questions=5, correct_questions=4,
                  seconds_active=60.0, seconds_inactive=5.0, bncc_code="EF05MA01", score_ratio=0.4, score_given=4.0,
                  attempts=1, proficiency_level="developing"),
        make_fact(2, event_type="ActivityEvent", xp_earned=20.0, total_questions=10, correct_questions=9,
                  seconds_active=120.0, bncc_code="EF05MA01", score_ratio=0.9, score_given=9.0, attempts=2,
                  proficiency_level="proficient"),
        make_fact(3, event_type="ActivityEvent", xp_earned=7.0, course_id="course-2", student_id="student-2",
                  seconds_waste=30.0),
    ]
    insert(target, facts, "a")
    redelivered = [replace(f, received_time_ms=f.received_time_ms + 60_000) for f in facts]
    insert(target, redelivered, "b")
    insert(target, redelivered, "c")
    _, xp = target.query_rows("SELECT student_id, course_id, xp, questions, correct_questions, activities "
                              "FROM learning.student_daily_xp ORDER BY student_id")
    assert xp == [("student-1", "course-1", 30.0, 15.0, 13.0, 2), ("student-2", "course-2", 7.0, 0.0, 0.0, 1)]
    _, time_on_task = target.query_rows("SELECT student_id, active_seconds, total_seconds "
                                        "FROM learning.student_daily_time_on_task ORDER BY student_id")
    assert time_on_task == [("student-1", 180.0, 185.0), ("student-2", 0.0, 30.0)]
    _, mastery = target.query_rows("SELECT student_id, bncc_code, best_score_ratio, scored_attempts, attempts, "
                                   "latest_proficiency FROM learning.student_skill_mastery")
    assert mastery == [("student-1", "EF05MA01", 0.9, 2, 2, "proficient")]
    assert scalar(target, "SELECT count() FROM learning.fact_conflicts") == 0


def test_a_fact_resent_with_other_content_is_kept_and_flagged(target: ClickHouse) -> None:
    original = make_fact(1, event_type="ActivityEvent", xp_earned=10.0)
    changed = replace(original, content_hash="hash-other", xp_earned=25.0,
                      received_time_ms=original.received_time_ms + 1)
    insert(target, [original, make_fact(2, event_type="ActivityEvent", xp_earned=1.0)], "a")
    insert(target, [changed], "b")
    assert scalar(target, "SELECT count() FROM learning.learning_facts FINAL") == 3
    _, conflicts = target.query_rows(
        "SELECT event_id, versions, arraySort(content_hashes) FROM learning.fact_conflicts")
    assert conflicts == [("event-1", 2, ["hash-1", "hash-other"])]
    assert scalar(target, "SELECT sum(xp) FROM learning.student_daily_xp") == 26.0  # the latest content, once


# -- erasure -----------------------------------------------------------------------------------------------

def keyed(fact: LearningFact) -> LearningFact:
    """The fact as the streams worker writes it: with the student's pseudonymous key."""
    return replace(fact, student_key=student_key_for(fact.tenant, fact.student_id, KEY))


def test_erasure_deletes_the_students_rows_and_records_only_a_key(target: ClickHouse) -> None:
    insert(target, [keyed(make_fact(1)), keyed(make_fact(2)), keyed(make_fact(3, student_id="student-2"))], "a")
    insert(target, [keyed(make_fact(1))], "b")
    deleted = erase_student(target, Layout("learning"), "school-a", "student-1", "dpo@school-a", key=KEY)
    assert deleted == 3
    _, left = target.query_rows("SELECT student_id FROM learning.learning_facts")
    assert left == [("student-2",)]
    _, erasures = target.query_rows("SELECT tenant, student_id_hash, requested_by, rows_deleted FROM learning.erasures")
    assert erasures == [("school-a", student_key_for("school-a", "student-1", KEY), "dpo@school-a", 3)]
    assert "student-1" not in repr(erasures)


def test_facts_of_an_erased_student_that_arrive_later_are_dropped_at_load(target: ClickHouse) -> None:
    """Facts still in flight were loaded after the erasure reported success."""
    insert(target, [keyed(make_fact(1))], "a")
    assert erase_student(target, Layout("learning"), "school-a", "student-1", "dpo", key=KEY) == 1
    late = [keyed(make_fact(n)) for n in range(2, 22)]  # in flight during the erasure: 20 facts
    insert(target, [*late, keyed(make_fact(30, student_id="student-2"))], "late")
    assert scalar(target, "SELECT count() FROM learning.learning_facts WHERE student_id = 'student-1'") == 0
    assert scalar(target, "SELECT count() FROM learning.learning_facts WHERE student_id = 'student-2'") == 1


def test_no_clear_student_id_in_the_mutation_log_or_files(target: ClickHouse) -> None:
    """The student id stayed in clear in system.mutations and the engine's mutation files."""
    secret_id = "student-Zq9-clear-id"
    insert(target, [keyed(make_fact(1, student_id=secret_id)), keyed(make_fact(2, student_id="other"))], "a")
    erase_student(target, Layout("learning"), "school-a", secret_id, "dpo", key=KEY)
    _, mutations = target.query_rows("SELECT command FROM system.mutations WHERE database = 'learning'")
    assert mutations and not any(secret_id in str(row) for row in mutations)
    if target.embedded:
        (paths,) = target.query_rows("SELECT data_paths FROM system.tables "
                                     "WHERE database = 'learning' AND name = 'learning_facts'")[1][0]
        mutation_files = [found for path in paths for found in Path(path).rglob("mutation_*.txt")]
        assert mutation_files and not any(secret_id.encode() in f.read_bytes() for f in mutation_files)


def test_erasure_finds_rows_written_before_facts_carried_a_key(target: ClickHouse) -> None:
    insert(target, [make_fact(1), make_fact(2, student_id="student-2")], "legacy")  # student_key = ''
    assert erase_student(target, Layout("learning"), "school-a", "student-1", "dpo", key=KEY) == 1
    assert scalar(target, "SELECT groupArray(student_id) FROM learning.learning_facts") == ["student-2"]


def test_erasure_needs_the_key(target: ClickHouse) -> None:
    with pytest.raises(ErasureKeyMissingError):
        erase_student(target, Layout("learning"), "school-a", "student-1", "dpo", key=b"")


# -- the current version of an event -----------------------------------------------------------------------

def test_the_version_sent_last_is_current_and_a_late_retry_does_not_replace_it(target: ClickHouse) -> None:
    """V1 (xp 10, sent 06:00), v2 (xp 20, sent 06:05), then v1 again byte for byte (a late
    retry): current_facts showed xp 10, because the latest RECEIVED copy won."""
    six = DAY_MS + 6 * 3_600_000
    v1 = make_fact(1, event_type="ActivityEvent", xp_earned=10.0, content_hash="v1", send_time_ms=six,
                   received_time_ms=six + 1_000)
    v2 = replace(v1, xp_earned=20.0, content_hash="v2", send_time_ms=six + 300_000, received_time_ms=six + 301_000)
    late_v1 = replace(v1, received_time_ms=six + 3_600_000)
    for number, fact in enumerate((v1, v2, late_v1)):
        insert(target, [fact], f"delivery-{number}")
    assert scalar(target, "SELECT groupArray(xp_earned) FROM learning.current_facts") == [20.0]
    assert scalar(target, "SELECT sum(xp) FROM learning.student_daily_xp") == 20.0


def test_without_a_send_time_the_version_received_last_is_current(target: ClickHouse) -> None:
    hub_v1 = make_fact(1, source="hub", score_given=4.0, content_hash="v1", send_time_ms=None)
    hub_v2 = replace(hub_v1, score_given=9.0, content_hash="v2", received_time_ms=hub_v1.received_time_ms + 1)
    insert(target, [hub_v2], "a")
    insert(target, [hub_v1], "b")  # arrives after, but was received (by the gateway) before
    assert scalar(target, "SELECT groupArray(score_given) FROM learning.current_facts") == [9.0]
