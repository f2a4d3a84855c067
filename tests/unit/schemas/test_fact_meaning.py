"""What a fact means: the tenant's local day, when the learning happened, who the learner is, and one
id whatever its case. One test (or more) per finding: #1 local days, #4 the hub's event time, #5 defaults of the
hub contract (each seed field's own column is a row of ``test_normalizers.py``), #9 upper-case ids, #11 the learner
found by role, driven by envelopes shaped as IMS's reference sensor (caliper-python 1.2) writes them."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from published import published_events, published_hub_event
from seed_payloads import CONTEXT, seed_activity_event, seed_hub_event, with_value, without

from gateway.tokens import Caller
from schemas.caliper import check_envelope
from schemas.errors import NormalizationError
from schemas.records import LearningFact, RawEvent
from streams.normalizers import NormalizeOptions, normalize_with

OPTIONS = NormalizeOptions(b"meaning-key", keep_raw_email=False, normalizer_version="test", student_key=b"sk")
RECEIVED_MS = 1_721_500_000_000
SAO_PAULO, TOKYO = "America/Sao_Paulo", "Asia/Tokyo"


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO date-time with its offset."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def day(fact: LearningFact) -> date:
    assert fact.event_date_days is not None
    return date(1970, 1, 1) + timedelta(days=fact.event_date_days)


def raw(source: str, payload: dict[str, Any], *, tenant: str = "school", zone: str = "UTC",
        send_time_ms: int = 1_721_400_000_000) -> RawEvent:
    return RawEvent(tenant=tenant, client_id="app", source=source, event_id=str(payload.get("id", "")),
                    event_type=str(payload.get("type", "")), profile=str(payload.get("profile", "")),
                    student_id="", sensor="https://app.example", send_time_ms=send_time_ms,
                    received_time_ms=RECEIVED_MS, envelope_index=0, payload=orjson.dumps(payload),
                    tenant_timezone=zone)


def fact_of(source: str, payload: dict[str, Any], **options: Any) -> LearningFact:
    [fact] = normalize_with(raw(source, payload, **options), OPTIONS)
    return fact


# --- #1: the tenant's time zone ---------------------------------------------------------------------------------


def test_offset_less_hub_times_are_read_in_the_tenants_time_zone() -> None:
    event = with_value(seed_hub_event(), "object.lastTime", "2022-07-19T19:36:12.117")
    event = with_value(event, "object.endedAtTime", "2022-07-19T19:36:00")
    in_sao_paulo = fact_of("hub", event, zone=SAO_PAULO)
    assert in_sao_paulo.last_access_time_ms == ms("2022-07-19T22:36:12.117+00:00")
    assert in_sao_paulo.event_time_ms == ms("2022-07-19T19:36:00-03:00")
    assert in_sao_paulo.tenant_timezone == SAO_PAULO
    in_utc = fact_of("hub", event)
    assert in_utc.last_access_time_ms == ms("2022-07-19T19:36:12.117+00:00")
    # a time that names its offset is the same instant in every tenant
    assert in_sao_paulo.started_time_ms == in_utc.started_time_ms == ms("2022-07-19T19:30:00+00:00")


def test_offset_less_timeback_times_are_read_in_the_tenants_time_zone() -> None:
    event = with_value(seed_activity_event(), "eventTime", "2024-04-24T23:30:00")
    fact = fact_of("timeback", event, zone=SAO_PAULO)
    assert fact.event_time_ms == ms("2024-04-25T02:30:00+00:00")
    assert day(fact) == date(2024, 4, 24)
    spent = with_value(seed_activity_event(), "type", "TimeSpentEvent")
    spent.update(action="SpentTime", generated={"id": "https://app.example/m/1",
                                                "type": "TimebackTimeSpentMetricsCollection",
                                                "items": [{"type": "active", "value": 60,
                                                           "startDate": "2024-04-24T23:00:00",
                                                           "endDate": "2024-04-24T23:01:00.000Z"}]})
    fact = fact_of("timeback", spent, zone=TOKYO)
    assert fact.started_time_ms == ms("2024-04-24T23:00:00+09:00")
    assert fact.ended_time_ms == ms("2024-04-24T23:01:00+00:00")


def test_a_generic_caliper_events_offset_less_time_is_read_in_the_tenants_zone() -> None:
    event = {"@context": CONTEXT, "id": "urn:uuid:5e0b1a54-8d6c-4b57-9c1e-1b2c3d4e5f60", "type": "ViewEvent",
             "profile": "ReadingProfile", "actor": {"id": "https://example.edu/users/1", "type": "Person"},
             "action": "Viewed", "object": {"id": "https://example.edu/books/1", "type": "Document",
                                            "dateCreated": "2024-01-02T08:00:00"},
             "eventTime": "2024-01-02T23:59:59.999"}
    fact = fact_of("caliper", event, zone=SAO_PAULO)
    assert fact.event_time_ms == ms("2024-01-02T23:59:59.999-03:00") and day(fact) == date(2024, 1, 2)
    assert fact.date_created_ms == ms("2024-01-02T08:00:00-03:00")


# eventTime (UTC) -> (local date in Sao Paulo, UTC-3; in Tokyo, UTC+9; in UTC), computed by hand
AROUND_MIDNIGHT = [
    ("2024-04-24T02:30:00Z", 10, date(2024, 4, 23), date(2024, 4, 24), date(2024, 4, 24)),  # SP 23:30 the 23rd
    ("2024-04-24T14:59:59.999Z", 20, date(2024, 4, 24), date(2024, 4, 24), date(2024, 4, 24)),  # Tokyo 23:59:59
    ("2024-04-24T15:00:00Z", 40, date(2024, 4, 24), date(2024, 4, 25), date(2024, 4, 24)),  # Tokyo midnight
    ("2024-04-25T02:59:59.999Z", 80, date(2024, 4, 24), date(2024, 4, 25), date(2024, 4, 25)),  # SP 23:59:59
    ("2024-04-25T03:00:00Z", 160, date(2024, 4, 25), date(2024, 4, 25), date(2024, 4, 25)),  # SP midnight
]


def test_events_around_local_midnight_in_two_tenants_of_different_zones() -> None:
    """The same five events sent by a school in Sao Paulo and one in Tokyo: each fact's date is its tenant's
    local day, and the XP per local day is what each school counts by hand."""
    xp_per_day: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for index, (event_time, xp, sao_paulo_day, tokyo_day, utc_day) in enumerate(AROUND_MIDNIGHT):
        event = with_value(seed_activity_event(), "eventTime", event_time)
        event["id"] = f"urn:uuid:00000000-0000-4000-8000-{index:012d}"
        event["generated"]["items"] = [{"type": "xpEarned", "value": xp}]
        for tenant, zone, expected in (("escola-sp", SAO_PAULO, sao_paulo_day), ("school-tokyo", TOKYO, tokyo_day),
                                       ("school-utc", "UTC", utc_day)):
            fact = fact_of("timeback", event, tenant=tenant, zone=zone)
            assert (fact.tenant_timezone, day(fact)) == (zone, expected), (tenant, event_time)
            assert fact.event_time_ms == ms(event_time.replace("Z", "+00:00"))  # the instant does not move
            xp_per_day[tenant][day(fact)] += fact.xp_earned
    assert xp_per_day["escola-sp"] == {date(2024, 4, 23): 10, date(2024, 4, 24): 140, date(2024, 4, 25): 160}
    assert xp_per_day["school-tokyo"] == {date(2024, 4, 24): 30, date(2024, 4, 25): 280}
    assert xp_per_day["school-utc"] == {date(2024, 4, 24): 70, date(2024, 4, 25): 240}


def test_the_gateway_stamps_the_tenants_time_zone_on_every_raw_event() -> None:
    caller = Caller(client_id="app", tenant="escola-sp", scopes=frozenset(), rate_limit_per_second=None,
                    tenant_timezone=SAO_PAULO)
    envelope = {"sensor": "https://app.example", "sendTime": "2024-04-24T14:12:01.000Z", "dataVersion": CONTEXT,
                "data": [seed_activity_event()]}
    [raw] = published_events(envelope, caller, RECEIVED_MS)
    assert raw.tenant_timezone == SAO_PAULO
    assert published_hub_event(seed_hub_event(), caller, RECEIVED_MS).tenant_timezone == SAO_PAULO


def test_an_unknown_tenant_time_zone_is_a_normalization_error() -> None:
    with pytest.raises(NormalizationError, match="unknown time zone 'Mars/Olympus'"):
        fact_of("timeback", seed_activity_event(), zone="Mars/Olympus")


# --- #4: when the learning happened ---------------------------------------------------------------------------


def test_a_hub_facts_event_time_is_when_the_learning_happened() -> None:
    """Seed: started 19:30, ended 19:36, last access 19:36:12.117, record created 19:40 (all UTC here)."""
    event = seed_hub_event()
    fact = fact_of("hub", event)
    assert fact.event_time_ms == ms("2022-07-19T19:36:00+00:00")  # endedAtTime, not dateCreated (19:40)
    assert fact.date_created_ms == ms("2022-07-19T19:40:00+00:00")
    assert fact.event_time_ms <= fact.date_created_ms
    no_end = without(event, "object.endedAtTime")
    assert fact_of("hub", no_end).event_time_ms == ms("2022-07-19T19:36:12.117+00:00")  # lastTime
    no_end_nor_last = without(no_end, "object.lastTime")
    assert fact_of("hub", no_end_nor_last).event_time_ms == ms("2022-07-19T19:30:00+00:00")  # startedAtTime


def test_a_backfilled_hub_event_lands_on_the_day_of_the_learning_not_of_the_sending() -> None:
    event = with_value(seed_hub_event(), "object.startedAtTime", "2024-03-10T09:00:00-03:00")
    event = with_value(event, "object.endedAtTime", "2024-03-10T09:20:00-03:00")
    event = with_value(event, "object.dateCreated", "2024-07-01T12:00:00-03:00")  # sent months later
    fact = fact_of("hub", without(event, "object.lastTime"), zone=SAO_PAULO)
    assert day(fact) == date(2024, 3, 10)


def test_hub_facts_have_no_send_time_and_other_facts_keep_theirs() -> None:
    caller = Caller(client_id="app", tenant="t", scopes=frozenset(), rate_limit_per_second=None)
    [hub] = normalize_with(published_hub_event(seed_hub_event(), caller, RECEIVED_MS), OPTIONS)
    assert hub.send_time_ms is None  # the hub sends none: not 1970-01-01
    assert fact_of("timeback", seed_activity_event()).send_time_ms == 1_721_400_000_000


# --- #5: the contract's defaults -------------------------------------------------------------------------------


def test_the_hub_contracts_defaults_apply_where_a_value_is_missing() -> None:
    event = without(seed_hub_event(), "object.assignable.isPartOf.type")
    event = without(event, "object.assignable.frequency_assigned")
    fact = fact_of("hub", event)
    assert (fact.discipline_type, fact.frequency_assigned, fact.learner_type) == ("Subject", 1, "Person")
    sent = fact_of("hub", seed_hub_event())  # a value sent is kept
    assert (sent.discipline_type, sent.frequency_assigned) == ("Subject", 1)
    other = fact_of("hub", with_value(with_value(seed_hub_event(), "object.assignable.isPartOf.type", "Task"),
                                      "object.assignable.frequency_assigned", 3))
    assert (other.discipline_type, other.frequency_assigned) == ("Task", 3)


# --- #9: urn:uuid ids in another case --------------------------------------------------------------------------


def upper_case_uuids(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a sender that writes UUIDs in upper case re-sends it."""
    text = orjson.dumps(event).decode()
    for uuid_urn in {part for part in text.split('"') if part.startswith("urn:uuid:")}:
        text = text.replace(uuid_urn, "urn:uuid:" + uuid_urn[len("urn:uuid:"):].upper())
    assert text != orjson.dumps(event).decode()
    resent: dict[str, Any] = orjson.loads(text)
    return resent


