"""Acknowledge only what can load: every limit a later stage enforces is checked by the
validators the gateway calls, and each violation is a problem naming the field.

Each ``test_defect_*`` is a regression test for a defect found on the running stack: the event was acknowledged
(the validator returned no problem) and then dead-lettered or loaded wrong. The other tests pin the bounds of
``schemas.limits`` at their edges, the configurable event-time window, the null and decimal readings of the
Caliper path and the single problem type.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from caliper_corpus import wrap
from seed_payloads import seed_activity_event, seed_hub_event, with_value

import schemas.caliper
from schemas.caliper import check_envelope, drop_optional_nulls, validate_caliper_item, validate_envelope
from schemas.coerce import coerce_int, datetime_to_ms, parse_time, time_to_ms
from schemas.errors import FieldProblem
from schemas.hub import validate_hub_event
from schemas.limits import DEFAULT_LIMITS, INT64_MAX, STORAGE_LIMITS, ValidationLimits
from schemas.timeback import TimebackActivityEvent, validate_timeback_event

CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
NUL = "\x00"


def activity() -> dict[str, Any]:
    """The Timeback seed ActivityEvent as the gateway accepts it (the seed's email is a web page's placeholder)."""
    return with_value(seed_activity_event(), "actor.email", "student@example.edu")


def grade_event() -> dict[str, Any]:
    """A generic Caliper GradeEvent with an Attempt (count, duration) and a Score."""
    return {
        "@context": CONTEXT, "id": "urn:uuid:a1b2c3d4-0000-4000-8000-000000000001", "type": "GradeEvent",
        "profile": "GradingProfile", "actor": {"id": "https://example.edu/autograder", "type": "SoftwareApplication"},
        "action": "Graded",
        "object": {"id": "https://example.edu/attempts/1", "type": "Attempt", "count": 1,
                   "assignee": {"id": "https://example.edu/users/554433", "type": "Person"},
                   "assignable": {"id": "https://example.edu/assess/1", "type": "Assessment"},
                   "startedAtTime": "2024-03-01T10:00:00.000Z", "endedAtTime": "2024-03-01T10:30:00.000Z",
                   "duration": "PT30M"},
        "eventTime": "2024-03-01T10:31:00.000Z",
        "generated": {"id": "https://example.edu/attempts/1/score", "type": "Score",
                      "attempt": "https://example.edu/attempts/1", "maxScore": 15.0, "scoreGiven": 10.0},
    }


def envelope_problems(item: dict[str, Any], **options: Any) -> list[FieldProblem]:
    return validate_envelope(wrap(item), **options)


def paths(problems: list[FieldProblem]) -> list[str]:
    return [problem.path for problem in problems]


def test_the_unchanged_payloads_are_accepted() -> None:
    assert envelope_problems(activity()) == []
    assert envelope_problems(grade_event()) == []
    assert validate_hub_event(seed_hub_event())[1] == []


# --- each was acknowledged, then could not load -----------------------------


@pytest.mark.parametrize("path", ["generated.trys", "object.assignable.frequency_assigned"])
@pytest.mark.parametrize("value", [2**63, 2**64 - 1, "9223372036854775808"])
def test_defect_hub_integer_above_int64_is_refused_naming_the_field(path: str, value: object) -> None:
    event, problems = validate_hub_event(with_value(seed_hub_event(), path, value))
    assert event is None and paths(problems) == [path]
    assert "64-bit" in problems[0].message


def test_hub_integer_at_the_int64_bound_is_accepted() -> None:
    event, problems = validate_hub_event(with_value(seed_hub_event(), "generated.trys", INT64_MAX))
    assert problems == [] and event is not None and event.generated is not None
    assert event.generated.trys == INT64_MAX  # exact: not read through a float


@pytest.mark.parametrize(("path", "value"), [
    ("object.count", 2**63), ("object.count", -(2**63) - 1), ("object.count", 1e19),
    ("object.assignable.maxAttempts", 2**63),
])
def test_defect_caliper_integer_above_int64_is_refused(path: str, value: object) -> None:
    assert paths(envelope_problems(with_value(grade_event(), path, value))) == [f"data[0].{path}"]


@pytest.mark.parametrize("moment", ["2024-02-30T10:00:00.000Z", "2023-02-29T10:00:00Z", "2024-04-31T00:00:00Z",
                                    "2023-12-31T23:59:60Z"])
def test_defect_impossible_date_is_refused(moment: str) -> None:
    """2024-02-30 matched the date-time pattern and was acknowledged; the normalizer could not read it."""
    problems = envelope_problems(with_value(activity(), "eventTime", moment))
    assert paths(problems) == ["data[0].eventTime"]
    assert "real calendar date" in problems[0].message
    assert paths(envelope_problems(with_value(grade_event(), "object.startedAtTime", moment))) == [
        "data[0].object.startedAtTime"]


@pytest.mark.parametrize("value", [1e308, -1e308, 1.7976931348623157e308, 1e16])
def test_defect_huge_numbers_are_refused(value: float) -> None:
    """1e308 was accepted: sums of a Float64 column became inf."""
    assert paths(envelope_problems(with_value(grade_event(), "generated.scoreGiven", value))) == [
        "data[0].generated.scoreGiven"]
    event = activity()
    event["generated"]["items"][0]["value"] = value
    assert paths(envelope_problems(event)) == ["data[0].generated.items[0].value"]
    event["generated"]["items"][0]["value"] = repr(value)  # a numeric string reads the same
    assert paths(envelope_problems(event)) == ["data[0].generated.items[0].value"]
    assert paths(validate_hub_event(with_value(seed_hub_event(), "generated.scoreGiven", value))[1]) == [
        "generated.scoreGiven"]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1e400"])
def test_non_finite_numbers_are_refused(value: object) -> None:
    assert paths(envelope_problems(with_value(grade_event(), "generated.maxScore", value))) == [
        "data[0].generated.maxScore"]
    event = activity()
    event["generated"]["items"][0]["value"] = value
    assert paths(envelope_problems(event)) == ["data[0].generated.items[0].value"]


@pytest.mark.parametrize(("path", "value"), [
    ("id", f"urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594{NUL}"),
    ("actor.id", f"https://api.example/users/1{NUL}2"),
    ("object.id", f"https://api.example/r/{NUL}"),
    ("object.app.name", f"Power{NUL}Path"),
    ("object.course.name", "Reading\x1bG3"),
])
def test_defect_nul_and_control_characters_in_ids_and_names_are_refused(path: str, value: str) -> None:
    problems = envelope_problems(with_value(activity(), path, value))
    assert paths(problems) == [f"data[0].{path}"]
    assert "control character" in problems[0].message


def test_nul_in_the_sensor_and_in_hub_ids_is_refused() -> None:
    assert paths(validate_envelope({**wrap(activity()), "sensor": f"https://example.edu/s{NUL}"})) == ["sensor"]
    for path in ["object.assignable.id", "actor.host", "object.assignable.extension.name"]:
        _, problems = validate_hub_event(with_value(seed_hub_event(), path, f"https://x.example/a{NUL}b"))
        assert paths(problems) == [path], path


def test_tab_cr_lf_and_unicode_are_allowed_in_names() -> None:
    assert envelope_problems(with_value(activity(), "object.app.name", "Power\tPath\r\nUI — ação ✓ 漢字")) == []


@pytest.mark.parametrize("moment", ["1950-06-01T00:00:00Z", "1962-12-31T23:59:59Z", "1969-12-31T23:59:59.999Z"])
def test_defect_event_time_before_1970_is_refused(moment: str) -> None:
    problems = envelope_problems(with_value(activity(), "eventTime", moment))
    assert paths(problems) == ["data[0].eventTime"] and "event-time window" in problems[0].message
    _, problems = validate_hub_event(with_value(seed_hub_event(), "object.dateCreated", moment))
    assert paths(problems) == ["object.dateCreated"]


def test_defect_an_envelope_spanning_more_than_100_months_is_refused() -> None:
    """One envelope's events over 101 months made ClickHouse refuse the insert ("Too many partitions")."""
    events = []
    for month in range(101):
        event = activity()
        event["id"] = f"urn:uuid:00000000-0000-4000-8000-{month:012d}"
        event["eventTime"] = f"{2010 + month // 12}-{month % 12 + 1:02d}-15T12:00:00Z"
        events.append(event)
    envelope = {**wrap(events[0]), "data": events}
    problems = validate_envelope(envelope)
    assert paths(problems) == ["data"] and "101 distinct months" in problems[0].message
    assert validate_envelope({**envelope, "data": events[:100]}) == []


