"""Generic Caliper 1.2 events -> LearningFact, one declarative conversion set per event type.

Every set starts from ``COMMON`` (the Caliper Event's own fields: id, type, actor, object, eventTime, edApp,
generated, group, session...); a type's own rules come first and so win over the common ones. Any event type
without its own set uses ``COMMON``. Entities (items of an envelope that are not events) yield no fact and are not
an error. Offset-less times are read in the tenant's time zone.

The learner is found by role, not position (``find_learner``): the assignee of the event's Attempt (``object``,
``generated`` or ``generated.attempt``) when it names one; else the actor when it is a Person (an actor given by
IRI alone counts as one unless the event type's actor is never the learner: ``NON_LEARNER_ACTORS``); else the
user of the Session a SessionEvent is about; else nobody (``learner_role = "none"``, empty ``student_id``): a
grading application or a timing-out platform is never stored as a student.
"""

from __future__ import annotations

from typing import Any

from schemas.caliper.terms import PERSON_TYPES
from schemas.caliper.validator import is_event
from schemas.records import LearningFact, RawEvent
from streams.normalizers.base import (
    GENERATED_SCORE,
    OBJECT_CREATED,
    ConversionSet,
    FieldRule,
    NormalizeOptions,
    boolean,
    converted_fact,
    duration_seconds,
    entity_rules,
    integer,
    number,
    period_rules,
    source_set,
    text,
    time_rule,
)

R = FieldRule

# Where a rule's destination starts with "_", the value is a candidate for the learner (``find_learner``), not a
# fact field: the attempt's assignee, the actor's email, the user of a Session.
ASSIGNEE_ID, ASSIGNEE_TYPE, ACTOR_EMAIL, SESSION_USER_ID, SESSION_USER_TYPE = (
    "_assignee_id", "_assignee_type", "_actor_email", "_session_user_id", "_session_user_type")
# event types (and actions; None: every action) whose actor is never the learner, whatever its type
NON_LEARNER_ACTORS: dict[str, frozenset[str] | None] = {
    "GradeEvent": None,  # the grader (an application or an instructor); the learner is the attempt's assignee
    "OutcomeEvent": None,  # Caliper 1.1's GradeEvent
    "SessionEvent": frozenset({"TimedOut"}),  # the platform (a SoftwareApplication) ends the session
}

COMMON = source_set("caliper", (
    time_rule("eventTime", "event_time_ms"),
    *entity_rules("actor", "actor_id", type_to="actor_type", by_iri=True),
    R("actor.email", ACTOR_EMAIL, text),
    *entity_rules("object", "object_id", type_to="object_type", name_to="object_name", by_iri=True),
    OBJECT_CREATED,
    *entity_rules("object.assignee", ASSIGNEE_ID, type_to=ASSIGNEE_TYPE, by_iri=True),
    *entity_rules("edApp", "ed_app", name_to="app_name", by_iri=True),
    *entity_rules("generated", "generated_id", type_to="generated_type", by_iri=True),
    *entity_rules("generated.assignee", ASSIGNEE_ID, type_to=ASSIGNEE_TYPE, by_iri=True),
    *entity_rules("generated.attempt.assignee", ASSIGNEE_ID, type_to=ASSIGNEE_TYPE, by_iri=True),
    *GENERATED_SCORE,
    R("generated.attempt.count", "attempts", integer),
    R("generated.count", "attempts", integer),
    *period_rules("generated"),
    R("generated.duration", "total_time_seconds", duration_seconds),
    *entity_rules("session", "session_id", by_iri=True),
    *entity_rules("group", "group_id", name_to="course_name", by_iri=True),
))


def activity_rules(source: str, *, by_iri: bool = False) -> tuple[FieldRule, ...]:
    """The rules of the activity an event names at ``source`` (``entity_rules``)."""
    return entity_rules(source, "activity_id", type_to="activity_type", name_to="activity_name", by_iri=by_iri)


