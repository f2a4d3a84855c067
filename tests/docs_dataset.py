"""The example data set of docs/analytics.md: what its queries answer, with every number computed by hand below.

Built the way production builds facts: envelopes and hub events become raw events as the gateway makes them
(``gateway.ingest``, with each tenant's time zone), the normalizers turn them into facts, and the facts enter the
real engine through the sink's entry table, each message of a re-send or a correction inserted as the loader would.

school-a (America/Sao_Paulo, UTC-3), local days 2026-11-02 .. 04:
- alice: ActivityEvent xp 10 at 10:00 on the 2nd; xp 20 at 22:30 on the 2nd (01:30 UTC on the 3rd: a UTC day
  would put it on the 3rd); xp 15 at 09:00 on the 4th; TimeSpentEvent active 600 + inactive 30 + waste 12 on
  the 2nd. Nothing on the 3rd.
    -> XP per local day: 2nd 30 (2 activities), 4th 15 (1); time on task 2nd 642 s (600 active).
    -> over her span (2nd..4th, 3 days, the 3rd with nothing): 45 XP, 15 per day (22.5 over active days only).
- bruno: ActivityEvent xp 40 (sendTime 15:01 UTC on the 3rd), corrected by the sender: the same event id with
  xp 25 (sendTime 15:05), then the first version re-sent late, byte for byte (sendTime 15:01 again);
  TimeSpentEvent active 1200 + 30 + 12 on the 3rd.
    -> the current version is xp 25 (sent last); the late re-send does not replace it: 3rd 25 XP (1 activity);
       time on task 3rd 1242 s; one conflict (2 versions).
- carla: ActivityEvent xp 5 on the 2nd, sent twice (the same envelope: a retry) -> 5 XP, counted once.
- hub student h1 (urn:uuid:...0001): GradeEvent EF05MA01 8/10 ended 17:00 on the 2nd (totalTime 300 s), and
  EF05MA01 9/10 ended 11:00 on the 4th (totalTime 360 s) -> best 0.9, 2 scored attempts; time on task 300 s on
  the 2nd, 360 s on the 4th. Hub students earn no XP: they are not in student_daily_xp.
- hub student h2: GradeEvent EF15LP01 4/10 ended 11:00 on the 3rd (totalTime 900 s) -> best 0.4.
school-b (UTC): dora, ActivityEvent xp 50 at 23:30 UTC on the 2nd -> the 2nd.

Totals: school-a 75 XP (10 + 20 + 15 + 25 + 5); summing every row of learning_facts FINAL would give 115, since
both versions of bruno's corrected event are kept. school-b 50 XP.

Failed events (``failed_events``, through the sink's own row builders, ``sinks.failed``), the week of 2026-11-02:
- school-a, job DOCS_JOB: data[1] and data[3] dead-lettered by the worker on the 3rd and the 4th (UTC), both
  "NormalizationError: invalid ActivityEvent: generated: Field required" (field_missing); one request refused by
  the gateway on the 2nd ("400: data[0].actor: required", field_missing); and one dead letter of the week before
  (2026-10-30, "no actor", written before dead letters had jobs or reason codes: the table derives
  not_normalizable from its reason);
- school-b: one request refused on the 3rd ("400: data[0].sendTime: expected ...", field_invalid).
    -> this week: school-a 3 field_missing (2 streams + 1 gateway), school-b 1 field_invalid; the 30th is the week
       before.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import orjson
from published import published_events, published_hub_event

from caliper_pipeline.senders.samples import (
    envelope,
    hub_grade_event,
    timeback_activity_event,
    timeback_time_spent_event,
)
from gateway.tokens import Caller
from schemas.avro.codec import RawEventCodec
from schemas.reasons import ReasonCode
from schemas.records import LearningFact
from schemas.side_topics import DeadLetter, RejectedRequest
from sinks.clickhouse import ClickHouse
from sinks.failed import dead_letter_row, rejected_requests_target
from sinks.tables import FACT_INPUT_TABLE, FAILED_EVENTS_INPUT_TABLE, fact_records, facts_to_arrow
from sinks.targets import SourceMessage
from sinks.writer import INSERT_SETTINGS
from streams.normalizers import NormalizeOptions, normalize_with

OPTIONS = NormalizeOptions(email_hash_key=b"docs-email-key", keep_raw_email=False, normalizer_version="docs",
                           student_key=b"docs-student-key")
SCHOOL_A = Caller("app-a", "school-a", frozenset(), None, tenant_timezone="America/Sao_Paulo")
SCHOOL_B = Caller("app-b", "school-b", frozenset(), None, tenant_timezone="UTC")
H1 = "00000000-0000-4000-8000-000000000001"
H2 = "00000000-0000-4000-8000-000000000002"


def _event(event: dict[str, Any], event_time: str) -> dict[str, Any]:
    return {**event, "eventTime": event_time}


def _envelope(send_time: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {**envelope(*events), "sendTime": send_time}


def _hub(student: str, skill: str, score: float, ended: str, total_time: int) -> dict[str, Any]:
    event = hub_grade_event(student, skill=skill, score=score, event_id=f"urn:uuid:{uuid.uuid4()}")
    event["object"].update(startedAtTime=ended, endedAtTime=ended, lastTime=ended, totalTime=total_time)
    return event


def _received(moment: str) -> int:
    from schemas.coerce import time_to_ms

    value = time_to_ms(moment)
    assert value is not None
    return value


def deliveries() -> list[list[LearningFact]]:
    """The facts of each delivery to the sink, in the order they arrive (one list per request)."""
    alice_day2 = _envelope("2026-11-03T02:00:00.000Z",
                           _event(timeback_activity_event("alice", xp=10), "2026-11-02T13:00:00.000Z"),
                           _event(timeback_activity_event("alice", xp=20), "2026-11-03T01:30:00.000Z"),
                           _event(timeback_time_spent_event("alice", active=600), "2026-11-02T14:00:00.000Z"))
    alice_day4 = _envelope("2026-11-04T12:01:00.000Z",
                           _event(timeback_activity_event("alice", xp=15), "2026-11-04T12:00:00.000Z"))
    bruno_event_id = f"urn:uuid:{uuid.uuid4()}"
    bruno_v1 = _envelope("2026-11-03T15:01:00.000Z", _event(
        timeback_activity_event("bruno", xp=40, event_id=bruno_event_id), "2026-11-03T15:00:00.000Z"))
    bruno_v2 = _envelope("2026-11-03T15:05:00.000Z", _event(
        timeback_activity_event("bruno", xp=25, event_id=bruno_event_id), "2026-11-03T15:00:00.000Z"))
    bruno_time = _envelope("2026-11-03T16:01:00.000Z", _event(
        timeback_time_spent_event("bruno", active=1200), "2026-11-03T16:00:00.000Z"))
    carla = _envelope("2026-11-02T18:01:00.000Z",
                      _event(timeback_activity_event("carla", xp=5), "2026-11-02T18:00:00.000Z"))
    dora = _envelope("2026-11-02T23:31:00.000Z",
                     _event(timeback_activity_event("dora", xp=50), "2026-11-02T23:30:00.000Z"))
    requests: list[tuple[Caller, dict[str, Any] | None, dict[str, Any] | None, str]] = [
        (SCHOOL_A, alice_day2, None, "2026-11-03T02:00:01.000Z"),
        (SCHOOL_A, alice_day4, None, "2026-11-04T12:01:01.000Z"),
        (SCHOOL_A, bruno_v1, None, "2026-11-03T15:01:01.000Z"),
        (SCHOOL_A, bruno_v2, None, "2026-11-03T15:05:01.000Z"),
        (SCHOOL_A, copy.deepcopy(bruno_v1), None, "2026-11-03T18:00:00.000Z"),  # the late re-send, byte for byte
        (SCHOOL_A, bruno_time, None, "2026-11-03T16:01:01.000Z"),
        (SCHOOL_A, carla, None, "2026-11-02T18:01:01.000Z"),
        (SCHOOL_A, copy.deepcopy(carla), None, "2026-11-02T18:01:31.000Z"),  # a retry of the same request
        (SCHOOL_A, None, _hub(H1, "EF05MA01", 8.0, "2026-11-02T20:00:00.000Z", 300), "2026-11-02T20:00:05.000Z"),
        (SCHOOL_A, None, _hub(H1, "EF05MA01", 9.0, "2026-11-04T14:00:00.000Z", 360), "2026-11-04T14:00:05.000Z"),
        (SCHOOL_A, None, _hub(H2, "EF15LP01", 4.0, "2026-11-03T14:00:00.000Z", 900), "2026-11-03T14:00:05.000Z"),
        (SCHOOL_B, dora, None, "2026-11-02T23:31:01.000Z"),
    ]
    result = []
    for caller, caliper, hub, received in requests:
        # through JSON, as the gateway receives it
        raws = (published_events(orjson.loads(orjson.dumps(caliper)), caller, _received(received))
                if caliper is not None
                else [published_hub_event(orjson.loads(orjson.dumps(hub)), caller, _received(received))])
        result.append([fact for raw in raws for fact in normalize_with(raw, OPTIONS)])
    return result


DOCS_JOB = "docsjob" + "a" * 33
NOT_NORMALIZABLE = "NormalizationError: invalid ActivityEvent: generated: Field required"


def failures() -> list[dict[str, Any]]:
    """The ``failed_events_in`` rows of the data set, as the sink builds them from the side topics' records."""
    codec = RawEventCodec()
    rows = []
    letters = [(1, "2026-11-03T10:00:00.000Z", NOT_NORMALIZABLE, ReasonCode.FIELD_MISSING, DOCS_JOB),
               (3, "2026-11-04T10:00:00.000Z", NOT_NORMALIZABLE, ReasonCode.FIELD_MISSING, DOCS_JOB),
               # the week before: no job, no code (written before either existed)
               (0, "2026-10-30T10:00:00.000Z", "NormalizationError: no actor", None, "")]
    for offset, (index, moment, reason, code, job) in enumerate(letters):
        event = timeback_activity_event("erin", event_id=f"urn:uuid:00000000-0000-4000-8000-00000000000{index}")
        raw = published_events({"sensor": "s", "data": [event]}, SCHOOL_A, _received(moment), job)[0]
        raw.envelope_index = index
        letter = DeadLetter(reason=reason, reason_code=code, worker_version="docs", topic="caliper.raw.timeback",
                            partition=0, offset=offset, original=codec.encode_record(raw), tenant="school-a",
                            client_id="app-a", source="timeback", event_id=raw.event_id, job_id=job or None,
                            envelope_index=index if job else None, time_ms=_received(moment))
        rows.append(dead_letter_row(letter, codec, OPTIONS.student_key, 0))
    refused = rejected_requests_target(OPTIONS.student_key).row_of
    refusals = [(SCHOOL_A, "2026-11-02T09:00:00.000Z", ("data[0].actor", "required"), ReasonCode.FIELD_MISSING),
                (SCHOOL_B, "2026-11-03T09:00:00.000Z", ("data[0].sendTime", "expected a date and time"),
                 ReasonCode.FIELD_INVALID)]
    for offset, (caller, moment, problem, code) in enumerate(refusals):
        record = RejectedRequest.of(tenant=caller.tenant, client_id=caller.client_id, endpoint="/caliper/event",
                                    status=400, problems=[problem], reason_code=code, body=b'{"data": [{}]}',
                                    time_ms=_received(moment))
        rows.append(dict(refused(SourceMessage("caliper.rejected", 0, offset, record.to_json()))))
    return rows


def load(clickhouse: ClickHouse) -> None:
    """Insert every delivery through the sink's entry table, one insert (and token) per delivery; then the
    failed events."""
    for number, facts in enumerate(deliveries()):
        clickhouse.insert_arrow(FACT_INPUT_TABLE, facts_to_arrow(fact_records(facts)),
                                {**INSERT_SETTINGS, "insert_deduplication_token": f"docs-{number}"})
    clickhouse.insert_raw(FAILED_EVENTS_INPUT_TABLE, b"".join(orjson.dumps(row) + b"\n" for row in failures()),
                          "JSONEachRow", {**INSERT_SETTINGS, "insert_deduplication_token": "docs-failures"})
