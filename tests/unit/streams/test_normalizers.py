"""Normalizers: every field of both seeds' contracts lands in the learning fact; generic Caliper events too."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import EXPENSIVE, examples
from seed_payloads import CONTEXT, USER, seed_activity_event, seed_hub_event, with_value

from schemas.caliper import is_event, validate_envelope
from schemas.errors import NormalizationError
from schemas.privacy import student_key_for
from schemas.records import LearningFact, RawEvent, content_hash_of, fact_id_for, pseudonymize_email
from streams.normalizers import normalize
from streams.normalizers.base import duration_seconds

KEY = b"test-key"
STUDENT_KEY = b"test-student-key"
VERSION = "caliper-streams/test"


def ms(text: str) -> int:
    """Epoch milliseconds of an offset-less UTC date-time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def time_spent_event() -> dict[str, Any]:
    event = seed_activity_event()
    event.update(type="TimeSpentEvent", action="SpentTime", generated={
        "id": "https://your-app-url.com/ims/metrics/collections/time/1",
        "type": "TimebackTimeSpentMetricsCollection",
        "items": [{"type": "active", "value": 60, "startDate": "2024-04-24T14:00:00Z",
                   "endDate": "2024-04-24T14:01:00Z"}],
    })
    return event


def raw_event(source: str, payload: dict[str, Any], tenant: str = "tenant-a") -> RawEvent:
    return RawEvent(
        tenant=tenant, client_id="client-1", source=source, event_id=str(payload.get("id", "")),
        event_type=str(payload.get("type", "")), profile=str(payload.get("profile", "")), student_id="",
        sensor="https://alpharead.alpha.school", send_time_ms=1_700_000_000_000,
        received_time_ms=1_700_000_000_500, envelope_index=0, payload=orjson.dumps(payload),
    )


def one_fact(source: str, payload: dict[str, Any], keep_raw_email: bool = False) -> LearningFact:
    facts = normalize(raw_event(source, payload), email_hash_key=KEY, keep_raw_email=keep_raw_email,
                      normalizer_version=VERSION, student_key=STUDENT_KEY)
    assert len(facts) == 1
    return facts[0]


def extensions(fact: LearningFact) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(fact.extensions_json)
    return loaded


