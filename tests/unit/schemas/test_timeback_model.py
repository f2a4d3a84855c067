"""The TimebackProfile event models (seed 000, timeback-events-api.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from seed_payloads import USER, seed_activity_event

from schemas.timeback import (
    TimebackActivityEvent,
    TimebackTimeSpentEvent,
    is_timeback_event,
    parse_timeback_event,
    validate_timeback_event,
)


def time_spent_event() -> dict[str, Any]:
    event = seed_activity_event()
    event.update(type="TimeSpentEvent", action="SpentTime", generated={
        "id": "https://your-app-url.com/ims/metrics/collections/time/1",
        "type": "TimebackTimeSpentMetricsCollection",
        "items": [
            {"type": "active", "value": "120.5", "subType": "reading", "startDate": "2024-04-24T14:00:00",
             "endDate": "2024-04-24T14:10:00Z"},
            {"type": "anti-pattern", "value": 30},
        ],
    })
    return event


def test_the_seed_activity_event_gives_typed_access() -> None:
    event = TimebackActivityEvent.model_validate(seed_activity_event())
    assert event.actor.id == USER and event.actor.email == "[email protected]"
    assert event.object.subject == "Reading"
    assert event.object.app.name == "PowerPath UI"
    assert event.object.course is not None and event.object.course.name == "Reading G3"
    assert event.object.activity is not None and event.object.activity.name == "Answered quiz"
    assert event.generated.items[0].type == "xpEarned" and event.generated.items[0].value == 100.0
    assert event.event_time == datetime(2024, 4, 24, 14, 12, tzinfo=UTC)


def test_time_spent_metrics_read_numeric_strings_and_offsetless_dates() -> None:
    event = TimebackTimeSpentEvent.model_validate(time_spent_event())
    active, anti = event.generated.items
    assert active.value == 120.5 and active.sub_type == "reading"
    assert active.start_date == datetime(2024, 4, 24, 14, 0, tzinfo=UTC)
    assert active.end_date == datetime(2024, 4, 24, 14, 10, tzinfo=UTC)
    assert anti.type == "anti-pattern" and anti.value == 30.0


@pytest.mark.parametrize("ed_app", ["https://alpharead.alpha.school", {"id": "https://x.example", "name": "X"}])
def test_references_may_be_an_iri_or_an_object(ed_app: Any) -> None:
    payload = seed_activity_event()
    payload["edApp"] = ed_app
    payload["session"] = "https://x.example/sessions/1"
    assert TimebackActivityEvent.model_validate(payload).ed_app == ed_app


def test_unknown_fields_are_kept() -> None:
    payload = seed_activity_event()
    payload["actor"]["grade"] = 3
    payload["generated"]["items"][0]["extensions"] = {"streak": 4}
    payload["custom"] = True
    dumped = TimebackActivityEvent.model_validate(payload).model_dump(by_alias=True, exclude_unset=True)
    assert dumped["actor"]["grade"] == 3 and dumped["custom"] is True
    assert dumped["generated"]["items"][0]["extensions"] == {"streak": 4}


def test_parse_picks_the_model_by_type() -> None:
    assert isinstance(parse_timeback_event(seed_activity_event()), TimebackActivityEvent)
    assert isinstance(parse_timeback_event(time_spent_event()), TimebackTimeSpentEvent)


@pytest.mark.parametrize(("path", "value"), [
    (("generated", "items", 0, "type"), "stars"),
    (("action",), "Started"),
    (("profile",), "GeneralProfile"),
    (("generated", "items", 0, "value"), "lots"),
    (("id",), "c51570e4"),
])
def test_values_the_reference_forbids_are_problems(path: tuple[Any, ...], value: Any) -> None:
    payload = seed_activity_event()
    node: Any = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    event, problems = validate_timeback_event(payload)
    assert event is None
    assert [p.path for p in problems] == [".".join(str(part) for part in path).replace(".0", "[0]")]
    with pytest.raises(ValidationError):
        TimebackActivityEvent.model_validate(payload)


def test_missing_required_fields_are_named() -> None:
    payload = seed_activity_event()
    del payload["eventTime"]
    del payload["object"]["app"]
    _, problems = validate_timeback_event(payload)
    assert {(p.path, p.missing) for p in problems} == {("eventTime", True), ("object.app.name", True)}


def test_time_spent_values_must_not_be_negative() -> None:
    payload = time_spent_event()
    payload["generated"]["items"][1]["value"] = -5
    _, problems = validate_timeback_event(payload)
    assert [p.path for p in problems] == ["generated.items[1].value"]


def test_only_timeback_profile_activity_and_time_spent_events_are_timeback_events() -> None:
    assert is_timeback_event(seed_activity_event()) and is_timeback_event(time_spent_event())
    other = seed_activity_event() | {"type": "NavigationEvent"}
    assert not is_timeback_event(other)
    _, problems = validate_timeback_event(other)
    assert [p.path for p in problems] == ["type"]
