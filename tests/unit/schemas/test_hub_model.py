"""The hub event model (seed 003): required fields, accepted values, tolerant readings, every problem reported."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from seed_payloads import STUDENT_URN, seed_hub_event, with_value, without

from schemas.errors import FieldProblem
from schemas.hub import REQUIRED_PATHS, HubEvent, validate_hub_event


def test_the_seed_example_is_valid_and_typed() -> None:
    event, problems = validate_hub_event(seed_hub_event())
    assert problems == []
    assert isinstance(event, HubEvent)
    assert event.object.assignable.skill_code == "EF05MA01"
    assert event.object.assignee.id == STUDENT_URN
    assert event.object.total_time == 372
    assert event.object.finished is True
    assert event.object.last_time == datetime(2022, 7, 19, 19, 36, 12, 117000, tzinfo=UTC)
    assert event.generated is not None and event.generated.trys == 2
    assert event.object.assignable.is_part_of is not None and event.object.assignable.is_part_of.id == 6


@pytest.mark.parametrize("path", REQUIRED_PATHS)
def test_a_missing_required_field_is_named_by_its_contract_path(path: str) -> None:
    event, problems = validate_hub_event(without(seed_hub_event(), path))
    assert event is None
    assert problems == [FieldProblem(path, f"Field {path} not informed", missing=True)]


@pytest.mark.parametrize("path", ["object.assignable.skillCode", "object.totalTime", "edApp", "actor.host"])
def test_a_null_required_field_is_not_informed(path: str) -> None:
    _, problems = validate_hub_event(with_value(seed_hub_event(), path, None))
    assert problems == [FieldProblem(path, f"Field {path} not informed", missing=True)]


def test_a_missing_parent_names_each_required_field_below_it() -> None:
    _, problems = validate_hub_event(without(seed_hub_event(), "object.assignee"))
    assert [(p.path, p.missing) for p in problems] == [
        ("object.assignee.id", True), ("object.assignee.type", True)]


@pytest.mark.parametrize("path", [
    "object.assignable.extension", "object.assignable.isPartOf", "object.assignable.frequency_assigned",
    "object.endedAtTime", "object.lastTime", "object.percentReading", "object.completionType",
    "object.finished", "generated", "generated.type", "generated.maxScore", "generated.scoreGiven",
    "generated.proficiencyLevel", "generated.trys",
])
def test_optional_fields_may_be_left_out(path: str) -> None:
    event, problems = validate_hub_event(without(seed_hub_event(), path))
    assert problems == [] and event is not None


@pytest.mark.parametrize(("path", "value", "accepted"), [
    ("type", "OutcomeEvent", "GradeEvent, ViewEvent, GradeViewEvent"),
    ("profile", "AssessmentProfile", "GradingProfile, ReadingProfile, ReadingGradingProfile"),
    ("action", "Completed", "Viewed, Graded, ViewdGraded"),
    ("object.type", "Listen", "Attempt, Reading, Reading/Listen"),
    ("object.assignee.type", "Group", "Person"),
    ("object.assignable.type", "Quiz", "Activity, Book Activity"),
    ("object.assignable.isPartOf.type", "Course", "Subject, GroupStudy, Task"),
    ("object.completionType", "DONE", "SUCCESSFULL, FAILURE, ONGOING, EXTRA, CANCEL"),
    ("generated.type", "Result", "Score"),
])
def test_a_value_outside_the_accepted_ones_names_field_and_accepted_values(
        path: str, value: str, accepted: str) -> None:
    _, problems = validate_hub_event(with_value(seed_hub_event(), path, value))
    assert len(problems) == 1
    assert problems[0].path == path and not problems[0].missing
    assert problems[0].message.startswith(f"{path} must be one of: {accepted}")
    assert repr(value) not in problems[0].message  # the field and the rule, never the value


@pytest.mark.parametrize(("path", "value"), [
    ("object.assignable.skillCode", "EF05XX01"),
    ("object.assignable.skillCode", "MA01"),
    ("object.assignee.id", "12345"),
    ("edApp", "https://edtech.example.com"),
    ("id", "12c05c4e-253f-4073-9f29-5786f3ff3f36"),
    ("actor.host", "not a url"),
    ("@context", "http://purl.imsglobal.org/ctx/caliper/v1p1"),
    ("object.totalTime", "ten minutes"),
    ("object.totalTime", 1.5),
    ("object.finished", "maybe"),
    ("object.startedAtTime", "yesterday"),
    ("generated.scoreGiven", "seven"),
    ("generated.trys", -1),
    ("object.percentReading", "half"),
])
def test_a_malformed_value_is_reported_on_its_path(path: str, value: Any) -> None:
    _, problems = validate_hub_event(with_value(seed_hub_event(), path, value))
    assert [p.path for p in problems] == [path]
    assert problems[0].message.startswith(path)


def test_every_problem_is_reported_not_only_the_first() -> None:
    payload = without(seed_hub_event(), "object.assignable.skillCode")
    payload = with_value(payload, "type", "Nope")
    payload = with_value(payload, "object.finished", "perhaps")
    payload = without(payload, "edApp")
    _, problems = validate_hub_event(payload)
    assert {(p.path, p.missing) for p in problems} == {
        ("object.assignable.skillCode", True), ("type", False), ("object.finished", False), ("edApp", True)}


@pytest.mark.parametrize(("sent", "read"), [
    (True, True), (False, False), ("True", True), ("true", True), ("TRUE", True), ("FALSE", False),
    ("false", False)])
def test_finished_accepts_booleans_in_any_spelling(sent: Any, read: bool) -> None:
    event, _ = validate_hub_event(with_value(seed_hub_event(), "object.finished", sent))
    assert event is not None and event.object.finished is read


@pytest.mark.parametrize("action", ["ViewdGraded", "ViewedGraded"])
def test_both_spellings_of_viewed_graded_are_accepted(action: str) -> None:
    event, _ = validate_hub_event(with_value(seed_hub_event(), "action", action))
    assert event is not None and event.action == "ViewedGraded"


def test_values_are_read_tolerantly_and_normalized() -> None:
    payload = seed_hub_event()
    payload["object"]["assignable"]["skillCode"] = " ef15lp01 "
    payload["object"]["totalTime"] = "372"
    payload["object"]["completionType"] = "failure"
    payload["object"]["assignee"]["id"] = STUDENT_URN.upper().replace("URN:UUID:", "urn:uuid:")
    payload["object"]["startedAtTime"] = "2022-07-19T16:30:00-03:00"
    payload["generated"]["scoreGiven"] = "7.5"
    payload["object"]["assignable"]["isPartOf"]["id"] = "LP"
    event, problems = validate_hub_event(payload)
    assert problems == [] and event is not None
    assert event.object.assignable.skill_code == "EF15LP01"
    assert event.object.total_time == 372
    assert event.object.completion_type == "FAILURE"
    assert event.object.assignee.id == STUDENT_URN
    assert event.object.started_at_time == datetime(2022, 7, 19, 19, 30, tzinfo=UTC)
    assert event.generated is not None and event.generated.score_given == 7.5
    assert event.object.assignable.is_part_of is not None and event.object.assignable.is_part_of.id == "LP"


def test_offsetless_times_are_utc() -> None:
    event, _ = validate_hub_event(with_value(seed_hub_event(), "object.dateCreated", "2022-07-19T19:36:12.117"))
    assert event is not None
    assert event.object.date_created == datetime(2022, 7, 19, 19, 36, 12, 117000, tzinfo=UTC)


@pytest.mark.parametrize("context", [
    "http://purl.imsglobal.org/ctx/caliper/v1p2",
    ["https://example.edu/ctx/extra.jsonld", "http://purl.imsglobal.org/ctx/caliper/v1p2"],
])
def test_context_is_the_v1p2_context_or_an_array_ending_with_it(context: Any) -> None:
    event, problems = validate_hub_event(with_value(seed_hub_event(), "@context", context))
    assert problems == [] and event is not None


def test_an_array_context_not_ending_with_v1p2_is_rejected() -> None:
    _, problems = validate_hub_event(with_value(
        seed_hub_event(), "@context", ["http://purl.imsglobal.org/ctx/caliper/v1p2", "https://example.edu/ctx"]))
    assert [p.path for p in problems] == ["@context"]


def test_unknown_fields_are_kept() -> None:
    payload = seed_hub_event()
    payload["school"] = {"inep": "35012345"}
    payload["object"]["assignable"]["difficulty"] = "hard"
    event, problems = validate_hub_event(payload)
    assert problems == [] and event is not None
    dumped = event.model_dump(by_alias=True, exclude_unset=True)
    assert dumped["school"] == {"inep": "35012345"}
    assert dumped["object"]["assignable"]["difficulty"] == "hard"
    assert dumped["object"]["assignable"]["skillCode"] == "EF05MA01"


@pytest.mark.parametrize("payload", [None, [], "event", 3])
def test_a_payload_that_is_not_an_object_is_one_problem(payload: object) -> None:
    event, problems = validate_hub_event(payload)
    assert event is None and len(problems) == 1 and not problems[0].missing


def test_an_object_field_given_as_a_string_is_reported_as_such() -> None:
    _, problems = validate_hub_event(with_value(seed_hub_event(), "actor", "https://edtech.example.com.br"))
    assert problems == [FieldProblem("actor", "actor must be a JSON object")]
