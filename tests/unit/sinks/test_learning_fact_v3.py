"""learning_fact v3 (local dates, the hub's event time, typed seed fields, the learner by role) on the
real engine: the catalog, migration 006 on a database of v2 rows, v2 and v3 messages loaded side by side, and the
facts of the new normalizers -- a fact without a learner included -- loaded as they are."""

from __future__ import annotations

import io
import shutil
import typing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import fastavro
import orjson
from fastavro.schema import parse_schema
from seed_payloads import seed_activity_event, seed_hub_event, with_value
from sink_fixtures import SharedEngine

from schemas.avro.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, crc64_fingerprint
from schemas.avro.generate import catalog_versions
from schemas.records import LearningFact, RawEvent, fact_id_for
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations, discover, render
from sinks.tables import FACT_COLUMNS, fact_records
from streams.normalizers import NormalizeOptions, normalize_with

OPTIONS = NormalizeOptions(b"k", keep_raw_email=False, normalizer_version="v3-test", student_key=b"sk")
NEW_FIELDS = {"event_date_days", "tenant_timezone", "date_created_ms", "actor_id", "actor_host", "learner_role",
              "learner_type", "generated_id", "generated_type", "seconds_by_sub_type"}


def raw(source: str, payload: dict[str, typing.Any], tenant: str, zone: str) -> RawEvent:
    return RawEvent(tenant=tenant, client_id="c", source=source, event_id=payload["id"], event_type=payload["type"],
                    profile=payload["profile"], student_id="", sensor="s",
                    send_time_ms=0 if source == "hub" else 1_714_000_000_000, received_time_ms=1_714_000_000_500,
                    envelope_index=0, payload=orjson.dumps(payload), tenant_timezone=zone)


def facts_of_the_new_normalizers() -> list[LearningFact]:
    """A Timeback event at 23:30 in Sao Paulo (02:30 UTC the next day), with a time-spent subType; a hub event;
    a GradeEvent whose grader and attempt are IRIs (no learner)."""
    activity = with_value(seed_activity_event(), "eventTime", "2024-04-24T23:30:00")
    spent = with_value(seed_activity_event(), "id", "urn:uuid:00000000-0000-4000-8000-000000000002")
    spent.update(type="TimeSpentEvent", action="SpentTime", generated={
        "id": "https://app.example/m/1", "type": "TimebackTimeSpentMetricsCollection",
        "items": [{"type": "waste", "value": 2, "subType": "eating"}, {"type": "active", "value": 60}]})
    grade = {"@context": "http://purl.imsglobal.org/ctx/caliper/v1p2", "type": "GradeEvent",
             "id": "urn:uuid:00000000-0000-4000-8000-000000000003", "profile": "GradingProfile", "action": "Graded",
             "actor": "https://example.edu/autograder", "object": "https://example.edu/attempts/1",
             "eventTime": "2024-04-25T01:00:00.000Z"}
    events = [("timeback", activity), ("timeback", spent), ("hub", seed_hub_event()), ("caliper", grade)]
    return [fact for source, payload in events
            for fact in normalize_with(raw(source, payload, "escola-sp", "America/Sao_Paulo"), OPTIONS)]


def load(target: ClickHouse, messages: list[bytes]) -> None:
    sink = BatchSink(target, "g", batch_rows=len(messages), batch_seconds=60)
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 0, offset)
    (batch,) = sink.take_due()
    assert sink.write(batch).rows == len(messages)


def rows_by_event(target: ClickHouse) -> dict[str, dict[str, typing.Any]]:
    _, rows = target.query_rows("SELECT * FROM learning.learning_facts")
    return {row[FACT_COLUMNS.index("event_id")]: dict(zip(FACT_COLUMNS, row, strict=True)) for row in rows}


