"""The raw archive on the real engine (embedded chDB): the streams worker makes each raw event's archive row
(``schemas.archive_rows``) and publishes it in a block on the archive topic; the sink's one loading machinery
appends the blocks to ``raw_events`` (an Avro target like the facts'). A re-delivery collapses and a correction is a
second version, the rows agree with the facts the normalizers make of the same event (id, content hash, event time,
the student's key), erasure removes them and keeps them from coming back, the retention follows the setting, and a
refused block is isolated like a refused fact."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from caliper_corpus import VALID_FILES, load, wrap
from published import archived_by_worker, published_events, published_hub_event
from pydantic import SecretStr
from seed_payloads import CONTEXT, seed_activity_event, seed_hub_event, with_value
from sink_fixtures import DAY_MS, insert, make_fact, scalar

from gateway.tokens import Caller
from schemas.archive_rows import archive_row
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.blocks import RawArchiveRowCodec, archive_block_codec
from schemas.caliper import check_envelope
from schemas.privacy import PrivacySettings, student_key_for
from schemas.records import RawEvent
from sinks.archive import apply_archive_ttl, count_archived, raw_archive_target, read_archived
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse
from sinks.erasure import erase_student
from sinks.migrations import Layout
from streams.normalizers import NormalizeOptions, normalize_with

KEY = b"archive-student-key"
OPTIONS = NormalizeOptions(b"email-key", keep_raw_email=False, normalizer_version="test", student_key=KEY)
CODEC = RawEventCodec()
RECEIVED_MS = (int(time.time()) // 86_400 - 1) * 86_400_000  # yesterday: within the archive's retention
CALLER = Caller(client_id="lms", tenant="school-a", scopes=frozenset(), rate_limit_per_second=None,
                tenant_timezone="America/Sao_Paulo")
RAW_TOPIC = "caliper.raw.caliper"
ARCHIVE_TOPIC = "caliper.archive"
ROWS = RawArchiveRowCodec()
ARCHIVE_BLOCKS = archive_block_codec(ROWS)


def raw_events_of(*items: dict[str, Any], send_time: str = "2024-04-24T14:13:00.000Z",
                  received_ms: int = RECEIVED_MS, caller: Caller = CALLER) -> list[RawEvent]:
    """The raw events the gateway publishes for an envelope of ``items`` (validated as it validates them)."""
    envelope = {"data": list(items), "dataVersion": CONTEXT, "sendTime": send_time,
                "sensor": "https://app.example/sensor"}
    checked = check_envelope(envelope, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert checked.problems == []
    return published_events(checked.payload, caller, received_ms)


def sink_for(target: ClickHouse, batch_rows: int = 1000) -> BatchSink:
    archive = raw_archive_target(ROWS, ARCHIVE_BLOCKS)
    return BatchSink(target, "g", batch_rows=batch_rows, batch_seconds=60, default_target=archive, student_key=KEY)


def load_raw(target: ClickHouse, events: list[RawEvent | bytes], partition: int = 0, first_offset: int = 0) -> Any:
    """Load raw events (as the worker archives them: one block each) or archive-topic messages (bytes)."""
    sink = sink_for(target)
    messages = [event if isinstance(event, bytes) else archived_by_worker([event], KEY)[0] for event in events]
    for offset, message in enumerate(messages, start=first_offset):
        sink.add(message, ARCHIVE_TOPIC, partition, offset)
    return [sink.write(batch) for batch in sink.take_due(now=1e12)]


def archived_rows(target: ClickHouse, where: str = "1") -> list[dict[str, Any]]:
    columns, rows = target.query_rows(f"SELECT * FROM learning.raw_events FINAL WHERE {where} "
                                      "ORDER BY event_id, received_time")
    return [dict(zip(columns, row, strict=True)) for row in rows]


# -- the row agrees with the facts of the same event ----------------------------------------------------------------

SENSOR_STUDENT = {"id": "https://example.edu/users/554433", "type": "Person"}
GRADE_BY_APP = {  # the learner is the attempt's assignee, not the grading application
    "@context": CONTEXT, "id": "urn:uuid:A50CA17F-5971-47BB-8FCA-4E6E6879001D", "type": "GradeEvent",
    "profile": "GradingProfile", "action": "Graded", "eventTime": "2024-04-24T10:57:06",
    "actor": {"id": "https://example.edu/autograder", "type": "SoftwareApplication"},
    "object": {"id": "https://example.edu/attempts/1", "type": "Attempt", "assignee": SENSOR_STUDENT,
               "assignable": {"id": "https://example.edu/assess/1", "type": "Assessment"}, "count": 1},
    "generated": {"id": "https://example.edu/attempts/1/scores/1", "type": "Score", "maxScore": 15.0,
                  "scoreGiven": 10.0, "attempt": "https://example.edu/attempts/1"}}
SESSION_TIMED_OUT = {
    "@context": CONTEXT, "id": "urn:uuid:b50ca17f-5971-47bb-8fca-4e6e6879001d", "type": "SessionEvent",
    "profile": "SessionProfile", "action": "TimedOut", "eventTime": "2024-04-24T11:00:00.000Z",
    "actor": {"id": "https://example.edu", "type": "SoftwareApplication"},
    "object": {"id": "https://example.edu/sessions/1", "type": "Session", "user": SENSOR_STUDENT,
               "startedAtTime": "2024-04-24T10:00:00.000Z"}}


def activity(event_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """The Timeback seed's ActivityEvent (with an email the validator takes), under another id if given."""
    event = with_value(seed_activity_event(), "actor.email", "ana@example.edu")
    if event_id is not None:
        event["id"] = event_id
    for path, value in changes.items():
        event = with_value(event, path.replace("__", "."), value)
    return event