# (payload path, value sent, fact field, expected). "extensions" checks the value is kept in extensions_json.
HUB_FIELDS: list[tuple[str, Any, str, Any]] = [
    ("@context", CONTEXT, "profile", "GradingProfile"),
    ("@context", ["https://example.edu/ctx", CONTEXT], "extensions",
     {"@context": ["https://example.edu/ctx", CONTEXT]}),
    ("id", "urn:uuid:aaaaaaaa-253f-4073-9f29-5786f3ff3f36", "event_id",
     "urn:uuid:aaaaaaaa-253f-4073-9f29-5786f3ff3f36"),
    ("type", "GradeViewEvent", "event_type", "GradeViewEvent"),
    ("profile", "ReadingGradingProfile", "profile", "ReadingGradingProfile"),
    ("actor.type", "SoftwareApplication", "actor_type", "SoftwareApplication"),
    ("actor.host", "https://leitura.example.com.br", "actor_host", "https://leitura.example.com.br"),
    ("action", "Viewed", "action", "Viewed"),
    ("action", "ViewdGraded", "action", "ViewedGraded"),
    ("object.type", "Reading/Listen", "object_type", "Reading/Listen"),
    ("object.assignee.id", "urn:uuid:11111111-2222-3333-4444-555555555555", "student_id",
     "urn:uuid:11111111-2222-3333-4444-555555555555"),
    ("object.assignee.type", "Person", "learner_type", "Person"),
    ("object.assignee.id", "urn:uuid:11111111-2222-3333-4444-555555555555", "learner_role", "assignee"),
    ("object.assignable.id", "book-7", "activity_id", "book-7"),
    ("object.assignable.type", "Book Activity", "activity_type", "Book Activity"),
    ("object.assignable.skillCode", "ef69ar31", "bncc_code", "EF69AR31"),
    ("object.assignable.skillCode", "EF69AR31", "bncc_stage", "EF"),
    ("object.assignable.skillCode", "EF69AR31", "bncc_year_group", "EF69"),
    ("object.assignable.skillCode", "EF69AR31", "bncc_component", "AR"),
    ("object.assignable.skillCode", "EF69AR31", "bncc_number", "31"),
    ("object.assignable.skillCode", "EM13LGG101", "bncc_number", "101"),
    ("object.assignable.extension.name", "O Pequeno Príncipe", "activity_name", "O Pequeno Príncipe"),
    ("object.assignable.extension.bookLevel", "B2", "book_level", "B2"),
    ("object.assignable.isPartOf.id", 6, "discipline_code", "6"),
    ("object.assignable.isPartOf.id", "LP", "discipline_code", "LP"),
    ("object.assignable.isPartOf.name", "Língua Portuguesa", "subject_name", "Língua Portuguesa"),
    ("object.assignable.isPartOf.type", "GroupStudy", "discipline_type", "GroupStudy"),
    ("object.assignable.frequency_assigned", 3, "frequency_assigned", 3),
    ("object.dateCreated", "2022-07-19T19:40:00.000Z", "date_created_ms", ms("2022-07-19T19:40:00")),
    ("object.startedAtTime", "2022-07-19T16:30:00-03:00", "started_time_ms", ms("2022-07-19T19:30:00")),
    ("object.endedAtTime", "2022-07-19T19:36:00", "ended_time_ms", ms("2022-07-19T19:36:00")),
    ("object.endedAtTime", "2022-07-19T19:36:00Z", "event_time_ms", ms("2022-07-19T19:36:00")),
    ("object.lastTime", "2022-07-19T19:36:12.117", "last_access_time_ms", ms("2022-07-19T19:36:12.117")),
    ("object.totalTime", "372", "total_time_seconds", 372.0),
    ("object.percentReading", 25.91, "percent_read", 25.91),
    ("object.completionType", "ONGOING", "completion_type", "ONGOING"),
    ("object.finished", "True", "finished", True),
    ("object.finished", "FALSE", "finished", False),
    ("object.finished", True, "finished", True),
    ("edApp", "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e", "ed_app",
     "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"),
    ("generated.type", "Score", "generated_type", "Score"),
    ("generated.maxScore", 20, "max_score", 20.0),
    ("generated.scoreGiven", "15", "score_given", 15.0),
    ("generated.scoreGiven", 5, "score_ratio", 0.5),
    ("generated.proficiencyLevel", "Avançado", "proficiency_level", "Avançado"),
    ("generated.trys", 3, "attempts", 3),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), HUB_FIELDS,
                         ids=[f"{row[0]}->{row[2]}" for row in HUB_FIELDS])
def test_every_hub_field_lands_in_the_fact(path: str, value: Any, field: str, expected: Any) -> None:
    fact = one_fact("hub", with_value(seed_hub_event(), path, value))
    if field == "extensions":
        kept = extensions(fact)
        for key, subtree in expected.items():
            assert kept[key] == subtree
    else:
        assert getattr(fact, field) == expected