def utc(moment: datetime) -> str:
    """A DateTime64(3, 'UTC') value as the client returns it, in ISO form (UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat()


def v2_message(fact: LearningFact) -> bytes:
    """The fact as a v2 writer (before v3) put it on the facts topic."""
    parsed = parse_schema(dict(catalog_versions("learning_fact"))[2])
    record = {**fact_records([fact])[0], "send_time_ms": fact.send_time_ms or 0}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return SINGLE_OBJECT_MARKER + crc64_fingerprint(parsed) + body.getvalue()


def test_v3_adds_the_meaning_fields_each_with_a_default_and_makes_send_time_optional() -> None:
    versions = dict(catalog_versions("learning_fact"))
    assert max(versions) >= 3 and LearningFactCodec().version == max(versions)  # v4 added derived_time_ms
    v2, v3 = ({f["name"]: f for f in versions[n]["fields"]} for n in (2, 3))
    assert set(v3) - set(v2) == NEW_FIELDS and set(v2) <= set(v3)
    assert all("default" in v3[name] for name in NEW_FIELDS)
    assert v3["send_time_ms"]["type"] == ["null", "long"] and v2["send_time_ms"]["type"] == "long"
    assert v3["seconds_by_sub_type"] == {"name": "seconds_by_sub_type", "type": {"type": "map", "values": "double"},
                                         "default": {}}


def test_the_new_normalizers_facts_load_with_their_meaning(target: ClickHouse) -> None:
    facts = facts_of_the_new_normalizers()
    codec = LearningFactCodec()
    load(target, [codec.encode_record(fact) for fact in facts])
    rows = rows_by_event(target)
    assert len(rows) == 4
    activity = rows[facts[0].event_id]
    assert (activity["event_date"], activity["tenant_timezone"]) == (date(2024, 4, 24), "America/Sao_Paulo")
    assert utc(activity["event_time"]) == "2024-04-25T02:30:00"
    spent = rows[facts[1].event_id]
    assert spent["seconds_by_sub_type"] == {"waste/eating": 2.0} and spent["seconds_waste"] == 2.0
    assert (spent["generated_id"], spent["generated_type"]) == ("https://app.example/m/1",
                                                                "TimebackTimeSpentMetricsCollection")
    hub = rows[facts[2].event_id]
    assert hub["send_time"] is None and utc(hub["date_created"]) == "2022-07-19T19:40:00"
    assert utc(hub["event_time"]) == "2022-07-19T19:36:00"
    assert (hub["actor_host"], hub["learner_role"], hub["learner_type"]) == (
        "https://edtech.example.com.br", "assignee", "Person")
    nobody = rows[facts[3].event_id]
    assert (nobody["student_id"], nobody["student_key"], nobody["learner_role"]) == ("", "", "none")
    assert (nobody["actor_id"], nobody["event_date"]) == ("https://example.edu/autograder", date(2024, 4, 24))


def test_a_batch_mixing_v2_and_v3_writers_is_loaded_with_each_ones_values(target: ClickHouse) -> None:
    facts = facts_of_the_new_normalizers()
    codec = LearningFactCodec()
    load(target, [v2_message(fact) if index % 2 else codec.encode_record(fact) for index, fact in enumerate(facts)])
    rows = rows_by_event(target)
    for index, fact in enumerate(facts):
        row = rows[fact.event_id]
        if index % 2:  # what a v2 writer knew: no zone (the UTC date), no learner role, send time 0 for the hub
            utc_day = date(1970, 1, 1) + timedelta(days=fact.event_time_ms // 86_400_000)
            assert (row["event_date"], row["tenant_timezone"], row["learner_role"]) == (utc_day, "UTC", "")
            assert row["seconds_by_sub_type"] == {} and row["actor_id"] == ""
        else:
            assert row["event_date"] == date(1970, 1, 1) + timedelta(days=fact.event_date_days or 0)
            assert (row["tenant_timezone"], row["learner_role"]) == ("America/Sao_Paulo", fact.learner_role)


def test_migration_006_on_a_database_of_v2_rows(tmp_path: Path, chdb_engine: SharedEngine) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for migration in discover():
        if migration.version < 6:
            shutil.copy(migration.path, before / migration.path.name)
    engine = connect(chdb_engine.empty_database("learning"), create_database=True)
    try:
        assert apply_migrations(engine, Layout("learning"), before) == [1, 2, 3, 4, 5]
        engine.command(
            "INSERT INTO learning.learning_facts "
            "(fact_id, tenant, source, event_id, student_id, event_time, send_time) "
            f"VALUES ('{fact_id_for('t', 'h')}', 't', 'hub', 'h', 's1', '2024-04-25 02:30:00', 0), "
            f"('{fact_id_for('t', 'c')}', 't', 'caliper', 'c', 's2', '2024-04-24 12:00:00', '2024-04-24 12:00:01')")
        assert apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR) == [m.version for m in discover()][5:]
        for table in ("learning_facts", "current_facts"):
            _, columns = engine.query_rows("SELECT name FROM system.columns WHERE database = 'learning' "
                                           f"AND table = '{table}' ORDER BY position")
            assert tuple(name for (name,) in columns) == FACT_COLUMNS, table
        _, rows = engine.query_rows("SELECT event_id, send_time, event_date, tenant_timezone, learner_role "
                                    "FROM learning.current_facts ORDER BY event_id")
        assert [(e, s is None, d, z, r) for e, s, d, z, r in rows] == [
            ("c", False, date(2024, 4, 24), "UTC", ""),
            ("h", True, date(2024, 4, 25), "UTC", "")]  # the hub's 1970 send time is NULL, as v3 writes it
        assert apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR) == []
    finally:
        engine.close()


def test_the_cluster_layout_alters_the_local_and_the_distributed_table() -> None:
    [migration] = [m for m in discover() if m.version == 6]
    cluster = render(migration.text, Layout("learning", cluster="main"))
    assert [statement.split("\n")[0] for statement in cluster[:4]] == [
        "ALTER TABLE learning.learning_facts_local ON CLUSTER main",
        "ALTER TABLE learning.learning_facts ON CLUSTER main",
        "ALTER TABLE learning.learning_facts_local ON CLUSTER main",
        "ALTER TABLE learning.learning_facts_in ON CLUSTER main"]
    assert cluster[4].startswith("ALTER TABLE learning.learning_facts_loader ON CLUSTER main MODIFY QUERY")
    assert cluster[5].startswith("CREATE OR REPLACE VIEW learning.current_facts ON CLUSTER main AS")