def test_defect_deep_nesting_is_a_problem_not_a_recursion_error() -> None:
    document: dict[str, Any] = {"id": "https://example.edu/doc/0", "type": "Document"}
    node = document
    for level in range(1, 1000):
        node["isPartOf"] = {"id": f"https://example.edu/doc/{level}", "type": "Document"}
        node = node["isPartOf"]
    event = with_value(grade_event(), "generated", None)
    event.update(type="ViewEvent", profile="ReadingProfile", action="Viewed",
                 actor={"id": "https://example.edu/users/1", "type": "Person"}, object=document)
    del event["generated"]
    problems = validate_envelope(wrap(event))
    assert len(problems) == 1 and "nested more than 64 levels" in problems[0].message
    assert problems[0].path.startswith("data[0].object.isPartOf.isPartOf")
    hub = with_value(seed_hub_event(), "object.assignable.extension", {"deep": document})
    _, problems = validate_hub_event(hub)
    assert len(problems) == 1 and "nested more than 64 levels" in problems[0].message


def test_defect_null_action_is_refused() -> None:
    """``"action": null`` was accepted although action is required."""
    assert paths(envelope_problems(with_value(grade_event(), "action", None))) == ["data[0].action"]


def test_defect_a_time_offset_beyond_year_one_is_a_problem_not_an_exception() -> None:
    """The hub answered 500: the offset moved the time before year 1 (OverflowError)."""
    _, problems = validate_hub_event(with_value(seed_hub_event(), "object.lastTime", "0001-01-01T00:00:00+01:00"))
    assert paths(problems) == ["object.lastTime"]
    assert parse_time("9999-12-31T23:59:59-01:00") is None


