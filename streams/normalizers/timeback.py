"""TimebackProfile events -> LearningFact.

``ActivityEvent``/``TimeSpentEvent`` of the TimebackProfile are read through their models
(``schemas.timeback``: numeric strings become numbers) and converted by ``TIMEBACK``; times are read as sent, an
offset-less one in the tenant's time zone. The metrics of ``generated.items`` go to their columns, duplicates of
one metric type summed; a time-spent item's ``subType`` also counts its seconds under ``type/subType`` in
``seconds_by_sub_type`` (``waste/eating``). The student is the actor (a TimebackUser). Whatever else the Timeback
door receives (any Caliper event the reference allows) is normalized as a generic Caliper event.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from pydantic import ValidationError

from schemas.errors import NormalizationError
from schemas.reasons import ReasonCode
from schemas.records import LearningFact, RawEvent
from schemas.timeback import TIMEBACK_EVENT_MODELS, is_timeback_event
from streams.normalizers.base import (
    FieldRule,
    NormalizeOptions,
    converted_fact,
    entity_rules,
    millis,
    number,
    source_set,
    text,
    time_rule,
)
from streams.normalizers.caliper import normalize_caliper
from streams.normalizers.typed import timeback_typed

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
_MAPPED_METRIC_KEYS = frozenset({"type", "subType", "value", "startDate", "endDate"})
_ITEM_TIMES = ("startDate", "endDate")


def metric_columns(items: Any, zone: tzinfo) -> dict[str, Any] | None:
    """Sum each metric type's values into its column (and each ``type/subType`` into ``seconds_by_sub_type``);
    the earliest start and latest end of time windows, offset-less ones read in the tenant's ``zone``."""
    if not isinstance(items, list):
        return None
    columns: dict[str, Any] = {}
    by_sub_type: dict[str, float] = {}
    starts: list[int] = []
    ends: list[int] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        column = METRIC_COLUMNS.get(item.get("type"))  # type: ignore[arg-type]
        value = number(item.get("value"))
        if column is not None and value is not None:
            columns[column] = columns.get(column, 0.0) + value
            sub_type = item.get("subType")
            if isinstance(sub_type, str) and sub_type.strip() and column.startswith("seconds_"):
                key = f"{item['type']}/{sub_type.strip()}"
                by_sub_type[key] = by_sub_type.get(key, 0.0) + value
        start, end = millis(item.get("startDate"), zone), millis(item.get("endDate"), zone)
        if start is not None:
            starts.append(start)
        if end is not None:
            ends.append(end)
    if starts:
        columns["started_time_ms"] = min(starts)
    if ends:
        columns["ended_time_ms"] = max(ends)
    if by_sub_type:
        columns["seconds_by_sub_type"] = by_sub_type
    return columns or None


def unmapped_metric_attributes(items: Any) -> list[dict[str, Any]] | None:
    """What the metric columns do not hold (extensions...), with the item's type for context."""
    if not isinstance(items, list):
        return None
    kept = []
    for item in items:
        if isinstance(item, dict) and (set(item) - _MAPPED_METRIC_KEYS):
            kept.append({key: value for key, value in item.items()
                         if key == "type" or key not in _MAPPED_METRIC_KEYS})
    return kept or None


R = FieldRule

TIMEBACK = source_set("timeback", (
    time_rule("eventTime", "event_time_ms"),
    R("actor.id", "student_id", text, consume=False),
    R("actor.id", "actor_id", text),
    R("actor.type", "learner_type", text, consume=False),
    R("actor.type", "actor_type", text),
    R("actor.email", "student_email", text),
    *entity_rules("object", "object_id", type_to="object_type"),
    R("object.subject", "subject_name", text),
    R("object.app.name", "app_name", text),
    *entity_rules("object.course", "course_id", name_to="course_name"),
    *entity_rules("object.activity", "activity_id", name_to="activity_name"),
    *entity_rules("edApp", "ed_app", by_iri=True),
    R("object.app.id", "ed_app", text),
    *entity_rules("generated", "generated_id", type_to="generated_type"),
    R("generated.items", None, metric_columns, leftover=unmapped_metric_attributes, zoned=True),
    *entity_rules("session", "session_id", by_iri=True),
    *entity_rules("group", "group_id", by_iri=True),
))


def normalize_timeback(raw: RawEvent, document: dict[str, Any], options: NormalizeOptions, *,
                       fast: bool = True) -> list[LearningFact]:
    """The fact of a TimebackProfile event; other Caliper events are normalized generically.

    The event is read by ``streams.normalizers.typed.timeback_typed`` (the models' reading without pydantic) and,
    when that is unsure (or ``fast`` is False), through the models: the same typed event either way."""
    if not is_timeback_event(document):
        return normalize_caliper(raw, document, options)
    typed = timeback_typed(document) if fast else None
    if typed is None:
        typed = _typed_by_model(raw, document)
    return [converted_fact(raw, document, TIMEBACK, options, _actor_is_learner, typed)]


def _actor_is_learner(values: dict[str, Any]) -> None:
    """A TimebackProfile event's actor is the learner (its rules map it to ``student_id``)."""
    values["learner_role"] = "actor"


def _typed_by_model(raw: RawEvent, document: dict[str, Any]) -> dict[str, Any]:
    model = TIMEBACK_EVENT_MODELS[document["type"]]
    try:
        event = model.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        code = ReasonCode.FIELD_MISSING if first["type"] == "missing" else ReasonCode.FIELD_INVALID
        raise NormalizationError(f"invalid {document['type']}: {where}: {first['msg']}",
                                 event_id=raw.event_id, code=code) from error
    typed = event.model_dump(by_alias=True, exclude_unset=True)
    _times_as_sent(typed, document)
    return typed


def _times_as_sent(typed: dict[str, Any], document: dict[str, Any]) -> None:
    """Put back the times as the event sent them (the model made them UTC, losing which had no offset)."""
    if isinstance(document.get("eventTime"), str):
        typed["eventTime"] = document["eventTime"]
    sent_items = document["generated"]["items"]  # validated: a list of objects, one per typed item
    for typed_item, sent_item in zip(typed["generated"]["items"], sent_items, strict=False):
        for name in _ITEM_TIMES:
            if name in typed_item and isinstance(sent_item.get(name), str):
                typed_item[name] = sent_item[name]
