"""The Brazilian hub's grade/reading events (seed 003) -> LearningFact.

The event is read through ``schemas.hub.HubEvent`` (BNCC code upper-cased, numbers and booleans coerced, times
UTC) and converted by ``HUB``. The hub sends no ``eventTime``: the fact's event time is the record's
``object.dateCreated`` (required by the contract).
"""

from __future__ import annotations

from typing import Any

from schemas.bncc import parse_bncc
from schemas.errors import InvalidSkillCodeError, NormalizationError
from schemas.hub import validate_hub_event
from schemas.records import LearningFact, RawEvent
from streams.normalizers.base import (
    EVENT_IDENTITY,
    ConversionSet,
    FieldRule,
    NormalizeOptions,
    boolean,
    build_fact,
    integer,
    millis,
    number,
    text,
)

__all__ = ["HUB", "bncc_columns", "normalize_hub"]


def bncc_columns(value: Any) -> dict[str, str] | None:
    """A BNCC skill code split into the fact's bncc_* columns."""
    if not isinstance(value, str):
        return None
    try:
        skill = parse_bncc(value)
    except InvalidSkillCodeError:
        return None
    return {
        "bncc_code": skill.code,
        "bncc_stage": skill.stage.value,
        "bncc_year_group": skill.year_group,
        "bncc_component": skill.component,
        "bncc_number": skill.number,
    }


R = FieldRule

HUB = ConversionSet("hub", (
    *EVENT_IDENTITY,
    R("actor.type", "actor_type", text),
    R("object.type", "object_type", text),
    R("object.assignee.id", "student_id", text),
    R("object.assignable.id", "activity_id", text),
    R("object.assignable.type", "activity_type", text),
    R("object.assignable.skillCode", None, bncc_columns),
    R("object.assignable.extension.name", "activity_name", text),
    R("object.assignable.extension.bookLevel", "book_level", text),
    R("object.assignable.isPartOf.id", "discipline_code", text),
    R("object.assignable.isPartOf.name", "subject_name", text),
    R("object.assignable.isPartOf.type", "discipline_type", text),
    R("object.assignable.frequency_assigned", "frequency_assigned", integer),
    R("object.dateCreated", "event_time_ms", millis),
    R("object.startedAtTime", "started_time_ms", millis),
    R("object.endedAtTime", "ended_time_ms", millis),
    R("object.lastTime", "last_access_time_ms", millis),
    R("object.totalTime", "total_time_seconds", number),
    R("object.percentReading", "percent_read", number),
    R("object.completionType", "completion_type", text),
    R("object.finished", "finished", boolean),
    R("edApp", "ed_app", text),
    R("generated.scoreGiven", "score_given", number),
    R("generated.maxScore", "max_score", number),
    R("generated.proficiencyLevel", "proficiency_level", text),
    R("generated.trys", "attempts", integer),
))


def normalize_hub(raw: RawEvent, document: dict[str, Any], options: NormalizeOptions) -> list[LearningFact]:
    """The fact of one hub event; a NormalizationError naming every problem if it breaks the contract."""
    event, problems = validate_hub_event(document)
    if event is None:
        reasons = "; ".join(problem.message for problem in problems)
        raise NormalizationError(f"invalid hub event: {reasons}", event_id=raw.event_id)
    typed = event.model_dump(by_alias=True, exclude_unset=True)
    values, remainder = HUB.convert(typed)
    return [build_fact(raw, document, values, remainder, options)]
