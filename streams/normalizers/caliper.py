"""Generic Caliper 1.2 events -> LearningFact, one declarative conversion set per event type.

Every set starts from ``COMMON`` (the Caliper Event's own fields: id, type, actor, object, eventTime, edApp,
generated, group, session...); a type's own rules come first and so win over the common ones (a GradeEvent's
student is the attempt's assignee, not the grading actor). Any event type without its own set uses ``COMMON``.
Entities (items of an envelope that are not events) yield no fact and are not an error.
"""

from __future__ import annotations

from typing import Any

from schemas.records import LearningFact, RawEvent
from streams.normalizers.base import (
    EVENT_IDENTITY,
    ConversionSet,
    FieldRule,
    NormalizeOptions,
    boolean,
    build_fact,
    duration_seconds,
    integer,
    iri,
    millis,
    number,
    text,
)

R = FieldRule

COMMON = ConversionSet("caliper", (
    *EVENT_IDENTITY,
    R("eventTime", "event_time_ms", millis),
    R("actor", "student_id", iri),
    R("actor.id", "student_id", text),
    R("actor.type", "actor_type", text),
    R("actor.email", "student_email", text),
    R("object", "object_id", iri),
    R("object.id", "object_id", text),
    R("object.type", "object_type", text),
    R("object.name", "object_name", text),
    R("object.dateCreated", "started_time_ms", millis),
    R("edApp", "ed_app", iri),
    R("edApp.id", "ed_app", text),
    R("edApp.name", "app_name", text),
    R("generated.scoreGiven", "score_given", number),
    R("generated.maxScore", "max_score", number),
    R("generated.attempt.count", "attempts", integer),
    R("generated.count", "attempts", integer),
    R("generated.startedAtTime", "started_time_ms", millis),
    R("generated.endedAtTime", "ended_time_ms", millis),
    R("generated.duration", "total_time_seconds", duration_seconds),
    R("session", "session_id", iri),
    R("session.id", "session_id", text),
    R("group", "group_id", iri),
    R("group.id", "group_id", text),
    R("group.name", "course_name", text),
))

_ATTEMPT_OBJECT = (
    R("object.assignee", "student_id", iri),
    R("object.assignee.id", "student_id", text),
    R("object.assignable", "activity_id", iri),
    R("object.assignable.id", "activity_id", text),
    R("object.assignable.type", "activity_type", text),
    R("object.assignable.name", "activity_name", text),
    R("object.count", "attempts", integer),
    R("object.startedAtTime", "started_time_ms", millis),
    R("object.endedAtTime", "ended_time_ms", millis),
    R("object.duration", "total_time_seconds", duration_seconds),
)

GRADE_EVENT = COMMON.extended("caliper.GradeEvent", first=_ATTEMPT_OBJECT)
ASSESSMENT_EVENT = COMMON.extended("caliper.AssessmentEvent", first=(
    R("generated.assignable.id", "activity_id", text),
    R("generated.assignable.type", "activity_type", text),
    R("generated.assignable.name", "activity_name", text),
))
ASSESSMENT_ITEM_EVENT = COMMON.extended("caliper.AssessmentItemEvent", first=(
    R("generated.attempt.assignable.id", "activity_id", text),
    R("generated.attempt.startedAtTime", "started_time_ms", millis),
    R("generated.attempt.endedAtTime", "ended_time_ms", millis),
    R("object.isPartOf.id", "activity_id", text),
    R("object.isPartOf.name", "activity_name", text),
    R("object.isPartOf.type", "activity_type", text),
))
VIEW_EVENT = COMMON.extended("caliper.ViewEvent", first=(
    R("object.isPartOf.id", "course_id", text),
    R("object.isPartOf.name", "course_name", text),
))
NAVIGATION_EVENT = COMMON.extended("caliper.NavigationEvent", first=(
    R("target.id", "activity_id", text),
    R("target.name", "activity_name", text),
    R("target.type", "activity_type", text),
))


def _session_object_id(value: Any) -> dict[str, str] | None:
    """A SessionEvent whose object is the Session itself (TimedOut, LoggedOut) names the session there."""
    if isinstance(value, dict) and value.get("type") == "Session" and isinstance(value.get("id"), str):
        return {"session_id": value["id"]}
    return None


SESSION_EVENT = COMMON.extended("caliper.SessionEvent", first=(
    R("object", None, _session_object_id, consume=False),
))
TOOL_USE_EVENT = COMMON.extended("caliper.ToolUseEvent", first=(
    R("target.id", "activity_id", text),
    R("target.name", "activity_name", text),
    R("target.type", "activity_type", text),
))
READING_EVENT = COMMON.extended("caliper.ReadingEvent", first=(
    R("object.isPartOf.id", "course_id", text),
    R("object.isPartOf.name", "course_name", text),
    R("extensions.percentRead", "percent_read", number),
    R("extensions.finished", "finished", boolean),
))

CONVERSION_SETS: dict[str, ConversionSet] = {
    "GradeEvent": GRADE_EVENT,
    "AssessmentEvent": ASSESSMENT_EVENT,
    "AssessmentItemEvent": ASSESSMENT_ITEM_EVENT,
    "ViewEvent": VIEW_EVENT,
    "NavigationEvent": NAVIGATION_EVENT,
    "SessionEvent": SESSION_EVENT,
    "ToolUseEvent": TOOL_USE_EVENT,
    "ReadingEvent": READING_EVENT,
}


def is_event(document: dict[str, Any]) -> bool:
    """Caliper events are typed ``Event`` or ``*Event``; anything else in an envelope is an entity."""
    kind = document.get("type")
    if isinstance(kind, str) and (kind == "Event" or kind.endswith("Event")):
        return True
    return "action" in document and "actor" in document and "eventTime" in document


def conversion_set_for(event_type: Any) -> ConversionSet:
    return CONVERSION_SETS.get(event_type, COMMON) if isinstance(event_type, str) else COMMON


def normalize_caliper(raw: RawEvent, document: dict[str, Any], options: NormalizeOptions) -> list[LearningFact]:
    """The fact of a generic Caliper event; no fact for an entity."""
    if not is_event(document):
        return []
    values, remainder = conversion_set_for(document.get("type")).convert(document)
    return [build_fact(raw, document, values, remainder, options)]