TIMEBACK_FIELDS: list[tuple[str, Any, str, Any]] = [
    ("id", "urn:uuid:bbbbbbbb-f8ed-4c18-bb3a-dfe51b2cc594", "event_id",
     "urn:uuid:bbbbbbbb-f8ed-4c18-bb3a-dfe51b2cc594"),
    ("eventTime", "2024-04-24T14:12:00.000Z", "event_time_ms", ms("2024-04-24T14:12:00")),
    ("eventTime", "2024-04-24T14:12:00", "event_time_ms", ms("2024-04-24T14:12:00")),
    ("profile", "TimebackProfile", "profile", "TimebackProfile"),
    ("type", "ActivityEvent", "event_type", "ActivityEvent"),
    ("action", "Completed", "action", "Completed"),
    ("actor.id", USER, "student_id", USER),
    ("actor.type", "TimebackUser", "actor_type", "TimebackUser"),
    ("actor.email", "[email protected]", "student_email_hash", pseudonymize_email("[email protected]", KEY)),
    ("actor.email", "[email protected]", "student_email", ""),
    ("actor.name", "Ana Souza", "dropped", "Ana Souza"),  # a Person's name: personal data (schemas.personal_data)
    ("actor.role", "student", "extensions", {"actor": {"role": "student"}}),
    ("object.id", "https://x.example/ctx/9", "object_id", "https://x.example/ctx/9"),
    ("object.type", "TimebackActivityContext", "object_type", "TimebackActivityContext"),
    ("object.subject", "Math", "subject_name", "Math"),
    ("object.app", {"id": "https://powerpath.example", "name": "PowerPath"}, "app_name", "PowerPath"),
    ("object.app", {"id": "https://powerpath.example", "name": "PowerPath"}, "ed_app", "https://powerpath.example"),
    ("object.course", {"id": "https://x.example/courses/7", "name": "Math G4"}, "course_id", "https://x.example/courses/7"),
    ("object.course", {"id": "https://x.example/courses/7", "name": "Math G4"}, "course_name", "Math G4"),
    ("object.activity", {"id": "https://x.example/act/1", "name": "Quiz 1"}, "activity_id", "https://x.example/act/1"),
    ("object.activity", {"id": "https://x.example/act/1", "name": "Quiz 1"}, "activity_name", "Quiz 1"),
    ("edApp", "https://alpharead.alpha.school", "ed_app", "https://alpharead.alpha.school"),
    ("edApp", {"id": "https://alpharead.alpha.school", "type": "SoftwareApplication"}, "ed_app",
     "https://alpharead.alpha.school"),
    ("generated.items", [{"type": "xpEarned", "value": 100}], "xp_earned", 100.0),
    ("generated.items", [{"type": "xpEarned", "value": 100}, {"type": "xpEarned", "value": "20"}], "xp_earned", 120.0),
    ("generated.items", [{"type": "totalQuestions", "value": 10}], "total_questions", 10.0),
    ("generated.items", [{"type": "correctQuestions", "value": 8}], "correct_questions", 8.0),
    ("generated.items", [{"type": "masteredUnits", "value": 2}], "mastered_units", 2.0),
    ("generated.id", "https://x.example/collections/1", "generated_id", "https://x.example/collections/1"),
    ("generated.type", "TimebackActivityMetricsCollection", "generated_type", "TimebackActivityMetricsCollection"),
    ("actor.id", USER, "learner_role", "actor"),
    ("actor.id", USER, "actor_id", USER),
    ("actor.type", "TimebackUser", "learner_type", "TimebackUser"),
]

TIME_SPENT_FIELDS: list[tuple[str, Any, str, Any]] = [
    ("generated.items", [{"type": "active", "value": 60}, {"type": "active", "value": "30.5"}], "seconds_active", 90.5),
    ("generated.items", [{"type": "inactive", "value": 12}], "seconds_inactive", 12.0),
    ("generated.items", [{"type": "waste", "value": 5}], "seconds_waste", 5.0),
    ("generated.items", [{"type": "unknown", "value": 7}], "seconds_unknown", 7.0),
    ("generated.items", [{"type": "anti-pattern", "value": 9}], "seconds_anti_pattern", 9.0),
    ("generated.items", [{"type": "active", "value": 1, "startDate": "2024-04-24T14:00:00Z"},
                         {"type": "waste", "value": 1, "startDate": "2024-04-24T13:00:00"}],
     "started_time_ms", ms("2024-04-24T13:00:00")),
    ("generated.items", [{"type": "active", "value": 1, "endDate": "2024-04-24T14:05:00Z"},
                         {"type": "waste", "value": 1, "endDate": "2024-04-24T14:09:00Z"}],
     "ended_time_ms", ms("2024-04-24T14:09:00")),
    ("generated.items", [{"type": "active", "value": 1, "subType": "reading"}], "seconds_by_sub_type",
     {"active/reading": 1.0}),
    ("generated.items", [{"type": "waste", "value": 2, "subType": "eating"}, {"type": "waste", "value": 3},
                         {"type": "waste", "value": "4", "subType": "eating"}, {"type": "inactive", "value": 5,
                                                                                "subType": "eating"}],
     "seconds_by_sub_type", {"waste/eating": 6.0, "inactive/eating": 5.0}),
    ("generated.items", [{"type": "waste", "value": 2, "subType": "eating"}], "extensions_json", "{}"),
    ("generated.id", "https://x.example/time/9", "generated_id", "https://x.example/time/9"),
    ("generated.type", "TimebackTimeSpentMetricsCollection", "generated_type", "TimebackTimeSpentMetricsCollection"),
    ("type", "TimeSpentEvent", "event_type", "TimeSpentEvent"),
    ("action", "SpentTime", "action", "SpentTime"),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), TIMEBACK_FIELDS,
                         ids=[f"{row[0]}->{row[2]}" for row in TIMEBACK_FIELDS])