@pytest.mark.parametrize("source", ["hub", "timeback"])
def test_an_upper_case_uuid_urn_resend_is_the_same_fact_not_a_conflict(source: str) -> None:
    event = seed_hub_event() if source == "hub" else seed_activity_event()
    first, again = fact_of(source, event), fact_of(source, upper_case_uuids(event))
    assert again.event_id == event["id"] == event["id"].lower()
    assert (again.fact_id, again.content_hash) == (first.fact_id, first.content_hash)
    assert again == first


def test_ids_that_are_not_uuid_urns_keep_their_case() -> None:
    event = with_value(seed_activity_event(), "actor.id", "https://Example.edu/Users/ANA")
    fact = fact_of("timeback", event)
    assert fact.student_id == "https://Example.edu/Users/ANA"
    assert fact.content_hash != fact_of("timeback", seed_activity_event()).content_hash


# --- #11: the learner found by role, as IMS's reference sensor sends events -------------------------------------

SENSOR = "https://example.edu/sensors/1"
AUTOGRADER = {"id": "https://example.edu/autograder", "type": "SoftwareApplication", "version": "v2",
              "name": None, "description": None, "dateCreated": None, "dateModified": None, "extensions": None}
STUDENT = {"id": "https://example.edu/users/554433", "type": "Person", "name": None, "description": None,
           "dateCreated": None, "dateModified": None, "extensions": None}
