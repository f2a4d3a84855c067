"""The Brazilian hub's grade/reading event (contract: seed 003) as pydantic models, and its validator.

The hub posts one Caliper-shaped event per request. ``validate_hub_event`` returns the typed event or every
problem found, each named by the contract's dotted path (``object.assignable.skillCode``), so the gateway can
answer ``Field object.assignable.skillCode not informed`` or name the accepted values of a wrong one.

Values are read as tolerantly as real senders post them and normalized on the way in:

- times with or without an offset (no offset = UTC) become aware UTC datetimes;
- numbers may be numeric strings; ``finished`` may be ``true``, ``"True"``, ``"TRUE"``...;
- the BNCC skill code is upper-cased; ``urn:uuid:`` identifiers are lower-cased;
- the action ``ViewedGraded`` is accepted next to the contract's spelling ``ViewdGraded`` and both become
  ``ViewedGraded``; ``completionType`` is matched case-insensitively and upper-cased (``SUCCESSFUL`` is read
  as the contract's ``SUCCESSFULL``).

Every value is held to the bounds of ``schemas.limits`` (``validate_hub_event(payload, limits=...)``): ``trys``
and ``frequency_assigned`` fit int64, numbers are finite and bounded, the four times are real date-times inside
the event-time window, strings carry no control characters, the payload nests at most ``max_depth`` levels.
``HubEvent.model_validate`` without a context applies ``STORAGE_LIMITS`` (what the store can hold at all).

Unknown fields are allowed everywhere and kept (``extra="allow"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from schemas.bncc import parse_bncc
from schemas.coerce import coerce_bool, coerce_int, coerce_number, parse_time
from schemas.errors import FieldProblem, InvalidSkillCodeError
from schemas.limits import DEFAULT_LIMITS, ValidationLimits, depth_problem
from schemas.model_checks import (
    checked,
    int64_bound,
    number_bound,
    optional,
    problems_of,
    text_bound,
    time_bound,
    validation_context,
)

CALIPER_V1P2_CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
_ACCEPTED_CONTEXTS = frozenset({CALIPER_V1P2_CONTEXT, "https://purl.imsglobal.org/ctx/caliper/v1p2"})
_URN_UUID = re.compile(
    r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

EVENT_TYPES = ("GradeEvent", "ViewEvent", "GradeViewEvent")
PROFILES = ("GradingProfile", "ReadingProfile", "ReadingGradingProfile")
ACTIONS = ("Viewed", "Graded", "ViewdGraded")
OBJECT_TYPES = ("Attempt", "Reading", "Reading/Listen")
ASSIGNEE_TYPES = ("Person",)
ASSIGNABLE_TYPES = ("Activity", "Book Activity")
DISCIPLINE_TYPES = ("Subject", "GroupStudy", "Task")
# when the learning happened (the event time of a hub event, which has no eventTime): the first of these the
# object has; dateCreated is when the hub created its record, not when the learning happened
EVENT_TIME_FIELDS = ("endedAtTime", "lastTime", "startedAtTime")
COMPLETION_TYPES = ("SUCCESSFULL", "FAILURE", "ONGOING", "EXTRA", "CANCEL")
GENERATED_TYPES = ("Score",)

CANONICAL_VIEWED_GRADED = "ViewedGraded"

# The contract's required fields, as the table names them (a missing parent reports these descendants).
REQUIRED_PATHS: tuple[str, ...] = (
    "@context", "id", "type", "profile", "actor.type", "actor.host", "action", "object.type",
    "object.assignee.id", "object.assignee.type", "object.assignable.id", "object.assignable.type",
    "object.assignable.skillCode", "object.dateCreated", "object.startedAtTime", "object.totalTime", "edApp",
)


def _one_of(accepted: tuple[str, ...], aliases: dict[str, str] | None = None,
            fold_case: bool = False) -> Callable[[Any], str | None]:
    lookup = {value: value for value in accepted} | (aliases or {})
    if fold_case:
        lookup = {key.casefold(): value for key, value in lookup.items()}

    def read(value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        key = value.strip()
        return lookup.get(key.casefold() if fold_case else key)

    return read


def _accepted(path: str, accepted: tuple[str, ...], *, required: bool = True,
              aliases: dict[str, str] | None = None, fold_case: bool = False) -> BeforeValidator:
    message = "must be one of: " + ", ".join(accepted)
    factory = checked if required else optional
    return factory(path, message, _one_of(accepted, aliases, fold_case))


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _text_or_number(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _urn_uuid(value: Any) -> str | None:
    if isinstance(value, str) and _URN_UUID.match(value.strip()):
        return value.strip().lower()
    return None


def _http_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _context(value: Any) -> str | list[str] | None:
    if isinstance(value, str):
        return value if value.strip() in _ACCEPTED_CONTEXTS else None
    if isinstance(value, list) and value and all(isinstance(item, str | dict) for item in value):
        last = value[-1]
        return value if isinstance(last, str) and last.strip() in _ACCEPTED_CONTEXTS else None
    return None


def _skill_code(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_bncc(value).code
    except InvalidSkillCodeError:
        return None


def _discipline_code(value: Any) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return _text(value)


def _non_negative_int(value: Any) -> int | None:
    number = coerce_int(value)
    return number if number is not None and number >= 0 else None


def _number(value: Any) -> float | None:
    return coerce_number(value)


_OPEN = ConfigDict(extra="allow", populate_by_name=True)
_TIME = "must be an ISO 8601 date-time of a real calendar day"
_TEXT = text_bound



class HubActor(BaseModel):
    """The system where the event occurred."""

    model_config = _OPEN

    type: Annotated[str, checked("actor.type", "must be a non-empty string", _text, _TEXT)]
    host: Annotated[str, checked("actor.host", "must be an http(s) URL", _http_url, _TEXT)]


class HubAssignee(BaseModel):
    """The student, by their hub identifier."""

    model_config = _OPEN

    id: Annotated[str, checked("object.assignee.id", "must be a URN of a UUID (urn:uuid:...)", _urn_uuid)]
    type: Annotated[str, _accepted("object.assignee.type", ASSIGNEE_TYPES)]


class HubAssignableExtension(BaseModel):
    model_config = _OPEN

    name: Annotated[str | None, optional(
        "object.assignable.extension.name", "must be a string", _text, _TEXT)] = None
    book_level: Annotated[str | None, optional(
        "object.assignable.extension.bookLevel", "must be a string", _text_or_number, _TEXT)] = Field(
        default=None, alias="bookLevel")


class HubDiscipline(BaseModel):
    """``isPartOf``: the discipline (MEC code), its name in the source system and its kind."""

    model_config = _OPEN

    id: Annotated[int | str | None, optional(
        "object.assignable.isPartOf.id", "must be a MEC discipline code (integer or string)",
        _discipline_code, _TEXT)] = None
    name: Annotated[str | None, optional("object.assignable.isPartOf.name", "must be a string", _text, _TEXT)] = None
    type: Annotated[str | None, _accepted("object.assignable.isPartOf.type", DISCIPLINE_TYPES,
                                          required=False)] = None


class HubAssignable(BaseModel):
    """The activity performed, with its BNCC skill."""

    model_config = _OPEN

    id: Annotated[str, checked(
        "object.assignable.id", "must be a non-empty string or number", _text_or_number, _TEXT)]
    type: Annotated[str, _accepted("object.assignable.type", ASSIGNABLE_TYPES)]
    skill_code: Annotated[str, checked(
        "object.assignable.skillCode", "must be a BNCC skill code such as EF05MA01, EI03EO01 or EM13LGG101",
        _skill_code)] = Field(alias="skillCode")
    extension: HubAssignableExtension | None = None
    is_part_of: HubDiscipline | None = Field(default=None, alias="isPartOf")
    frequency_assigned: Annotated[int | None, optional(
        "object.assignable.frequency_assigned", "must be a non-negative integer", _non_negative_int,
        int64_bound)] = None


class HubAttempt(BaseModel):
    """``object``: the student's attempt or reading of the assignable."""

    model_config = _OPEN

    type: Annotated[str, _accepted("object.type", OBJECT_TYPES)]
    assignee: HubAssignee
    assignable: HubAssignable
    date_created: Annotated[datetime, checked("object.dateCreated", _TIME, parse_time, time_bound)] = Field(
        alias="dateCreated")
    started_at_time: Annotated[datetime, checked(
        "object.startedAtTime", _TIME, parse_time, time_bound)] = Field(alias="startedAtTime")
    ended_at_time: Annotated[datetime | None, optional(
        "object.endedAtTime", _TIME, parse_time, time_bound)] = Field(default=None, alias="endedAtTime")
    last_time: Annotated[datetime | None, optional(
        "object.lastTime", _TIME, parse_time, time_bound)] = Field(default=None, alias="lastTime")
    total_time: Annotated[int, checked(
        "object.totalTime", "must be a whole non-negative number of seconds", _non_negative_int,
        number_bound)] = Field(alias="totalTime")
    percent_reading: Annotated[float | None, optional(
        "object.percentReading", "must be a number", _number, number_bound)] = Field(
        default=None, alias="percentReading")
    completion_type: Annotated[str | None, _accepted(
        "object.completionType", COMPLETION_TYPES, required=False, aliases={"SUCCESSFUL": "SUCCESSFULL"},
        fold_case=True)] = Field(default=None, alias="completionType")
    finished: Annotated[bool | None, optional("object.finished", "must be TRUE or FALSE", coerce_bool)] = None