def test_every_timeback_activity_field_lands_in_the_fact(path: str, value: Any, field: str, expected: Any) -> None:
    check_field(one_fact("timeback", with_value(seed_activity_event(), path, value)), field, expected)


@pytest.mark.parametrize(("path", "value", "field", "expected"), TIME_SPENT_FIELDS,
                         ids=[f"{row[0]}->{row[2]}" for row in TIME_SPENT_FIELDS])
def test_every_timeback_time_spent_field_lands_in_the_fact(path: str, value: Any, field: str, expected: Any) -> None:
    check_field(one_fact("timeback", with_value(time_spent_event(), path, value)), field, expected)


def check_field(fact: LearningFact, field: str, expected: Any) -> None:
    if field == "extensions":
        kept = extensions(fact)
        for key, subtree in expected.items():
            assert kept[key] == subtree
    elif field == "dropped":  # in no column of the fact
        assert all(expected not in str(column) for column in fact.to_record().values())
    else:
        assert getattr(fact, field) == expected


def test_envelope_metadata_and_ids_come_from_the_raw_event() -> None:
    payload = seed_activity_event()
    fact = one_fact("timeback", payload)
    assert fact.sensor == "https://alpharead.alpha.school"
    assert fact.send_time_ms == 1_700_000_000_000 and fact.received_time_ms == 1_700_000_000_500
    assert (fact.tenant, fact.client_id, fact.source) == ("tenant-a", "client-1", "timeback")
    assert fact.fact_id == fact_id_for("tenant-a", payload["id"], 0) and fact.fact_index == 0
    assert fact.content_hash == content_hash_of(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    assert fact.normalizer_version == VERSION


def test_every_fact_carries_the_keyed_student_key_of_its_tenant_and_student() -> None:
    for source, payload in (("timeback", seed_activity_event()), ("hub", seed_hub_event())):
        fact = one_fact(source, payload)
        assert fact.student_key == student_key_for("tenant-a", fact.student_id, STUDENT_KEY)
        assert len(fact.student_key) == 64 and fact.student_id not in fact.student_key
    other_tenant = normalize(raw_event("timeback", seed_activity_event(), tenant="tenant-b"), email_hash_key=KEY,
                             keep_raw_email=False, normalizer_version=VERSION, student_key=STUDENT_KEY)[0]
    assert other_tenant.student_key != one_fact("timeback", seed_activity_event()).student_key


def test_the_raw_email_is_kept_only_when_asked() -> None:
    fact = one_fact("timeback", seed_activity_event(), keep_raw_email=True)
    assert fact.student_email == "[email protected]"
    assert fact.student_email_hash == pseudonymize_email("[email protected]", KEY)


def test_a_fully_mapped_seed_event_leaves_nothing_in_extensions() -> None:
    """Every field of both seeds' contracts has a typed column: nothing is left over."""
    assert extensions(one_fact("timeback", seed_activity_event())) == {}
    assert extensions(one_fact("timeback", time_spent_event())) == {}
    assert extensions(one_fact("hub", seed_hub_event())) == {}


def test_unknown_fields_are_kept_in_extensions() -> None:
    payload = with_value(seed_hub_event(), "school", {"inep": "35012345"})
    payload["object"]["assignable"]["difficulty"] = "hard"
    kept = extensions(one_fact("hub", payload))
    assert kept["school"] == {"inep": "35012345"}
    assert kept["object"]["assignable"] == {"difficulty": "hard"}


def test_a_zero_max_score_gives_no_ratio() -> None:
    fact = one_fact("hub", with_value(seed_hub_event(), "generated.maxScore", 0))
    assert fact.max_score == 0.0 and fact.score_ratio is None


def test_an_invalid_hub_event_is_a_normalization_error_naming_every_problem() -> None:
    payload = seed_hub_event()
    del payload["object"]["assignable"]["skillCode"]
    payload["type"] = "Nope"
    with pytest.raises(NormalizationError) as caught:
        one_fact("hub", payload)
    assert "Field object.assignable.skillCode not informed" in caught.value.reason
    assert "type must be one of" in caught.value.reason
    assert caught.value.event_id == payload["id"]


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]"])
def test_a_payload_that_is_not_a_json_object_is_a_normalization_error(payload: bytes) -> None:
    raw = raw_event("caliper", {"id": "urn:uuid:x"})
    raw.payload = payload
    with pytest.raises(NormalizationError):
        normalize(raw, email_hash_key=KEY, keep_raw_email=False, normalizer_version=VERSION, student_key=STUDENT_KEY)