def test_defect_huge_duration_is_refused() -> None:
    """``PT`` followed by 400 digits was accepted and became an infinite total_time_seconds."""
    assert paths(envelope_problems(with_value(grade_event(), "object.duration", "P" + "9" * 400 + "D"))) == [
        "data[0].object.duration"]
    assert paths(envelope_problems(with_value(grade_event(), "object.duration", "PT1000000000000000000S"))) == [
        "data[0].object.duration"]
    assert envelope_problems(with_value(grade_event(), "object.duration", "P1Y2M3W4DT5H6M7.5S")) == []


@pytest.mark.parametrize(("path", "value"), [
    ("id", "https://app.example/events/1"),  # the Timeback model (the normalizer) wants a urn:uuid
    ("generated.items", [{"type": "active", "value": -5}]),  # time spent is never negative
])
def test_defect_timeback_event_the_normalizer_refuses_is_refused_at_the_door(path: str, value: object) -> None:
    event = activity()
    event.update(type="TimeSpentEvent", action="SpentTime",
                 generated={"id": "https://app.example/metrics/1", "type": "TimebackTimeSpentMetricsCollection",
                            "items": [{"type": "active", "value": 5}]})
    assert envelope_problems(event) == []
    changed = with_value(event, path, value)
    expected = "data[0].id" if path == "id" else "data[0].generated.items[0].value"
    assert paths(envelope_problems(changed)) == [expected]


def test_defect_timeback_inline_context_object_is_read_by_the_model() -> None:
    """The Caliper rules accept an inline @context object; the normalizer's model refused it."""
    event = with_value(activity(), "@context", {"@vocab": CONTEXT})
    assert envelope_problems(event) == []
    assert TimebackActivityEvent.model_validate(event).context == {"@vocab": CONTEXT}