def every_kind_of_raw_event() -> list[RawEvent]:
    events = raw_events_of(activity(), GRADE_BY_APP, SESSION_TIMED_OUT)
    events.append(published_hub_event(with_value(seed_hub_event(), "object.endedAtTime", "2022-07-19T19:36:00"),
                                      CALLER, RECEIVED_MS))
    for path in VALID_FILES:  # IMS's corpus: every event and entity shape of Caliper 1.2
        document = load(path)
        envelope = document if isinstance(document, dict) and "data" in document else wrap(document)
        checked = check_envelope(envelope, now=datetime(2025, 1, 1, tzinfo=UTC))
        if checked.problems:
            continue
        events.extend(published_events(checked.payload, CALLER, RECEIVED_MS))
    return events


def test_an_archived_row_agrees_with_the_facts_of_its_event() -> None:
    """The archive's version key and times are the facts' own, and the student's key is among the archived keys
    whatever role the normalizer found the learner in: erasing the student finds the archived event."""
    compared = with_learner = 0
    for raw in every_kind_of_raw_event():
        row = archive_row(raw, KEY)
        for fact in normalize_with(raw, OPTIONS):
            compared += 1
            assert (row.event_id, row.content_hash) == (fact.event_id, fact.content_hash)
            assert row.event_time_ms == fact.event_time_ms, raw.event_id
            if fact.student_id:
                with_learner += 1
                assert fact.student_key in row.student_keys, (raw.event_id, fact.learner_role)
        assert row.payload == raw.payload.decode() and row.tenant_timezone == "America/Sao_Paulo"
    assert compared > 50 and with_learner > 40
    grade = archive_row(raw_events_of(GRADE_BY_APP)[0], KEY)
    assert grade.event_id == GRADE_BY_APP["id"].lower()  # one id whatever its case (finding 9)
    assert grade.actor_id == "https://example.edu/autograder"
    assert student_key_for("school-a", SENSOR_STUDENT["id"], KEY) in grade.student_keys
    # an offset-less eventTime is a wall-clock time of the tenant (UTC-3 in April 2024)
    assert grade.event_time_ms == int(datetime(2024, 4, 24, 13, 57, 6, tzinfo=UTC).timestamp() * 1000)