def test_an_unknown_source_is_a_normalization_error() -> None:
    with pytest.raises(NormalizationError, match="unknown source"):
        one_fact("fax", seed_activity_event())


def test_an_event_without_event_time_is_a_normalization_error() -> None:
    payload = generic_event("ViewEvent", "Viewed")
    del payload["eventTime"]
    with pytest.raises(NormalizationError, match="event time"):
        one_fact("caliper", payload)


def test_an_invalid_timeback_event_is_a_normalization_error() -> None:
    with pytest.raises(NormalizationError, match="generated"):
        one_fact("timeback", with_value(seed_activity_event(), "generated.items", [{"type": "stars", "value": 1}]))


def test_other_caliper_events_through_the_timeback_door_are_normalized_generically() -> None:
    fact = one_fact("timeback", generic_event("NavigationEvent", "NavigatedTo"))
    assert fact.source == "timeback" and fact.event_type == "NavigationEvent"
    assert fact.student_id == "https://example.edu/users/554433"


# --- generic Caliper --------------------------------------------------------------------------------------


def generic_event(event_type: str, action: str, **fields: Any) -> dict[str, Any]:
    return {"@context": CONTEXT, "id": "urn:uuid:3a9bd869-addc-48b1-80f6-a7a6fe9e1b7a", "type": event_type,
            "profile": "GeneralProfile", "actor": {"id": "https://example.edu/users/554433", "type": "Person"},
            "action": action, "object": {"id": "https://example.edu/resources/1", "type": "DigitalResource",
                                         "name": "Chapter 1"},
            "eventTime": "2023-08-15T14:12:00.000Z", "edApp": {"id": "https://example.edu", "name": "LMS"},
            "session": {"id": "https://example.edu/sessions/1", "type": "Session"},
            "group": {"id": "https://example.edu/terms/201801/courses/7/sections/1", "type": "CourseSection",
                      "name": "Section 1"}, **fields}


def test_common_caliper_fields_land_in_the_fact() -> None:
    fact = one_fact("caliper", generic_event("ViewEvent", "Viewed"))
    assert (fact.event_type, fact.action, fact.profile) == ("ViewEvent", "Viewed", "GeneralProfile")
    assert fact.event_time_ms == ms("2023-08-15T14:12:00")
    assert (fact.student_id, fact.actor_type) == ("https://example.edu/users/554433", "Person")
    assert (fact.object_id, fact.object_type, fact.object_name) == (
        "https://example.edu/resources/1", "DigitalResource", "Chapter 1")
    assert (fact.ed_app, fact.app_name) == ("https://example.edu", "LMS")
    assert fact.session_id == "https://example.edu/sessions/1"
    assert fact.group_id == "https://example.edu/terms/201801/courses/7/sections/1"
    assert fact.course_name == "Section 1"
    assert extensions(fact) == {"group": {"type": "CourseSection"}, "session": {"type": "Session"}}


def test_iri_references_are_read_as_ids() -> None:
    payload = generic_event("Event", "Created", actor="https://example.edu/users/1",
                            object="https://example.edu/x", edApp="https://example.edu",
                            session="https://example.edu/sessions/2", group="https://example.edu/groups/3")
    fact = one_fact("caliper", payload)
    assert (fact.student_id, fact.object_id, fact.ed_app, fact.session_id, fact.group_id) == (
        "https://example.edu/users/1", "https://example.edu/x", "https://example.edu",
        "https://example.edu/sessions/2", "https://example.edu/groups/3")
    assert extensions(fact) == {}