# what several event types name in the same place: the target activity, the course the object is part of
_TARGET = activity_rules("target")
_COURSE_PART = entity_rules("object.isPartOf", "course_id", name_to="course_name")

GRADE_EVENT = COMMON.extended("caliper.GradeEvent", first=(
    *activity_rules("object.assignable", by_iri=True),
    R("object.count", "attempts", integer),
    *period_rules("object"),
    R("object.duration", "total_time_seconds", duration_seconds),
))
ASSESSMENT_EVENT = COMMON.extended("caliper.AssessmentEvent", first=activity_rules("generated.assignable"))
ASSESSMENT_ITEM_EVENT = COMMON.extended("caliper.AssessmentItemEvent", first=(
    R("generated.attempt.assignable.id", "activity_id", text),
    *period_rules("generated.attempt"),
    *activity_rules("object.isPartOf"),
))
VIEW_EVENT = COMMON.extended("caliper.ViewEvent", first=_COURSE_PART)
NAVIGATION_EVENT = COMMON.extended("caliper.NavigationEvent", first=_TARGET)


def _session_object_id(value: Any) -> dict[str, str] | None:
    """A SessionEvent whose object is the Session itself (TimedOut, LoggedOut) names the session there."""
    if isinstance(value, dict) and value.get("type") == "Session" and isinstance(value.get("id"), str):
        return {"session_id": value["id"]}
    return None


SESSION_EVENT = COMMON.extended("caliper.SessionEvent", first=(
    R("object", None, _session_object_id, consume=False),
    *entity_rules("object.user", SESSION_USER_ID, type_to=SESSION_USER_TYPE, by_iri=True),
))
TOOL_USE_EVENT = COMMON.extended("caliper.ToolUseEvent", first=_TARGET)
READING_EVENT = COMMON.extended("caliper.ReadingEvent", first=(
    *_COURSE_PART,
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


def conversion_set_for(event_type: Any) -> ConversionSet:
    return CONVERSION_SETS.get(event_type, COMMON) if isinstance(event_type, str) else COMMON


def actor_may_be_learner(event_type: str, action: str, actor_type: str) -> bool:
    """A Person actor is the learner; one given by IRI alone (no type) too, unless the event type's actor is
    never the learner (``NON_LEARNER_ACTORS``); an application, an organization... never is."""
    if actor_type:
        return actor_type in PERSON_TYPES
    if event_type in NON_LEARNER_ACTORS:
        actions = NON_LEARNER_ACTORS[event_type]
        return actions is not None and action not in actions
    return True


def find_learner(values: dict[str, Any]) -> None:
    """Replace the learner candidates in ``values`` by ``student_id``, ``student_email``, ``learner_role`` and
    ``learner_type`` (nothing when there is no learner: ``build_fact`` marks the fact ``none``)."""
    assignee, assignee_type = values.pop(ASSIGNEE_ID, ""), values.pop(ASSIGNEE_TYPE, "")
    email = values.pop(ACTOR_EMAIL, "")
    user, user_type = values.pop(SESSION_USER_ID, ""), values.pop(SESSION_USER_TYPE, "")
    actor, actor_type = values.get("actor_id", ""), values.get("actor_type", "")
    if assignee:
        values.update(student_id=assignee, learner_role="assignee", learner_type=assignee_type)
        if actor == assignee:
            values["student_email"] = email
    elif actor and actor_may_be_learner(values.get("event_type", ""), values.get("action", ""), actor_type):
        values.update(student_id=actor, learner_role="actor", learner_type=actor_type, student_email=email)
    elif user:
        values.update(student_id=user, learner_role="session_user", learner_type=user_type)


def normalize_caliper(raw: RawEvent, document: dict[str, Any], options: NormalizeOptions) -> list[LearningFact]:
    """The fact of a generic Caliper event; no fact for an entity."""
    if not is_event(document):
        return []
    return [converted_fact(raw, document, conversion_set_for(document.get("type")), options, find_learner)]