# -- loading ---------------------------------------------------------------------------------------------------------

def test_raw_events_load_once_and_a_correction_is_a_second_version(target: ClickHouse) -> None:
    first = raw_events_of(activity(), GRADE_BY_APP)
    (result,) = load_raw(target, list(first))
    assert (result.rows, result.rejected) == (2, 0)
    load_raw(target, list(first), first_offset=100)  # the same events delivered again, later offsets
    corrected = raw_events_of(activity(generated__items=[{"type": "xpEarned", "value": 120}]),
                              send_time="2024-04-24T14:20:00.000Z", received_ms=RECEIVED_MS + 60_000)
    load_raw(target, corrected, first_offset=200)
    rows = archived_rows(target)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["event_id"], []).append(row)
    assert sorted(len(versions) for versions in by_id.values()) == [1, 2]
    versions = by_id[activity()["id"]]
    assert {orjson.loads(row["payload"])["generated"]["items"][0]["value"] for row in versions} == {100, 120}
    assert sorted(row["send_time"] for row in versions) == [datetime(2024, 4, 24, 14, 13),
                                                             datetime(2024, 4, 24, 14, 20)]
    assert scalar(target, "SELECT uniqExact(event_id, content_hash) FROM learning.raw_events") == 3


def test_unreadable_messages_go_to_sink_rejects_and_a_payload_that_is_not_json_is_not_archived(
        target: ClickHouse) -> None:
    good = raw_events_of(activity())[0]
    not_json = replace(good, event_id="urn:uuid:00000000-0000-0000-0000-000000000009", payload=b"{not json")
    assert archived_by_worker([not_json], KEY) == []  # the worker dead-letters it; its dead letter keeps it
    (result,) = load_raw(target, [good, b"garbage"])
    assert (result.rows, result.rejected) == (1, 1)
    _, rejects = target.query_rows("SELECT offset, raw_base64, error FROM learning.sink_rejects ORDER BY offset")
    assert [(offset, raw) for offset, raw, _ in rejects] == [(1, base64.b64encode(b"garbage").decode())]
    assert "header" in rejects[0][2]


def test_an_archive_block_clickhouse_refuses_is_isolated_and_the_rest_loaded(target: ClickHouse) -> None:
    """The writer is one for every target: a block ClickHouse cannot read is bisected out as a fact is, and its
    failed_events row keeps what the worker computed (the student keys: erasable)."""
    events = raw_events_of(*[activity(f"urn:uuid:00000000-0000-0000-0000-{i:012d}") for i in range(8)])
    messages = archived_by_worker(events, KEY)
    messages[3] = messages[3][:-40] + b"\x00"  # a known writer, rows that run out
    (result,) = load_raw(target, list(messages))
    assert (result.rows, result.rejected) == (7, 1)
    _, rejects = target.query_rows("SELECT offset, error FROM learning.sink_rejects")
    assert rejects[0][0] == 3 and rejects[0][1].startswith("ClickHouse refused it")
    assert scalar(target, "SELECT count() FROM learning.raw_events") == 7


def test_archive_inserts_carry_range_tokens_so_a_retried_range_adds_nothing(target: ClickHouse) -> None:
    events = raw_events_of(*[activity(f"urn:uuid:10000000-0000-0000-0000-{i:012d}")
                             for i in range(20)])
    messages = archived_by_worker(events, KEY)
    for _attempt in range(2):  # the same range twice (a crash before the offset commit)
        sink = sink_for(target)
        sink.load_plans(ARCHIVE_TOPIC)
        for offset, message in enumerate(messages):
            sink.add(message, ARCHIVE_TOPIC, 1, offset)
        for batch in sink.take_due(now=1e12):
            sink.write(batch)
    assert scalar(target, "SELECT count() FROM learning.raw_events") == 20  # no FINAL: the retry was dropped


