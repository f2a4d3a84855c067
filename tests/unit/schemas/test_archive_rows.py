"""The raw archive's row made by the streams worker (``schemas.archive_rows``, Avro blocks on the archive topic)
gives in ``raw_events`` exactly the row the sink built before from the raw topics (JSON rows), column by column, for
every kind of raw event; and an archive written before the change (migration 015 not yet applied) keeps working:
its rows are read back, erased, and sit beside the worker's (the real engine, embedded chDB)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from published import CODEC, archived_by_worker
from test_raw_archive import (
    ARCHIVE_BLOCKS,
    CALLER,
    GRADE_BY_APP,
    KEY,
    RECEIVED_MS,
    ROWS,
    SENSOR_STUDENT,
    activity,
    every_kind_of_raw_event,
    raw_events_of,
)

from schemas.errors import UnknownTimeZoneError
from schemas.event_identity import (
    canonical_document,
    canonical_id,
    document_content_hash,
    event_time_of,
    learner_candidates,
    reference_id,
)
from schemas.privacy import student_key_for
from schemas.records import RawEvent
from schemas.tenants import DEFAULT_TIMEZONE, zone_for
from sinks.archive import raw_archive_target, read_archived
from sinks.clickhouse import ClickHouse
from sinks.erasure import erase_student
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations
from sinks.tables import RAW_ARCHIVE_INPUT_TABLE, RAW_ARCHIVE_TABLE
from sinks.targets import AvroTarget, JsonRowsTarget
from sinks.writer import INSERT_SETTINGS

# The sink's row of a raw event before the worker built it (sinks/archive.py at the commit this change started
# from, verbatim but for its key function written as a def): the reference the worker's row must equal.
_EARLIEST_MS, _LATEST_MS = -2_208_988_800_000, 10_413_791_999_999


def old_sink_archive_row(raw: RawEvent, student_key: bytes) -> dict[str, Any]:
    def key_of(tenant: str, person: str) -> str:
        return student_key_for(tenant, person, student_key)

    document = canonical_document(raw.payload)
    try:
        zone = zone_for(raw.tenant_timezone or DEFAULT_TIMEZONE)
    except UnknownTimeZoneError:
        zone = zone_for(DEFAULT_TIMEZONE)
    event_time = event_time_of(raw.source, document, zone)
    if event_time is None or not _EARLIEST_MS <= event_time <= _LATEST_MS:
        event_time = raw.received_time_ms
    people = learner_candidates(document)
    gateway_student = canonical_id(raw.student_id)
    if gateway_student and gateway_student not in people:
        people.append(gateway_student)
    return {
        "tenant": raw.tenant, "client_id": raw.client_id, "source": raw.source,
        "event_id": canonical_id(raw.event_id), "content_hash": document_content_hash(document),
        "event_type": raw.event_type, "profile": raw.profile, "student_id": raw.student_id,
        "student_keys": [key_of(raw.tenant, person) for person in people],
        "actor_id": canonical_id(reference_id(document.get("actor") if isinstance(document, dict) else None)),
        "sensor": raw.sensor, "event_time_ms": event_time, "send_time_ms": raw.send_time_ms or None,
        "received_time_ms": raw.received_time_ms, "envelope_index": raw.envelope_index,
        "tenant_timezone": raw.tenant_timezone, "payload": raw.payload.decode(),
    }


def old_sink_target() -> JsonRowsTarget:
    """The sink's raw-topic target before the change: RawEvent -> JSONEachRow row of ``old_sink_archive_row``."""
    return JsonRowsTarget(RAW_ARCHIVE_INPUT_TABLE, lambda message: old_sink_archive_row(
        CODEC.decode_record(message.value), KEY), destination=RAW_ARCHIVE_TABLE)


@contextlib.contextmanager
def in_database(target: ClickHouse, database: str) -> Iterator[None]:
    """The client's inserts go to ``database`` meanwhile (they name their table in the client's database)."""
    own, target.database = target.database, database
    try:
        yield
    finally:
        target.database = own


def insert_old(target: ClickHouse, database: str, raws: list[RawEvent], token: str) -> None:
    keys = [("caliper.raw.caliper", 0, offset) for offset in range(len(raws))]
    (group,), unreadable = old_sink_target().prepare(keys, [CODEC.encode_record(raw) for raw in raws])
    assert unreadable == []
    with in_database(target, database):
        target.insert_raw(RAW_ARCHIVE_INPUT_TABLE, group.body(0, len(raws)), "JSONEachRow",
                          {**INSERT_SETTINGS, "insert_deduplication_token": token})


