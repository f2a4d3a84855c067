"""The Brazilian hub's grade/reading events (seed 003) -> LearningFact.

The event is read through ``schemas.hub.HubEvent`` (BNCC code upper-cased, numbers and booleans coerced) and
converted by ``HUB``; its times are read from the event as sent, an offset-less time (``lastTime:
"2022-07-19T19:36:12.117"``) being a wall-clock time of the tenant's time zone. The hub sends no ``eventTime``:
the fact's event time is when the learning happened, ``object.endedAtTime``, else ``object.lastTime``, else
``object.startedAtTime`` (required); ``object.dateCreated`` (when the hub's record was created) has its own
column. The hub sends no sendTime either: ``send_time_ms`` is None. The student is the attempt's assignee. Where
the contract names a default (``HUB_DEFAULTS``) a missing value takes it.
"""

from __future__ import annotations

from typing import Any

from schemas.bncc import parse_bncc
from schemas.errors import InvalidSkillCodeError, NormalizationError, problems_code
from schemas.hub import EVENT_TIME_FIELDS, validate_hub_event
from schemas.records import LearningFact, RawEvent
from streams.normalizers.base import (
    GENERATED_SCORE,
    OBJECT_CREATED,
    FieldRule,
    NormalizeOptions,
    boolean,
    converted_fact,
    entity_rules,
    integer,
    number,
    period_rules,
    source_set,
    text,
    time_rule,
)
from streams.normalizers.typed import hub_typed

__all__ = ["HUB", "HUB_DEFAULTS", "bncc_columns", "normalize_hub"]

# the contract's defaults: "object.assignee.type: Person (default)", "isPartOf.type: Subject (default)",
# "frequency_assigned: 1 (default)"
HUB_DEFAULTS: dict[str, Any] = {"learner_type": "Person", "discipline_type": "Subject", "frequency_assigned": 1}
# the times of the contract, read from the event as sent (the model's datetimes no longer say which had no offset)
HUB_TIMES = (("object", "dateCreated"), ("object", "startedAtTime"), ("object", "endedAtTime"),
             ("object", "lastTime"))


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

HUB = source_set("hub", (
    R("actor.type", "actor_type", text),
    R("actor.host", "actor_host", text),
    R("object.type", "object_type", text),
    *entity_rules("object.assignee", "student_id", type_to="learner_type"),
    *entity_rules("object.assignable", "activity_id", type_to="activity_type"),
    R("object.assignable.skillCode", None, bncc_columns),
    R("object.assignable.extension.name", "activity_name", text),
    R("object.assignable.extension.bookLevel", "book_level", text),
    *entity_rules("object.assignable.isPartOf", "discipline_code", type_to="discipline_type", name_to="subject_name"),
    R("object.assignable.frequency_assigned", "frequency_assigned", integer),
    # when the learning happened: the first of these the event has
    *(time_rule(f"object.{name}", "event_time_ms", consume=False) for name in EVENT_TIME_FIELDS),
    OBJECT_CREATED,
    *period_rules("object"),
    time_rule("object.lastTime", "last_access_time_ms"),
    R("object.totalTime", "total_time_seconds", number),
    R("object.percentReading", "percent_read", number),
    R("object.completionType", "completion_type", text),
    R("object.finished", "finished", boolean),
    R("edApp", "ed_app", text),
    R("generated.type", "generated_type", text),
    *GENERATED_SCORE,
    R("generated.proficiencyLevel", "proficiency_level", text),
    R("generated.trys", "attempts", integer),
))


def normalize_hub(raw: RawEvent, document: dict[str, Any], options: NormalizeOptions, *,
                  fast: bool = True) -> list[LearningFact]:
    """The fact of one hub event; a NormalizationError naming every problem if it breaks the contract.

    The event is read by ``streams.normalizers.typed.hub_typed`` (the model's reading without pydantic) and, when
    that is unsure (or ``fast`` is False), through ``validate_hub_event``: the same typed event either way."""
    typed = hub_typed(document) if fast else None
    if typed is None:
        typed = _typed_by_model(raw, document)
    return [converted_fact(raw, document, HUB, options, _with_defaults, typed)]


def _with_defaults(values: dict[str, Any]) -> None:
    """The contract's defaults where the event has no value; the student is the attempt's assignee."""
    for name, default in HUB_DEFAULTS.items():
        values.setdefault(name, default)
    values["learner_role"] = "assignee"


def _typed_by_model(raw: RawEvent, document: dict[str, Any]) -> dict[str, Any]:
    event, problems = validate_hub_event(document)
    if event is None:
        reasons = "; ".join(problem.message for problem in problems)
        raise NormalizationError(f"invalid hub event: {reasons}", event_id=raw.event_id, code=problems_code(problems))
    typed = event.model_dump(by_alias=True, exclude_unset=True)
    for parent, name in HUB_TIMES:  # validated above: the text as sent, read in the tenant's zone by the rules
        sent = document.get(parent, {}).get(name)
        if isinstance(sent, str) and name in typed.get(parent, {}):
            typed[parent][name] = sent
    return typed