def test_a_grade_event_scores_the_assignee_of_the_attempt() -> None:
    payload = generic_event("GradeEvent", "Graded", profile="GradingProfile",
                            actor={"id": "https://example.edu/autograder", "type": "SoftwareApplication"},
                            object={"id": "https://example.edu/attempts/1", "type": "Attempt",
                                    "assignee": {"id": "https://example.edu/users/9", "type": "Person"},
                                    "assignable": {"id": "https://example.edu/assess/1", "type": "Assessment",
                                                   "name": "Quiz"},
                                    "count": 2, "startedAtTime": "2023-08-15T14:00:00Z",
                                    "endedAtTime": "2023-08-15T14:10:00Z", "duration": "PT10M"},
                            generated={"id": "https://example.edu/scores/1", "type": "Score",
                                       "scoreGiven": 8, "maxScore": 10})
    fact = one_fact("caliper", payload)
    assert fact.student_id == "https://example.edu/users/9"
    assert (fact.activity_id, fact.activity_type, fact.activity_name) == (
        "https://example.edu/assess/1", "Assessment", "Quiz")
    assert (fact.score_given, fact.max_score, fact.score_ratio, fact.attempts) == (8.0, 10.0, 0.8, 2)
    assert (fact.started_time_ms, fact.ended_time_ms) == (ms("2023-08-15T14:00:00"), ms("2023-08-15T14:10:00"))
    assert fact.total_time_seconds == 600.0
    assert (fact.actor_id, fact.actor_type) == ("https://example.edu/autograder", "SoftwareApplication")
    assert (fact.learner_role, fact.learner_type) == ("assignee", "Person")
    assert (fact.generated_id, fact.generated_type) == ("https://example.edu/scores/1", "Score")


def test_an_assessment_event_reads_its_attempt() -> None:
    payload = generic_event("AssessmentEvent", "Submitted", profile="AssessmentProfile",
                            generated={"id": "https://example.edu/attempts/2", "type": "Attempt", "count": 3,
                                       "assignable": {"id": "https://example.edu/assess/2", "type": "Assessment"},
                                       "startedAtTime": "2023-08-15T14:00:00Z", "duration": "PT1H"})
    fact = one_fact("caliper", payload)
    assert (fact.attempts, fact.activity_id, fact.total_time_seconds) == (3, "https://example.edu/assess/2", 3600.0)


def test_an_assessment_item_event_reads_its_assessment() -> None:
    payload = generic_event("AssessmentItemEvent", "Completed", profile="AssessmentProfile",
                            object={"id": "https://example.edu/items/3", "type": "AssessmentItem",
                                    "isPartOf": {"id": "https://example.edu/assess/3", "type": "Assessment",
                                                 "name": "Unit test"}},
                            generated={"id": "https://example.edu/responses/1", "type": "Response",
                                       "attempt": {"id": "https://example.edu/attempts/3", "count": 1}})
    fact = one_fact("caliper", payload)
    assert (fact.object_type, fact.activity_id, fact.activity_name, fact.attempts) == (
        "AssessmentItem", "https://example.edu/assess/3", "Unit test", 1)


def test_navigation_and_tool_use_events_read_their_target() -> None:
    for event_type, action in (("NavigationEvent", "NavigatedTo"), ("ToolUseEvent", "Used")):
        payload = generic_event(event_type, action, target={"id": "https://example.edu/pages/4",
                                                            "type": "Frame", "name": "Page 4"})
        fact = one_fact("caliper", payload)
        assert (fact.activity_id, fact.activity_type, fact.activity_name) == (
            "https://example.edu/pages/4", "Frame", "Page 4")


def test_a_session_event_about_the_session_names_it() -> None:
    payload = generic_event("SessionEvent", "TimedOut", profile="SessionProfile",
                            object={"id": "https://example.edu/sessions/77", "type": "Session"})
    del payload["session"]
    fact = one_fact("caliper", payload)
    assert fact.session_id == "https://example.edu/sessions/77" and fact.object_type == "Session"


def test_any_other_event_type_uses_the_general_conversion() -> None:
    fact = one_fact("caliper", generic_event("AnnotationEvent", "Bookmarked", profile="AnnotationProfile"))
    assert (fact.event_type, fact.action, fact.object_id) == (
        "AnnotationEvent", "Bookmarked", "https://example.edu/resources/1")


def test_an_entity_yields_no_fact_and_no_error() -> None:
    entity = {"@context": CONTEXT, "id": "https://example.edu/users/554433", "type": "Person", "name": "Ana"}
    assert normalize(raw_event("caliper", entity), email_hash_key=KEY, keep_raw_email=False,
                     normalizer_version=VERSION, student_key=STUDENT_KEY) == []


