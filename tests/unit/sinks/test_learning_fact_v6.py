"""learning_fact v6 (caliper_version, the Caliper version of the event) on the real engine: the catalog, migration
012 on a database of v5 rows (they read '1.2': only 1.2 was accepted before), and v5 and v6 messages loaded side by
side, a Canvas (Caliper 1.1) fact among them."""

from __future__ import annotations

import io
import shutil
import typing
from pathlib import Path

import fastavro
import orjson
from fastavro.schema import parse_schema
from sink_fixtures import SharedEngine

from caliper_pipeline.senders.samples import canvas_grade_event, generic_caliper_event
from schemas.avro.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, crc64_fingerprint
from schemas.avro.generate import catalog_versions
from schemas.records import LearningFact, RawEvent, fact_id_for
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations, discover
from sinks.tables import FACT_COLUMNS, fact_records
from streams.normalizers import NormalizeOptions, normalize_with

OPTIONS = NormalizeOptions(b"k", keep_raw_email=False, normalizer_version="v6-test", student_key=b"sk")


def fact_of(payload: dict[str, typing.Any]) -> LearningFact:
    raw = RawEvent(tenant="t", client_id="c", source="caliper", event_id=payload["id"], event_type=payload["type"],
                   profile="", student_id="", sensor="s", send_time_ms=1_714_000_000_000,
                   received_time_ms=1_714_000_000_500, envelope_index=0, payload=orjson.dumps(payload))
    [fact] = normalize_with(raw, OPTIONS)
    return fact


def v5_message(fact: LearningFact) -> bytes:
    """The fact as a v5 writer (before caliper_version) put it on the facts topic."""
    parsed = parse_schema(dict(catalog_versions("learning_fact"))[5])
    record = {key: value for key, value in fact_records([fact])[0].items() if key != "caliper_version"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return SINGLE_OBJECT_MARKER + crc64_fingerprint(parsed) + body.getvalue()


def versions_by_event(target: ClickHouse) -> dict[str, str]:
    _, rows = target.query_rows("SELECT event_id, caliper_version FROM learning.current_facts")
    return dict(rows)


def test_v6_adds_only_caliper_version_with_default_1_2() -> None:
    versions = dict(catalog_versions("learning_fact"))
    assert max(versions) >= 6 and LearningFactCodec().version == max(versions)
    v5, v6 = ({f["name"]: f for f in versions[n]["fields"]} for n in (5, 6))
    assert set(v6) - set(v5) == {"caliper_version"} and set(v5) <= set(v6)
    assert v6["caliper_version"] == {"name": "caliper_version", "type": "string", "default": "1.2"}


def test_v5_and_v6_writers_load_side_by_side(target: ClickHouse) -> None:
    canvas, v1p2, old = (fact_of(canvas_grade_event()), fact_of(generic_caliper_event()),
                         fact_of(generic_caliper_event("student-2")))
    assert (canvas.caliper_version, v1p2.caliper_version) == ("1.1", "1.2")
    codec = LearningFactCodec()
    messages = [codec.encode_record(canvas), codec.encode_record(v1p2), v5_message(old)]
    sink = BatchSink(target, "g", batch_rows=len(messages), batch_seconds=60)
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 0, offset)
    (batch,) = sink.take_due()
    assert sink.write(batch).rows == 3
    assert versions_by_event(target) == {canvas.event_id: "1.1", v1p2.event_id: "1.2", old.event_id: "1.2"}


def test_migration_012_on_a_database_of_v5_rows(tmp_path: Path, chdb_engine: SharedEngine) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for migration in discover():
        if migration.version < 12:
            shutil.copy(migration.path, before / migration.path.name)
    engine = connect(chdb_engine.empty_database("learning"), create_database=True)
    try:
        assert apply_migrations(engine, Layout("learning"), before) == list(range(1, 12))
        engine.command("INSERT INTO learning.learning_facts (fact_id, tenant, source, event_id, event_time) "
                       f"VALUES ('{fact_id_for('t', 'e')}', 't', 'caliper', 'e', '2024-04-24 12:00:00')")
        assert 12 in apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR)
        _, columns = engine.query_rows("SELECT name FROM system.columns WHERE database = 'learning' "
                                       "AND table = 'current_facts' ORDER BY position")
        assert tuple(name for (name,) in columns) == FACT_COLUMNS
        assert versions_by_event(engine) == {"e": "1.2"}
        assert apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR) == []
    finally:
        engine.close()
