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

Unknown fields are allowed everywhere and kept (``extra="allow"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from schemas.bncc import parse_bncc
from schemas.coerce import coerce_bool, coerce_int, coerce_number, parse_time
from schemas.errors import FieldProblem, InvalidSkillCodeError

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
COMPLETION_TYPES = ("SUCCESSFULL", "FAILURE", "ONGOING", "EXTRA", "CANCEL")
GENERATED_TYPES = ("Score",)

CANONICAL_VIEWED_GRADED = "ViewedGraded"

# The contract's required fields, as the table names them (a missing parent reports these descendants).
REQUIRED_PATHS: tuple[str, ...] = (
    "@context", "id", "type", "profile", "actor.type", "actor.host", "action", "object.type",
    "object.assignee.id", "object.assignee.type", "object.assignable.id", "object.assignable.type",
    "object.assignable.skillCode", "object.dateCreated", "object.startedAtTime", "object.totalTime", "edApp",
)


def _problem(path: str, message: str, value: Any) -> PydanticCustomError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return PydanticCustomError("hub_value", "{path} {message} (got {got})",
                               {"path": path, "message": message, "got": shown})


def _checked(path: str, message: str, read: Callable[[Any], Any]) -> BeforeValidator:
    """A before-validator that reads a value with ``read`` (None = unreadable) and names the field if not."""

    def check(value: Any) -> Any:
        if value is None:
            raise _problem(path, "not informed", value)
        result = read(value)
        if result is None:
            raise _problem(path, message, value)
        return result

    return BeforeValidator(check)


def _optional(path: str, message: str, read: Callable[[Any], Any]) -> BeforeValidator:
    """Like ``_checked`` but a null stays null (the field is optional)."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        result = read(value)
        if result is None:
            raise _problem(path, message, value)
        return result

    return BeforeValidator(check)


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
    factory = _checked if required else _optional
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
_TIME = "must be an ISO 8601 date-time"



class HubActor(BaseModel):
    """The system where the event occurred."""

    model_config = _OPEN

    type: Annotated[str, _checked("actor.type", "must be a non-empty string", _text)]
    host: Annotated[str, _checked("actor.host", "must be an http(s) URL", _http_url)]


class HubAssignee(BaseModel):
    """The student, by their hub identifier."""

    model_config = _OPEN

    id: Annotated[str, _checked("object.assignee.id", "must be a URN of a UUID (urn:uuid:...)", _urn_uuid)]
    type: Annotated[str, _accepted("object.assignee.type", ASSIGNEE_TYPES)]


class HubAssignableExtension(BaseModel):
    model_config = _OPEN

    name: Annotated[str | None, _optional("object.assignable.extension.name", "must be a string", _text)] = None
    book_level: Annotated[str | None, _optional(
        "object.assignable.extension.bookLevel", "must be a string", _text_or_number)] = Field(
        default=None, alias="bookLevel")


class HubDiscipline(BaseModel):
    """``isPartOf``: the discipline (MEC code), its name in the source system and its kind."""

    model_config = _OPEN

    id: Annotated[int | str | None, _optional(
        "object.assignable.isPartOf.id", "must be a MEC discipline code (integer or string)",
        _discipline_code)] = None
    name: Annotated[str | None, _optional("object.assignable.isPartOf.name", "must be a string", _text)] = None
    type: Annotated[str | None, _accepted("object.assignable.isPartOf.type", DISCIPLINE_TYPES,
                                          required=False)] = None


class HubAssignable(BaseModel):
    """The activity performed, with its BNCC skill."""

    model_config = _OPEN

    id: Annotated[str, _checked("object.assignable.id", "must be a non-empty string or number", _text_or_number)]
    type: Annotated[str, _accepted("object.assignable.type", ASSIGNABLE_TYPES)]
    skill_code: Annotated[str, _checked(
        "object.assignable.skillCode", "must be a BNCC skill code such as EF05MA01, EI03EO01 or EM13LGG101",
        _skill_code)] = Field(alias="skillCode")
    extension: HubAssignableExtension | None = None
    is_part_of: HubDiscipline | None = Field(default=None, alias="isPartOf")
    frequency_assigned: Annotated[int | None, _optional(
        "object.assignable.frequency_assigned", "must be a non-negative integer", _non_negative_int)] = None


class HubAttempt(BaseModel):
    """``object``: the student's attempt or reading of the assignable."""

    model_config = _OPEN

    type: Annotated[str, _accepted("object.type", OBJECT_TYPES)]
    assignee: HubAssignee
    assignable: HubAssignable
    date_created: Annotated[datetime, _checked("object.dateCreated", _TIME, parse_time)] = Field(
        alias="dateCreated")
    started_at_time: Annotated[datetime, _checked("object.startedAtTime", _TIME, parse_time)] = Field(
        alias="startedAtTime")
    ended_at_time: Annotated[datetime | None, _optional("object.endedAtTime", _TIME, parse_time)] = Field(
        default=None, alias="endedAtTime")
    last_time: Annotated[datetime | None, _optional("object.lastTime", _TIME, parse_time)] = Field(
        default=None, alias="lastTime")
    total_time: Annotated[int, _checked(
        "object.totalTime", "must be a whole non-negative number of seconds", _non_negative_int)] = Field(
        alias="totalTime")
    percent_reading: Annotated[float | None, _optional(
        "object.percentReading", "must be a number", _number)] = Field(default=None, alias="percentReading")
    completion_type: Annotated[str | None, _accepted(
        "object.completionType", COMPLETION_TYPES, required=False, aliases={"SUCCESSFUL": "SUCCESSFULL"},
        fold_case=True)] = Field(default=None, alias="completionType")
    finished: Annotated[bool | None, _optional("object.finished", "must be TRUE or FALSE", coerce_bool)] = None


class HubScore(BaseModel):
    """``generated``: the grade given."""

    model_config = _OPEN

    type: Annotated[str | None, _accepted("generated.type", GENERATED_TYPES, required=False)] = None
    max_score: Annotated[float | None, _optional("generated.maxScore", "must be a number", _number)] = Field(
        default=None, alias="maxScore")
    score_given: Annotated[float | None, _optional("generated.scoreGiven", "must be a number", _number)] = Field(
        default=None, alias="scoreGiven")
    proficiency_level: Annotated[str | None, _optional(
        "generated.proficiencyLevel", "must be a string", _text_or_number)] = Field(
        default=None, alias="proficiencyLevel")
    trys: Annotated[int | None, _optional("generated.trys", "must be a non-negative integer",
                                          _non_negative_int)] = None


class HubEvent(BaseModel):
    """One hub grade/reading event (seed 003)."""

    model_config = _OPEN

    context: Annotated[str | list[Any], _checked(
        "@context", f"must be {CALIPER_V1P2_CONTEXT} or an array ending with it", _context)] = Field(
        alias="@context")
    id: Annotated[str, _checked("id", "must be a URN of a UUID (urn:uuid:...)", _urn_uuid)]
    type: Annotated[str, _accepted("type", EVENT_TYPES)]
    profile: Annotated[str, _accepted("profile", PROFILES)]
    actor: HubActor
    action: Annotated[str, _accepted("action", ACTIONS, aliases={
        "ViewdGraded": CANONICAL_VIEWED_GRADED, "ViewedGraded": CANONICAL_VIEWED_GRADED})]
    object: HubAttempt
    ed_app: Annotated[str, _checked("edApp", "must be a URN of a UUID (urn:uuid:...)", _urn_uuid)] = Field(
        alias="edApp")
    generated: HubScore | None = None


def validate_hub_event(payload: object) -> tuple[HubEvent | None, list[FieldProblem]]:
    """The typed event, or ``None`` and every problem found (missing fields first named by their path)."""
    if not isinstance(payload, dict):
        return None, [FieldProblem(path="$", message="the event must be a JSON object")]
    try:
        return HubEvent.model_validate(payload), []
    except ValidationError as error:
        return None, problems_of(error, REQUIRED_PATHS)


def problems_of(error: ValidationError, required_paths: tuple[str, ...] = ()) -> list[FieldProblem]:
    """Translate pydantic errors into contract paths; a missing parent names its required descendants."""
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for detail in error.errors(include_url=False):
        path = ".".join(str(part) for part in detail["loc"])
        missing = detail["type"] == "missing" or detail.get("input", "") is None
        if missing:
            paths = [p for p in required_paths if p.startswith(path + ".")] or [path]
            for required in paths:
                if required not in seen:
                    seen.add(required)
                    problems.append(FieldProblem(required, f"Field {required} not informed", missing=True))
            continue
        if path in seen:
            continue
        seen.add(path)
        if detail["type"] == "hub_value":
            message = detail["msg"]
        elif detail["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"{path or '$'} must be a JSON object"
        else:
            message = f"{path or '$'}: {detail['msg']}"
        problems.append(FieldProblem(path or "$", message))
    return problems