def insert_new(target: ClickHouse, database: str, raws: list[RawEvent], token: str) -> None:
    archive: AvroTarget = raw_archive_target(ROWS, ARCHIVE_BLOCKS)
    messages = archived_by_worker(raws, KEY)
    assert len(messages) == len(raws)
    (group,), unreadable = archive.prepare([("caliper.archive", 0, n) for n in range(len(messages))], messages)
    assert unreadable == []
    with in_database(target, database):
        target.insert_avro(RAW_ARCHIVE_INPUT_TABLE, group.body(0, len(messages)),
                           {**INSERT_SETTINGS, "insert_deduplication_token": token})


def rows_of(target: ClickHouse, database: str, columns: str = "* EXCEPT (archived_time)") -> list[dict[str, Any]]:
    names, rows = target.query_rows(f"SELECT {columns} FROM {database}.raw_events FINAL "
                                    "ORDER BY tenant, event_id, content_hash")
    return [dict(zip(names, row, strict=True)) for row in rows]


def edge_cases() -> list[RawEvent]:
    """Raw events at the edges of the row's computation: an unknown time zone (read as UTC), an event time
    outside DateTime64(3) (the received time instead), a job and an extensions policy, no student."""
    base = raw_events_of(activity("urn:uuid:E0000000-0000-0000-0000-000000000001"))[0]
    far_event = {**activity("urn:uuid:e0000000-0000-0000-0000-000000000002"), "eventTime": "2400-01-01T00:00:00Z"}
    far = replace(base, event_id=far_event["id"], payload=orjson.dumps(far_event))
    return [
        replace(base, tenant_timezone="Mars/Olympus_Mons", job_id="job-1", envelope_index=3,
                extensions_policy="keep:foo"),
        far,
        replace(raw_events_of(GRADE_BY_APP)[0], student_id="", send_time_ms=0),
    ]


def test_the_workers_archive_row_equals_the_sinks_old_row_in_every_column(target: ClickHouse) -> None:
    raws = every_kind_of_raw_event() + edge_cases()
    apply_migrations(target, Layout("by_json"))
    insert_old(target, "by_json", raws, "old")
    insert_new(target, "learning", raws, "new")
    old, new = rows_of(target, "by_json"), rows_of(target, "learning")
    assert len(new) == len(old) > 50
    for before, after in zip(old, new, strict=True):
        job, policy = after.pop("job_id"), after.pop("extensions_policy")
        assert (before.pop("job_id"), before.pop("extensions_policy")) == ("", "")  # the old row had neither
        assert after == before
        source = next(raw for raw in raws if canonical_id(raw.event_id) == after["event_id"]
                      and raw.payload.decode() == after["payload"])
        assert (job, policy) == (source.job_id, source.extensions_policy)
    assert any(row["job_id"] == "job-1" and row["extensions_policy"] == "keep:foo"
               for row in rows_of(target, "learning"))


def test_an_archive_written_before_the_upgrade_keeps_working(target: ClickHouse, tmp_path: Path) -> None:
    """A database migrated up to 014 holds the old sink's rows; after 015 they read back (job_id and
    extensions_policy empty) beside the worker's rows, and an erasure finds the student in both."""
    before = tmp_path / "migrations-before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:3]) < 15:
            shutil.copy(path, before / path.name)
    apply_migrations(target, Layout("upgraded"), directory=before)
    old_raws = raw_events_of(GRADE_BY_APP, activity("urn:uuid:f0000000-0000-0000-0000-000000000001"))
    insert_old(target, "upgraded", old_raws, "before the upgrade")
    assert apply_migrations(target, Layout("upgraded")) == [15]
    new_raws = raw_events_of(with_other_id(GRADE_BY_APP), received_ms=RECEIVED_MS + 1000)
    new_raws = [replace(raw, job_id="job-9") for raw in new_raws]
    insert_new(target, "upgraded", new_raws, "after the upgrade")
    read = [archived for page in read_archived(target.query_rows, "upgraded", CALLER.tenant, None, None)
            for archived in page]
    assert sorted(archived.event.payload for archived in read) == sorted(raw.payload for raw in old_raws + new_raws)
    jobs = {row["event_id"]: row["job_id"] for row in rows_of(target, "upgraded", "event_id, job_id")}
    assert sorted(jobs.values()) == ["", "", "job-9"]
    erased = erase_student(target, Layout("upgraded"), CALLER.tenant, SENSOR_STUDENT["id"], "dpo", key=KEY)
    assert erased == 2  # the old row and the new row of the graded student
    assert [row["event_id"] for row in rows_of(target, "upgraded", "event_id")] == [
        "urn:uuid:f0000000-0000-0000-0000-000000000001"]


def with_other_id(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "id": "urn:uuid:f0000000-0000-0000-0000-0000000000aa"}