INSTRUCTOR = {**STUDENT, "id": "https://example.edu/users/778899", "email": "prof@example.edu"}
ATTEMPT = {"id": "https://example.edu/terms/201601/courses/7/sections/1/assess/1/users/554433/attempts/1",
           "type": "Attempt", "assignee": STUDENT, "assignable": {
               "id": "https://example.edu/terms/201601/courses/7/sections/1/assess/1", "type": "Assessment",
               "name": None, "description": None, "dateCreated": None, "dateModified": None, "extensions": None},
           "count": 1, "dateCreated": "2016-11-15T10:05:00.000Z", "startedAtTime": "2016-11-15T10:05:00.000Z",
           "endedAtTime": "2016-11-15T10:55:12.000Z", "duration": "PT50M12S", "extensions": None}
SCORE = {"id": ATTEMPT["id"] + "/scores/1", "type": "Score", "attempt": ATTEMPT["id"], "maxScore": 15.0,
         "scoreGiven": 10.0, "scoredBy": AUTOGRADER["id"], "comment": "auto-graded exam",
         "dateCreated": "2016-11-15T10:56:00.000Z", "extensions": None}


def sensor_event(event_type: str, profile: str, action: str, actor: Any, event_object: Any,
                 generated: Any = None) -> dict[str, Any]:
    """An event as caliper-python 1.2 serializes it: sorted keys, every property, unset ones as null (its default
    serialization), entities in full or (optimized, once described) by IRI alone."""
    return {"@context": CONTEXT, "action": action, "actor": actor, "edApp": "https://example.edu",
            "eventTime": "2016-11-15T10:57:06.000Z", "extensions": None, "federatedSession": None,
            "generated": generated, "group": None, "id": "urn:uuid:a50ca17f-5971-47bb-8fca-4e6e6879001d",
            "membership": None, "object": event_object, "profile": profile, "referrer": None, "session": None,
            "target": None, "type": event_type}