def test_an_entity_of_another_vocabulary_named_like_an_event_yields_no_fact() -> None:
    """The gateway accepts an entity of another vocabulary whose type ends in "Event" (a list @context naming it) and
    counts it as an entity in the job; the worker, with a rule of its own (any ``*Event`` type), took it for an event
    and dead-lettered it for lacking an actor. One rule (``schemas.caliper.is_event``) now decides for both."""
    entity = {"@context": ["https://schema.org/docs/jsonldcontext.json", "http://purl.imsglobal.org/ctx/caliper/v1p1"],
              "id": "urn:uuid:6e5b4c3a-1d2f-4a5b-8c7d-9e0f1a2b3c4d", "type": "ReviewEvent", "name": "peer review"}
    assert validate_envelope({"sensor": "https://example.edu/sensor", "sendTime": "2024-04-24T14:00:00.000Z",
                              "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1", "data": [entity]}) == []
    assert not is_event(entity)
    assert normalize(raw_event("caliper", entity), email_hash_key=KEY, keep_raw_email=False,
                     normalizer_version=VERSION, student_key=STUDENT_KEY) == []


@pytest.mark.parametrize(("text", "seconds"), [("PT10M", 600.0), ("PT1H2M3.5S", 3723.5), ("P1DT1S", 86401.0),
                                               ("42", 42.0), (7, 7.0), ("P", None), ("soon", None)])
def test_durations_are_read_as_seconds(text: Any, seconds: float | None) -> None:
    assert duration_seconds(text) == seconds


# --- properties -------------------------------------------------------------------------------------------

numbers = st.one_of(st.integers(0, 10_000), st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
                    st.integers(0, 10_000).map(str))
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))
timestamps = st.one_of(moments.map(lambda d: d.isoformat()), moments.map(lambda d: d.isoformat() + "Z"),
                       moments.map(lambda d: (d.replace(tzinfo=UTC) - timedelta(hours=3)).astimezone(
                           UTC).isoformat()))
activity_items = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["xpEarned", "totalQuestions", "correctQuestions", "masteredUnits"]),
    "value": numbers}), max_size=6)
time_items = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["active", "inactive", "waste", "unknown", "anti-pattern"]), "value": numbers},
    optional={"subType": st.text(max_size=8), "startDate": timestamps, "endDate": timestamps}), max_size=6)


@st.composite
def timeback_events(draw: st.DrawFn) -> dict[str, Any]:
    event = seed_activity_event()
    event["id"] = f"urn:uuid:{draw(st.uuids())}"
    event["eventTime"] = draw(timestamps)
    event["actor"]["email"] = draw(st.emails())
    event["object"]["subject"] = draw(st.sampled_from(["Science", "Math", "Reading", "Language", "None"]))
    if draw(st.booleans()):
        event["generated"]["items"] = draw(activity_items)
    else:
        event["type"], event["action"] = "TimeSpentEvent", "SpentTime"
        event["generated"] = {"id": "https://x.example/c/1", "type": "TimebackTimeSpentMetricsCollection",
                              "items": draw(time_items)}
    if draw(st.booleans()):
        event["extensions"] = draw(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(-(2**53), 2**53),
                                                        max_size=3))
    return event


@settings(max_examples=examples(EXPENSIVE))
@given(timeback_events())
def test_any_valid_timeback_event_normalizes_deterministically(event: dict[str, Any]) -> None:
    first = one_fact("timeback", event)
    again = one_fact("timeback", copy.deepcopy(event))
    assert first == again
    assert first.event_id == event["id"] and first.student_id == USER
    columns = {"xpEarned": "xp_earned", "totalQuestions": "total_questions",
               "correctQuestions": "correct_questions", "masteredUnits": "mastered_units",
               "active": "seconds_active", "inactive": "seconds_inactive", "waste": "seconds_waste",
               "unknown": "seconds_unknown", "anti-pattern": "seconds_anti_pattern"}
    for metric, column in columns.items():
        expected = sum(float(item["value"]) for item in event["generated"]["items"] if item["type"] == metric)
        assert getattr(first, column) == pytest.approx(expected)
    if event.get("extensions"):
        assert extensions(first)["extensions"] == event["extensions"]


def test_every_timeback_metric_type_has_its_column_and_no_other() -> None:
    """The metric types are defined once (``schemas.caliper.terms``); the normalizer's columns follow them."""
    from schemas.caliper.terms import TIMEBACK_ACTIVITY_METRIC_TYPES, TIMEBACK_TIME_SPENT_METRIC_TYPES
    from streams.normalizers.timeback import METRIC_COLUMNS

    assert set(METRIC_COLUMNS) == TIMEBACK_ACTIVITY_METRIC_TYPES | TIMEBACK_TIME_SPENT_METRIC_TYPES