# -- erasure and retention -------------------------------------------------------------------------------------------

def test_erasure_deletes_the_students_archived_events_and_keeps_them_out(target: ClickHouse) -> None:
    other = {**SENSOR_STUDENT, "id": "https://example.edu/users/1"}
    others_grade = with_value(with_value(GRADE_BY_APP, "object.assignee", other), "id",
                              "urn:uuid:c50ca17f-5971-47bb-8fca-4e6e6879001d")
    load_raw(target, raw_events_of(GRADE_BY_APP, SESSION_TIMED_OUT, others_grade))
    assert scalar(target, "SELECT count() FROM learning.raw_events") == 3
    deleted = erase_student(target, Layout("learning"), "school-a", SENSOR_STUDENT["id"], "dpo", key=KEY)
    assert deleted == 2  # graded by an application, and timed out by the platform: both name the student
    remaining = archived_rows(target)
    assert [row["event_id"] for row in remaining] == [others_grade["id"]]
    assert SENSOR_STUDENT["id"] not in scalar(target, "SELECT groupArray(payload) FROM learning.raw_events")[0]
    _, mutations = target.query_rows("SELECT command FROM system.mutations WHERE table = 'raw_events'")
    assert mutations and all(SENSOR_STUDENT["id"] not in command for (command,) in mutations)
    late = with_value(GRADE_BY_APP, "id", "urn:uuid:d50ca17f-5971-47bb-8fca-4e6e6879001d")
    (result,) = load_raw(target, raw_events_of(late), first_offset=50)  # still in Kafka when the erasure ran
    assert result.rows == 1  # inserted, and dropped by the view
    assert [row["event_id"] for row in archived_rows(target)] == [others_grade["id"]]


def test_the_retention_follows_the_setting(target: ClickHouse) -> None:
    layout = Layout("learning")

    def ttl() -> str:
        create = str(scalar(target, "SELECT create_table_query FROM system.tables "
                                    "WHERE database = 'learning' AND name = 'raw_events'"))
        return create[create.find("TTL"):create.find("SETTINGS")].strip()

    assert ttl() == "TTL toDateTime(received_time) + toIntervalDay(365)"
    assert apply_archive_ttl(target, layout, 365) is False  # unchanged: no mutation
    assert apply_archive_ttl(target, layout, 30) is True and ttl().endswith("toIntervalDay(30)")
    old = replace(raw_events_of(activity())[0], received_time_ms=RECEIVED_MS - 40 * 86_400_000)
    load_raw(target, [old])
    target.command("OPTIMIZE TABLE learning.raw_events FINAL")
    assert scalar(target, "SELECT count() FROM learning.raw_events") == 0  # received 40 days ago, kept 30
    assert apply_archive_ttl(target, layout, 0) is True and ttl() == ""
    load_raw(target, [old], first_offset=10)
    target.command("OPTIMIZE TABLE learning.raw_events FINAL")
    assert scalar(target, "SELECT count() FROM learning.raw_events") == 1


# -- reading back for renormalize ------------------------------------------------------------------------------------

def test_the_archive_reads_back_the_raw_events_page_by_page(target: ClickHouse) -> None:
    events = raw_events_of(*[activity(f"urn:uuid:20000000-0000-0000-0000-{i:012d}")
                             for i in range(23)])
    events += raw_events_of(GRADE_BY_APP, caller=replace(CALLER, tenant="school-b"))
    events.append(published_hub_event(seed_hub_event(), CALLER, RECEIVED_MS + 5_000))
    load_raw(target, events)
    pages = list(read_archived(target.query_rows, "learning", "school-a", None, None, page_rows=10))
    assert [len(page) for page in pages] == [10, 10, 4]
    read = [event for page in pages for event in page]
    assert count_archived(target.query_rows, "learning", "school-a", None, None) == 24
    assert {archived.event.payload for archived in read} == {e.payload for e in events if e.tenant == "school-a"}
    hub = next(archived.event for archived in read if archived.event.source == "hub")
    assert hub.send_time_ms == 0 and hub.tenant_timezone == "America/Sao_Paulo"
    assert normalize_with(hub, OPTIONS) == normalize_with(events[-1], OPTIONS)  # the same input, the same facts
    window = list(read_archived(target.query_rows, "learning", "school-a", RECEIVED_MS + 1, None))
    assert [archived.event.source for page in window for archived in page] == ["hub"]