def sensor_facts(*events: dict[str, Any]) -> list[LearningFact]:
    """Through the gateway's own code: the validator (which drops the nulls) and the raw events it publishes."""
    envelope = {"data": list(events), "dataVersion": CONTEXT, "sendTime": "2016-11-15T10:57:07.000Z",
                "sensor": SENSOR}
    checked = check_envelope(envelope, now=datetime(2024, 1, 1, tzinfo=UTC))
    assert checked.problems == []
    caller = Caller(client_id="lms", tenant="university", scopes=frozenset(), rate_limit_per_second=None)
    return [fact for raw in published_events(checked.payload, caller, RECEIVED_MS)
            for fact in normalize_with(raw, OPTIONS)]


def learner(fact: LearningFact) -> tuple[str, str, str]:
    return fact.student_id, fact.learner_role, fact.learner_type


def test_a_grade_event_of_the_grading_application_names_the_attempts_assignee() -> None:
    [fact] = sensor_facts(sensor_event("GradeEvent", "GradingProfile", "Graded", AUTOGRADER, ATTEMPT, SCORE))
    assert learner(fact) == ("https://example.edu/users/554433", "assignee", "Person")
    assert (fact.actor_id, fact.actor_type) == ("https://example.edu/autograder", "SoftwareApplication")
    assert (fact.attempts, fact.score_given, fact.max_score) == (1, 10.0, 15.0)


