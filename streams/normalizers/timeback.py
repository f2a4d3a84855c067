"""TimebackProfile events -> LearningFact.

``ActivityEvent``/``TimeSpentEvent`` of the TimebackProfile are read through their models
(``schemas.timeback``: numeric strings become numbers, times become UTC) and converted by ``TIMEBACK``; the
metrics of ``generated.items`` go to their columns, duplicates of one metric type summed. Whatever else the
Timeback door receives (any Caliper event the reference allows) is normalized as a generic Caliper event.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.errors import NormalizationError
from schemas.records import LearningFact, RawEvent
from schemas.timeback import TIMEBACK_EVENT_MODELS, is_timeback_event
from streams.normalizers.base import (
    EVENT_IDENTITY,
    ConversionSet,
    FieldRule,
    NormalizeOptions,
    build_fact,
    iri,
    millis,
    number,
    text,
)
from streams.normalizers.caliper import normalize_caliper

METRIC_COLUMNS: dict[str, str] = {
    "xpEarned": "xp_earned",
    "totalQuestions": "total_questions",
    "correctQuestions": "correct_questions",
    "masteredUnits": "mastered_units",
    "active": "seconds_active",
    "inactive": "seconds_inactive",
    "waste": "seconds_waste",
    "unknown": "seconds_unknown",
    "anti-pattern": "seconds_anti_pattern",
}
_MAPPED_METRIC_KEYS = frozenset({"type", "value", "startDate", "endDate"})


def metric_columns(items: Any) -> dict[str, Any] | None:
    """Sum each metric type's values into its column; the earliest start and latest end of time windows."""
    if not isinstance(items, list):
        return None
    columns: dict[str, Any] = {}
    starts: list[int] = []
    ends: list[int] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        column = METRIC_COLUMNS.get(item.get("type"))  # type: ignore[arg-type]
        value = number(item.get("value"))
        if column is not None and value is not None:
            columns[column] = columns.get(column, 0.0) + value
        start, end = millis(item.get("startDate")), millis(item.get("endDate"))
        if start is not None:
            starts.append(start)
        if end is not None:
            ends.append(end)
    if starts:
        columns["started_time_ms"] = min(starts)
    if ends:
        columns["ended_time_ms"] = max(ends)
    return columns or None


def unmapped_metric_attributes(items: Any) -> list[dict[str, Any]] | None:
    """What the metric columns do not hold (subType, extensions...), with the item's type for context."""
    if not isinstance(items, list):
        return None
    kept = []
    for item in items:
        if isinstance(item, dict) and (set(item) - _MAPPED_METRIC_KEYS):
            kept.append({key: value for key, value in item.items()
                         if key == "type" or key not in _MAPPED_METRIC_KEYS})
    return kept or None


R = FieldRule

TIMEBACK = ConversionSet("timeback", (
    *EVENT_IDENTITY,
    R("eventTime", "event_time_ms", millis),
    R("actor.id", "student_id", text),
    R("actor.type", "actor_type", text),
    R("actor.email", "student_email", text),
    R("object.id", "object_id", text),
    R("object.type", "object_type", text),
    R("object.subject", "subject_name", text),
    R("object.app.name", "app_name", text),
    R("object.course.id", "course_id", text),
    R("object.course.name", "course_name", text),
    R("object.activity.id", "activity_id", text),
    R("object.activity.name", "activity_name", text),
    R("edApp", "ed_app", iri),
    R("edApp.id", "ed_app", text),
    R("object.app.id", "ed_app", text),
    R("generated.items", None, metric_columns, leftover=unmapped_metric_attributes),
    R("session", "session_id", iri),
    R("session.id", "session_id", text),
    R("group", "group_id", iri),
    R("group.id", "group_id", text),
))


def normalize_timeback(raw: RawEvent, document: dict[str, Any], options: NormalizeOptions) -> list[LearningFact]:
    """The fact of a TimebackProfile event; other Caliper events are normalized generically."""
    if not is_timeback_event(document):
        return normalize_caliper(raw, document, options)
    model = TIMEBACK_EVENT_MODELS[document["type"]]
    try:
        event = model.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise NormalizationError(f"invalid {document['type']}: {where}: {first['msg']}",
                                 event_id=raw.event_id) from error
    typed = event.model_dump(by_alias=True, exclude_unset=True)
    values, remainder = TIMEBACK.convert(typed)
    return [build_fact(raw, document, values, remainder, options)]