class HubScore(BaseModel):
    """``generated``: the grade given."""

    model_config = _OPEN

    type: Annotated[str | None, _accepted("generated.type", GENERATED_TYPES, required=False)] = None
    max_score: Annotated[float | None, optional(
        "generated.maxScore", "must be a number", _number, number_bound)] = Field(default=None, alias="maxScore")
    score_given: Annotated[float | None, optional(
        "generated.scoreGiven", "must be a number", _number, number_bound)] = Field(
        default=None, alias="scoreGiven")
    proficiency_level: Annotated[str | None, optional(
        "generated.proficiencyLevel", "must be a string", _text_or_number, _TEXT)] = Field(
        default=None, alias="proficiencyLevel")
    trys: Annotated[int | None, optional("generated.trys", "must be a non-negative integer",
                                          _non_negative_int, int64_bound)] = None


class HubEvent(BaseModel):
    """One hub grade/reading event (seed 003)."""

    model_config = _OPEN

    context: Annotated[str | list[Any], checked(
        "@context", f"must be {CALIPER_V1P2_CONTEXT} or an array ending with it", _context)] = Field(
        alias="@context")
    id: Annotated[str, checked("id", "must be a URN of a UUID (urn:uuid:...)", _urn_uuid)]
    type: Annotated[str, _accepted("type", EVENT_TYPES)]
    profile: Annotated[str, _accepted("profile", PROFILES)]
    actor: HubActor
    action: Annotated[str, _accepted("action", ACTIONS, aliases={
        "ViewdGraded": CANONICAL_VIEWED_GRADED, "ViewedGraded": CANONICAL_VIEWED_GRADED})]
    object: HubAttempt
    ed_app: Annotated[str, checked("edApp", "must be a URN of a UUID (urn:uuid:...)", _urn_uuid)] = Field(
        alias="edApp")
    generated: HubScore | None = None


def validate_hub_event(payload: object, limits: ValidationLimits = DEFAULT_LIMITS, *,
                       now: datetime | None = None) -> tuple[HubEvent | None, list[FieldProblem]]:
    """The typed event, or ``None`` and every problem found (missing fields first named by their path).

    ``limits``: the bounds of ``schemas.limits`` (event-time window, magnitudes, depth...); ``now``: the instant
    the event-time window is computed from (default: the current time)."""
    if not isinstance(payload, dict):
        return None, [FieldProblem(path="$", message="the event must be a JSON object")]
    too_deep = depth_problem(payload, limits)
    if too_deep is not None:
        return None, [FieldProblem(too_deep.path, f"{too_deep.path} {too_deep.message}")]
    try:
        return HubEvent.model_validate(payload, context=validation_context(limits, now)), []
    except ValidationError as error:
        return None, problems_of(error, REQUIRED_PATHS)
