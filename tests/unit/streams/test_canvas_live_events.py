"""Canvas LMS Live Events in Caliper format (Caliper 1.1 with ``com.instructure.canvas`` extensions): the four
sample events of ``caliper_pipeline.senders.samples`` (shapes from Canvas's own Live Events documentation) are accepted
by the gateway's validation as Canvas sends them, and each is normalized into exactly one fact with the right learner,
score, time and Caliper version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from published import published_events

from caliper_pipeline.senders.samples import (
    CANVAS_EXTENSION,
    canvas_envelope,
    canvas_grade_event,
    canvas_logged_in_event,
    canvas_navigation_event,
    canvas_quiz_submitted_event,
    envelope,
    generic_caliper_event,
)
from gateway.tokens import Caller
from schemas.caliper import check_envelope
from schemas.coerce import time_to_ms
from schemas.records import LearningFact
from streams.normalizers import NormalizeOptions, normalize_with

OPTIONS = NormalizeOptions(b"k", keep_raw_email=False, normalizer_version="canvas-test", student_key=b"sk")
CALLER = Caller(client_id="canvas", tenant="district", scopes=frozenset(), rate_limit_per_second=None)
STUDENT, GRADER = "21070000000000001", "21070000000000987"
EVENT_TIME = "2024-11-01T19:11:05.222Z"
SAMPLES: dict[str, Callable[..., dict[str, Any]]] = {
    "navigation": canvas_navigation_event, "quiz_submitted": canvas_quiz_submitted_event,
    "grade_change": canvas_grade_event, "logged_in": canvas_logged_in_event}


def facts_of(body: dict[str, Any]) -> list[LearningFact]:
    """The envelope through the gateway's validation and its raw events, then the streams' normalizers."""
    problems, payload = check_envelope(body)
    assert problems == []
    return [fact for raw in published_events(payload, CALLER, 1_730_000_000_000)
            for fact in normalize_with(raw, OPTIONS)]


def test_a_canvas_envelope_of_the_four_events_is_valid() -> None:
    body = canvas_envelope(*(sample(STUDENT, event_time=EVENT_TIME) for sample in SAMPLES.values()))
    assert body["dataVersion"] == "http://purl.imsglobal.org/ctx/caliper/v1p1"
    assert check_envelope(body).problems == []


@pytest.mark.parametrize("name", SAMPLES)
def test_each_canvas_event_is_normalized_once_with_its_learner_time_and_version(name: str) -> None:
    event = SAMPLES[name](STUDENT, event_time=EVENT_TIME)
    [fact] = facts_of(canvas_envelope(event))
    assert (fact.event_id, fact.event_type, fact.action) == (event["id"], event["type"], event["action"])
    assert fact.student_id == f"urn:instructure:canvas:user:{STUDENT}"
    assert fact.event_time_ms == time_to_ms(EVENT_TIME)
    assert fact.caliper_version == "1.1"
    assert fact.sensor == "http://oxana.instructure.com/"
    assert fact.session_id == "urn:instructure:canvas:session:ef686f8ed684abf78cbfa1f6a58112b5"


def test_the_grade_is_the_students_with_the_generated_score() -> None:
    [fact] = facts_of(canvas_envelope(canvas_grade_event(STUDENT, grader=GRADER, score_given=8.0, max_score=10.0,
                                                         event_time=EVENT_TIME)))
    assert (fact.learner_role, fact.student_id) == ("assignee", f"urn:instructure:canvas:user:{STUDENT}")
    assert fact.actor_id == f"urn:instructure:canvas:user:{GRADER}"  # the teacher, never counted as the student
    assert (fact.score_given, fact.max_score, fact.score_ratio) == (8.0, 10.0, 0.8)
    assert fact.generated_type == "Score"
    assert fact.group_id == "urn:instructure:canvas:course:21070000000000565"


def test_the_quiz_submission_is_the_students_attempt() -> None:
    [fact] = facts_of(canvas_envelope(canvas_quiz_submitted_event(STUDENT, event_time=EVENT_TIME)))
    assert (fact.learner_role, fact.object_type) == ("assignee", "Attempt")  # the Attempt's assignee: the actor
    assert fact.score_given is None  # a submission has no score yet: absent, not 0


def test_the_canvas_extensions_are_kept_with_the_fact() -> None:
    [fact] = facts_of(canvas_envelope(canvas_logged_in_event(STUDENT, event_time=EVENT_TIME)))
    assert CANVAS_EXTENSION in fact.extensions_json  # how its values are stored is the remainder's business


def test_a_caliper_1_2_event_keeps_version_1_2() -> None:
    [fact] = facts_of(envelope(generic_caliper_event()))
    assert fact.caliper_version == "1.2"