def test_defect_time_to_ms_is_exact() -> None:
    """``timestamp() * 1000`` lost a millisecond for about one time in 160 (2038-11-27T03:21:08.733 -> ...732)."""
    assert time_to_ms("2038-11-27T03:21:08.733Z") == 2_174_440_868_733
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for step in range(0, 5_000_000_000, 1_234_567):
        moment = start + timedelta(milliseconds=step)
        assert time_to_ms(moment.isoformat(timespec="milliseconds")) == datetime_to_ms(moment) == (
            1_577_836_800_000 + step)


def test_coerce_int_is_exact() -> None:
    assert coerce_int(2**63 - 1) == 2**63 - 1 and coerce_int("9223372036854775807") == 2**63 - 1
    assert coerce_int(12.0) == 12 and coerce_int(" 12 ") == 12 and coerce_int(12.5) is None
    assert coerce_int(True) is None and coerce_int(10**400) == 10**400


# --- the bounds at their edges --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "accepted"), [
    (0, True), (0.0, True), (1e15, True), (-1e15, True), (1e15 + 1, False), (1e-100, True), (-1e-100, True),
    (9.9e-101, False), (5e-324, False), (10**15, True), (10**15 + 1, False), (5.551115123125783e-17, True),
])
def test_number_bounds(value: float, accepted: bool) -> None:
    problems = envelope_problems(with_value(grade_event(), "generated.scoreGiven", value))
    assert (problems == []) is accepted, problems


def test_event_time_window_edges_and_configuration() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def accepted(moment: str, limits: ValidationLimits = DEFAULT_LIMITS) -> bool:
        return envelope_problems(with_value(activity(), "eventTime", moment), limits=limits, now=now) == []

    assert accepted("1970-01-01T00:00:00.000Z") and not accepted("1969-12-31T23:59:59.999Z")
    assert accepted("2026-06-02T12:00:00Z") and not accepted("2026-06-02T12:00:00.001Z")
    assert accepted("2026-06-02T09:00:00-03:00") and not accepted("2026-06-02T09:00:01-03:00")
    wider = ValidationLimits(earliest_time=datetime(1950, 1, 1, tzinfo=UTC), max_future=timedelta(days=30))
    assert accepted("1950-06-01T00:00:00Z", wider) and accepted("2026-06-30T00:00:00Z", wider)
    assert not accepted("1949-12-31T23:59:59Z", wider)
    problems = envelope_problems(with_value(activity(), "eventTime", "2030-01-01T00:00:00Z"), now=now)
    assert problems[0].message.startswith(
        "must be between 1970-01-01T00:00:00Z and 2026-06-02T12:00:00Z (event-time window)")


@pytest.mark.parametrize("path", ["object.startedAtTime", "object.endedAtTime", "generated.endedAtTime",
                                  "object.dateCreated", "generated.dateCreated"])
def test_every_time_a_fact_is_dated_by_is_windowed(path: str) -> None:
    event = with_value(grade_event(), "generated", {"id": "https://example.edu/result/1", "type": "Result",
                                                    "attempt": "https://example.edu/attempts/1"})
    assert paths(envelope_problems(with_value(event, path, "1960-01-01T00:00:00Z"))) == [f"data[0].{path}"]
    assert paths(validate_envelope({**wrap(event), "sendTime": "1960-01-01T00:00:00Z"})) == ["sendTime"]


def test_times_that_date_nothing_need_only_be_real() -> None:
    resource = {"id": "https://example.edu/assign/1", "type": "AssignableDigitalResource",
                "datePublished": "1955-01-01T00:00:00Z", "dateToSubmit": "2099-01-01T00:00:00Z"}
    assert validate_caliper_item(resource) == []
    assert paths(validate_caliper_item({**resource, "dateToSubmit": "2099-02-29T00:00:00Z"})) == ["dateToSubmit"]