# -- the newest derivation is the current version (learning_fact v4, migration 009) -------------------------------

def test_the_newest_derivation_of_a_version_is_current_and_a_late_retry_never_is(target: ClickHouse) -> None:
    """A re-derived fact has the same id, content, send and received time as the derivation it replaces: the
    current-version rule ties, and derived_time breaks the tie. A newer derivation never beats a newer VERSION."""
    v1 = make_fact(1, send_time_ms=DAY_MS, received_time_ms=DAY_MS + 5, derived_time_ms=DAY_MS + 10,
                   student_id="autograder", xp_earned=0.0, normalizer_version="old")
    v2 = replace(v1, content_hash="hash-v2", send_time_ms=DAY_MS + 300_000, received_time_ms=DAY_MS + 300_005)
    insert(target, [v1, v2], "first derivation")
    # renormalize: both versions derived again, the learner found by role now (another sort key), the XP read
    again = [replace(fact, student_id="ana", xp_earned=7.0, normalizer_version="new",
                     derived_time_ms=DAY_MS + 86_400_000) for fact in (v1, v2)]
    insert(target, again, "second derivation")
    _, rows = target.query_rows("SELECT content_hash, student_id, xp_earned, normalizer_version "
                                "FROM learning.current_facts")
    assert rows == [("hash-v2", "ana", 7.0, "new")]  # v2 (sent last), in its newest derivation
    # a derivation of the same sort key (the same student) replaces the older one too, whatever the insert order
    fixed = replace(again[1], xp_earned=9.0, normalizer_version="newer", derived_time_ms=DAY_MS + 2 * 86_400_000)
    stale = replace(again[1], xp_earned=1.0, normalizer_version="stale", derived_time_ms=DAY_MS + 3_600_000)
    insert(target, [fixed], "third derivation")
    insert(target, [stale], "a stale derivation loaded late")
    assert target.query_rows("SELECT xp_earned, normalizer_version FROM learning.current_facts")[1] == [
        (9.0, "newer")]
    # an identical late retry of v1, derived last, is still v1: v2 stays current
    insert(target, [replace(again[0], received_time_ms=DAY_MS + 600_000, derived_time_ms=DAY_MS + 9 * 86_400_000)],
           "late retry")
    assert scalar(target, "SELECT content_hash FROM learning.current_facts") == "hash-v2"
    assert scalar(target, "SELECT count() FROM learning.student_daily_xp") <= 1  # the views read current_facts


def test_the_worker_stamps_each_fact_with_its_derivation_time() -> None:
    from schemas.kafka import Topics
    from streams.processor import EventProcessor
    from streams.settings import StreamsSettings

    privacy = PrivacySettings(email_hash_key=SecretStr("e"), student_key=SecretStr("s"))
    processor = EventProcessor(StreamsSettings(), Topics(), privacy)
    before = int(time.time() * 1000)
    [result] = processor.process_message(RAW_TOPIC, 0, 0, None, CODEC.encode_record(raw_events_of(activity())[0]))
    assert [fact.derived_time_ms is not None and before <= fact.derived_time_ms <= time.time() * 1000 + 1
            for fact in result.facts] == [True]
    decoded = LearningFactCodec().decode_record(result.records[0].value)
    assert decoded.derived_time_ms == result.facts[0].derived_time_ms  # it travels on the facts topic (v4)