def test_a_grade_event_by_iri_alone_names_no_application_as_the_student() -> None:
    """Optimized serialization, the grader and the attempt described before: both are IRIs. Nothing names the
    learner, so the fact says so (today's main stored the autograder as the student)."""
    event = sensor_event("GradeEvent", "GradingProfile", "Graded", AUTOGRADER["id"], ATTEMPT["id"],
                         {key: value for key, value in SCORE.items() if value is not None})
    [fact] = sensor_facts({key: value for key, value in event.items() if value is not None})
    assert learner(fact) == ("", "none", "")
    assert fact.student_key == "" and fact.student_email_hash == ""
    assert fact.actor_id == "https://example.edu/autograder" and fact.object_id == ATTEMPT["id"]


def test_a_grade_event_by_an_instructor_is_the_students_not_the_instructors() -> None:
    [fact] = sensor_facts(sensor_event("GradeEvent", "GradingProfile", "Graded", INSTRUCTOR, ATTEMPT, SCORE))
    assert learner(fact) == ("https://example.edu/users/554433", "assignee", "Person")
    assert fact.student_email_hash == ""  # the instructor's email is not the student's
    assert (fact.actor_id, fact.actor_type) == (INSTRUCTOR["id"], "Person")


def test_a_session_timed_out_by_the_platform_is_the_sessions_users() -> None:
    session = {"id": "https://example.edu/sessions/7d6b88adf746f0692e2e873308b78c60fb13a864", "type": "Session",
               "user": STUDENT, "client": None, "dateCreated": "2016-11-15T10:15:00.000Z",
               "startedAtTime": "2016-11-15T10:15:00.000Z", "endedAtTime": "2016-11-15T11:15:00.000Z",
               "duration": "PT3600S", "extensions": None}
    platform = {**AUTOGRADER, "id": "https://example.edu", "version": None}
    [fact] = sensor_facts(sensor_event("SessionEvent", "SessionProfile", "TimedOut", platform, session))
    assert learner(fact) == ("https://example.edu/users/554433", "session_user", "Person")
    assert (fact.actor_id, fact.actor_type, fact.session_id) == ("https://example.edu", "SoftwareApplication",
                                                                 session["id"])
    by_iri = sensor_event("SessionEvent", "SessionProfile", "TimedOut", platform["id"], session["id"])
    [fact] = sensor_facts({key: value for key, value in by_iri.items() if value is not None})
    assert learner(fact) == ("", "none", "") and fact.actor_id == "https://example.edu"


def test_a_person_actor_is_the_learner() -> None:
    view = sensor_event("ViewEvent", "ReadingProfile", "Viewed", {**STUDENT, "email": "ana@example.edu"},
                        {"id": "https://example.edu/books/1", "type": "Document"})
    [fact] = sensor_facts(view)
    assert learner(fact) == ("https://example.edu/users/554433", "actor", "Person")
    assert fact.student_email_hash != ""
