"""learning_fact v2 (``student_key``) on the real engine: the migration, and v1 and v2 messages loaded by both
of the sink (ClickHouse decodes each writer's container)."""

from __future__ import annotations

import io
import shutil
import typing
from dataclasses import replace
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import parse_schema
from sink_fixtures import SharedEngine

from schemas.avro.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, crc64_fingerprint
from schemas.avro.generate import catalog_versions
from schemas.privacy import student_key_for
from schemas.records import LearningFact, fact_id_for
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations, discover, render
from sinks.tables import FACT_COLUMNS, fact_records

DAY_MS = 1_700_006_400_000
KEY = b"student-key"


def fact(number: int, tenant: str = "school-a") -> LearningFact:
    student = f"student-{number % 3}"
    return LearningFact(
        fact_id=fact_id_for(tenant, f"event-{number}"), fact_index=0, content_hash=f"hash-{number}", tenant=tenant,
        client_id="client", source="hub", event_id=f"event-{number}", event_type="GradeEvent",
        profile="GradingProfile", action="Graded", event_time_ms=DAY_MS + number, send_time_ms=DAY_MS + number,
        received_time_ms=DAY_MS + number + 5, student_id=student, student_email_hash=f"{number:064x}",
        student_key=student_key_for(tenant, student, KEY), xp_earned=number * 0.5)


def v1_message(record: LearningFact) -> bytes:
    """The fact as a v1 writer (before student_key) put it on the facts topic."""
    parsed = parse_schema(dict(catalog_versions("learning_fact"))[1])
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, fact_records([record])[0])
    return SINGLE_OBJECT_MARKER + crc64_fingerprint(parsed) + body.getvalue()


def load(target: ClickHouse, messages: list[bytes]) -> BatchSink:
    sink = BatchSink(target, "g", batch_rows=len(messages), batch_seconds=60)
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 0, offset)
    (batch,) = sink.take_due()
    assert sink.write(batch).rows == len(messages)
    return sink


def loaded(target: ClickHouse) -> dict[str, tuple[typing.Any, ...]]:
    _, rows = target.query_rows("SELECT * FROM learning.learning_facts")
    by_event = {row[FACT_COLUMNS.index("event_id")]: row for row in rows}
    assert len(by_event) == len(rows)
    return by_event


def test_v2_adds_only_the_student_key_to_v1() -> None:
    versions = dict(catalog_versions("learning_fact"))
    assert max(versions) >= 2 and LearningFactCodec().version == max(versions)
    v1, v2 = ({f["name"]: f for f in versions[n]["fields"]} for n in (1, 2))
    assert set(v2) - set(v1) == {"student_key"} and v2["student_key"] == {
        "name": "student_key", "type": "string", "default": ""}
    names = [f["name"] for f in versions[2]["fields"]]
    assert names[names.index("student_email_hash") + 1] == "student_key"


@pytest.mark.parametrize("writer", ["v1", "v2"])
def test_one_writers_batch_is_decoded_by_clickhouse(target: ClickHouse, writer: str) -> None:
    facts = [fact(i) for i in range(12)]
    codec = LearningFactCodec()
    messages = [v1_message(f) if writer == "v1" else codec.encode_record(f) for f in facts]
    sink = load(target, messages)
    assert sink.metrics.isolating._value.get() == 0 and sink.metrics.rejected._value.get() == 0
    rows = loaded(target)
    for f in facts:
        row = rows[f.event_id]
        expected = "" if writer == "v1" else student_key_for("school-a", f.student_id, KEY)
        assert row[FACT_COLUMNS.index("student_key")] == expected
        assert row[FACT_COLUMNS.index("student_email_hash")] == f.student_email_hash
        assert row[FACT_COLUMNS.index("xp_earned")] == f.xp_earned


def test_a_batch_mixing_v1_and_v2_writers_is_loaded_with_each_ones_values(target: ClickHouse) -> None:
    codec = LearningFactCodec()
    facts = [fact(i) for i in range(10)]
    messages = [v1_message(f) if i % 2 else codec.encode_record(f) for i, f in enumerate(facts)]
    load(target, messages)  # two writers in one range: one container (and insert) per writer
    rows = loaded(target)
    for i, f in enumerate(facts):
        assert rows[f.event_id][FACT_COLUMNS.index("student_key")] == ("" if i % 2 else f.student_key)
        assert rows[f.event_id][FACT_COLUMNS.index("student_id")] == f.student_id
    v1_read = codec.decode_record(v1_message(facts[1]))
    assert v1_read == replace(facts[1], student_key="")  # the Python decoder gives the reader's default too


def test_the_migration_adds_the_column_in_place_on_a_database_of_v1_rows(tmp_path: Path,
                                                                         chdb_engine: SharedEngine) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for migration in discover():
        if migration.version < 4:
            shutil.copy(migration.path, before / migration.path.name)
    engine = connect(chdb_engine.empty_database("learning"), create_database=True)
    try:
        assert apply_migrations(engine, Layout("learning"), before) == [1, 2, 3]
        engine.command("INSERT INTO learning.learning_facts (fact_id, tenant, event_id, student_id, event_time) "
                       "VALUES ('f1', 't', 'e1', 's1', now64(3))")
        assert apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR) == [m.version for m in discover()][3:]
        _, columns = engine.query_rows("SELECT name FROM system.columns WHERE database = 'learning' "
                                       "AND table = 'learning_facts' ORDER BY position")
        assert tuple(name for (name,) in columns) == FACT_COLUMNS
        _, view = engine.query_rows("SELECT name FROM system.columns WHERE database = 'learning' "
                                    "AND table = 'current_facts' ORDER BY position")
        assert tuple(name for (name,) in view) == FACT_COLUMNS  # the view was recreated with the column
        _, rows = engine.query_rows("SELECT student_id, student_key FROM learning.current_facts")
        assert rows == [("s1", "")]
        assert apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR) == []
    finally:
        engine.close()


def test_the_cluster_layout_alters_the_local_and_the_distributed_table() -> None:
    [migration] = [m for m in discover() if m.version == 4]
    cluster = render(migration.text, Layout("learning", cluster="main"))
    assert [statement.split("\n")[0] for statement in cluster[:2]] == [
        "ALTER TABLE learning.learning_facts_local ON CLUSTER main",
        "ALTER TABLE learning.learning_facts ON CLUSTER main"]
    assert all("ADD COLUMN IF NOT EXISTS student_key String AFTER student_email_hash" in s for s in cluster[:2])
    assert cluster[2].startswith("CREATE OR REPLACE VIEW learning.current_facts ON CLUSTER main AS")