def test_hub_window_is_configurable_and_storage_limits_take_any_storable_time() -> None:
    old = with_value(seed_hub_event(), "object.startedAtTime", "1950-01-01T00:00:00Z")
    assert paths(validate_hub_event(old)[1]) == ["object.startedAtTime"]
    assert validate_hub_event(old, STORAGE_LIMITS)[1] == []
    assert validate_timeback_event(with_value(activity(), "eventTime", "1950-01-01T00:00:00Z"))[1] != []
    assert validate_timeback_event(with_value(activity(), "eventTime", "1950-01-01T00:00:00Z"), STORAGE_LIMITS)[1] == []
    # a model read without a context (as the normalizers read) applies STORAGE_LIMITS
    assert TimebackActivityEvent.model_validate(with_value(activity(), "eventTime", "1901-01-01T00:00:00Z"))


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ValidationLimits(earliest_time=datetime(1970, 1, 1))
    with pytest.raises(ValueError, match="max_months_per_envelope"):
        ValidationLimits(max_months_per_envelope=101)


# --- JSON integers for decimal properties -----------------------------------------------------


def test_integers_are_accepted_for_decimal_properties_unless_strict() -> None:
    event = with_value(grade_event(), "generated.maxScore", 10)
    assert envelope_problems(event) == []
    problems = envelope_problems(event, strict_decimals=True)
    assert paths(problems) == ["data[0].generated.maxScore"] and "with a fraction" in problems[0].message


# --- Null on an optional property -------------------------------------------------------------


def reference_sensor_event() -> dict[str, Any]:
    """A GradeEvent as caliper-python 1.2 writes it with its default (non-"optimized") serialization: every
    property it knows, unset ones as null."""
    event = grade_event()
    event.update({"edApp": None, "group": None, "membership": None, "session": None, "federatedSession": None,
                  "referrer": None, "target": None, "extensions": None})
    event["actor"].update({"name": None, "description": None, "dateCreated": None, "dateModified": None,
                           "extensions": None, "version": None, "host": None})
    event["object"].update({"name": None, "description": None, "isPartOf": None, "dateModified": None})
    event["generated"].update({"comment": None, "scoredBy": None, "description": None})
    return event


def test_null_on_optional_properties_is_accepted_and_dropped() -> None:
    sent = wrap(reference_sensor_event())
    original = copy.deepcopy(sent)
    problems, published = check_envelope(sent)
    assert problems == []
    assert sent == original  # the payload passed in is not changed
    assert published == wrap(grade_event())  # every optional null is gone, nothing else
    assert drop_optional_nulls(sent) == published
    plain = wrap(grade_event())
    assert check_envelope(plain).payload is plain  # nothing to drop: the very object


@pytest.mark.parametrize("path", ["id", "actor", "object", "eventTime", "action", "generated.attempt",
                                  "object.assignee.type"])
def test_null_on_a_required_property_is_still_refused(path: str) -> None:
    problems = envelope_problems(with_value(reference_sensor_event(), path, None))
    assert paths(problems) == [f"data[0].{path}"]
    assert "null" in problems[0].message


def test_null_profile_is_absent_unless_required() -> None:
    assert envelope_problems(with_value(grade_event(), "profile", None)) == []
    assert paths(envelope_problems(with_value(activity(), "profile", None))) == ["data[0].profile"]


def test_unknown_properties_sent_as_null_are_kept() -> None:
    event = with_value(grade_event(), "vendorField", None)
    problems, published = check_envelope(wrap(event))
    assert problems == [] and published["data"][0]["vendorField"] is None


# --- One problem type ---------------------------------------------------------------------------------


def test_every_validator_reports_field_problems() -> None:
    assert not hasattr(schemas.caliper, "FieldError")
    caliper = envelope_problems(with_value(grade_event(), "generated.scoreGiven", 1e308))
    hub = validate_hub_event(with_value(seed_hub_event(), "generated.trys", 2**64))[1]
    timeback = validate_timeback_event(with_value(activity(), "eventTime", "1950-01-01T00:00:00Z"))[1]
    assert all(type(problem) is FieldProblem for problem in [*caliper, *hub, *timeback])
