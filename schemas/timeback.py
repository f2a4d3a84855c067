"""TimebackProfile events (contract: seed 000 and ``timeback-events-api.yaml``) as pydantic models.

Two events: ``TimebackActivityEvent`` (``ActivityEvent``/``Completed`` with activity metrics) and
``TimebackTimeSpentEvent`` (``TimeSpentEvent``/``SpentTime`` with time-spent metrics). Read as tolerantly as the
hub's events: metric values may be numeric strings, times may lack an offset (UTC), references the reference
document types as ``string | object`` (``edApp``, ``group``, ``session``...) accept either, and unknown fields
are kept (``extra="allow"``). The actor's email is optional here (the reference requires it; a missing email
only leaves the fact's email hash empty).

Values are held to the bounds of ``schemas.limits``: metric values finite and bounded, times real date-times
inside the event-time window, strings without control characters. ``validate_timeback_event(payload, limits=...)``
applies ``limits``; ``Model.model_validate(payload)`` without a context applies ``STORAGE_LIMITS`` (the
normalizer re-reads accepted events that way). The gateway validates these events with the Caliper rules
(``schemas.caliper``), which are at least as strict as these models (a property test keeps them so).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic import ValidationInfo as Info
from pydantic_core import PydanticCustomError

from schemas.caliper.terms import TimebackActivityMetricType, TimebackTimeSpentMetricType
from schemas.coerce import coerce_number, parse_time
from schemas.errors import FieldProblem
from schemas.limits import DEFAULT_LIMITS, ValidationLimits, number_problem, text_problem
from schemas.model_checks import context_of, problems_of, validation_context

TIMEBACK_PROFILE = "TimebackProfile"
REQUIRED_PATHS: tuple[str, ...] = (
    "id", "type", "actor.id", "actor.type", "action", "object.id", "object.type", "object.subject",
    "object.app.name", "eventTime", "profile", "generated.type", "generated.items",
)


def _number(value: Any, info: Info) -> Any:
    """A number (or a numeric string) inside the bounds; anything else is left for pydantic to refuse."""
    number = coerce_number(value) if not isinstance(value, bool) else None
    if number is None:
        if isinstance(value, int | float) and not isinstance(value, bool):  # inf, nan, an int beyond a float
            raise PydanticCustomError("bound", "must be a finite number")
        return value
    problem = number_problem(number, context_of(info)["limits"])
    if problem is not None:
        raise PydanticCustomError("bound", problem)
    return number


def _time(value: Any, info: Info) -> datetime:
    """A real calendar date-time (offset-less = UTC) inside the event-time window."""
    if isinstance(value, datetime):
        moment: datetime | None = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    else:
        moment = parse_time(value)
    if moment is None:
        raise PydanticCustomError("bound", "must be an ISO 8601 date-time of a real calendar day")
    problem = context_of(info)["window"].problem(moment)
    if problem is not None:
        raise PydanticCustomError("bound", problem)
    return moment


def _clean_text(value: str, info: Info) -> str:
    if context_of(info)["limits"].forbid_control_characters:
        problem = text_problem(value)
        if problem is not None:
            raise PydanticCustomError("bound", problem)
    return value


Number = Annotated[float, BeforeValidator(_number)]
Time = Annotated[datetime, BeforeValidator(_time)]
Text = Annotated[str, AfterValidator(_clean_text)]
Reference = Text | dict[str, Any]

_OPEN = ConfigDict(extra="allow", populate_by_name=True)


class TimebackUser(BaseModel):
    """The student (or teacher...) who did the activity; ``id`` is their OneRoster user URL."""

    model_config = _OPEN

    id: Text = Field(min_length=1)
    type: Literal["TimebackUser"] = "TimebackUser"
    email: Text | None = None
    name: Text | None = None
    role: Text | None = None
    extensions: dict[str, Any] | None = None


class TimebackNamedRef(BaseModel):
    """``app``, ``course`` or ``activity`` of the activity context."""

    model_config = _OPEN

    id: Text | None = None
    name: Text | None = None
    extensions: dict[str, Any] | None = None


class TimebackActivityContext(BaseModel):
    """Where the event was recorded: subject, app, course and activity."""

    model_config = _OPEN

    id: Text = Field(min_length=1)
    type: Literal["TimebackActivityContext"] = "TimebackActivityContext"
    subject: Text
    app: TimebackNamedRef
    course: TimebackNamedRef | None = None
    activity: TimebackNamedRef | None = None


Metric = TypeVar("Metric", bound=BaseModel)


class _MetricsCollection(BaseModel, Generic[Metric]):
    """The ``generated`` metrics of an event; each collection names its own ``type`` (its fields keep this order)."""

    model_config = _OPEN

    id: str | None = None
    type: str
    items: list[Metric]
    extensions: dict[str, Any] | None = None


class TimebackActivityMetric(BaseModel):
    model_config = _OPEN

    type: TimebackActivityMetricType
    value: Number
    extensions: dict[str, Any] | None = None


class TimebackActivityMetricsCollection(_MetricsCollection[TimebackActivityMetric]):
    type: Literal["TimebackActivityMetricsCollection"] = "TimebackActivityMetricsCollection"


class TimebackTimeSpentMetric(BaseModel):
    model_config = _OPEN

    type: TimebackTimeSpentMetricType
    sub_type: Text | None = Field(default=None, alias="subType")
    value: Number = Field(ge=0)
    start_date: Time | None = Field(default=None, alias="startDate")
    end_date: Time | None = Field(default=None, alias="endDate")
    extensions: dict[str, Any] | None = None


class TimebackTimeSpentMetricsCollection(_MetricsCollection[TimebackTimeSpentMetric]):
    type: Literal["TimebackTimeSpentMetricsCollection"] = "TimebackTimeSpentMetricsCollection"


class _TimebackEventBase(BaseModel):
    """Fields every TimebackProfile event shares (Caliper Event plus the Timeback actor and object)."""

    model_config = _OPEN

    context: str | list[Any] | dict[str, Any] | None = Field(default=None, alias="@context")
    id: Text = Field(pattern=r"^urn:uuid:")
    actor: TimebackUser
    object: TimebackActivityContext
    event_time: Time = Field(alias="eventTime")
    profile: Literal["TimebackProfile"]
    ed_app: Reference | None = Field(default=None, alias="edApp")
    target: Reference | None = None
    referrer: Reference | None = None
    group: Reference | None = None
    membership: Reference | None = None
    session: Reference | None = None
    federated_session: Reference | None = Field(default=None, alias="federatedSession")
    extensions: dict[str, Any] | None = None


class TimebackActivityEvent(_TimebackEventBase):
    """``ActivityEvent``/``Completed``: xp earned, questions answered and units mastered."""

    type: Literal["ActivityEvent"]
    action: Literal["Completed"]
    generated: TimebackActivityMetricsCollection


class TimebackTimeSpentEvent(_TimebackEventBase):
    """``TimeSpentEvent``/``SpentTime``: seconds active, inactive, wasted... in a time window."""

    type: Literal["TimeSpentEvent"]
    action: Literal["SpentTime"]
    generated: TimebackTimeSpentMetricsCollection


TimebackEvent = TimebackActivityEvent | TimebackTimeSpentEvent
TIMEBACK_EVENT_MODELS: dict[str, type[TimebackActivityEvent] | type[TimebackTimeSpentEvent]] = {
    "ActivityEvent": TimebackActivityEvent,
    "TimeSpentEvent": TimebackTimeSpentEvent,
}
_ANY_TIMEBACK_EVENT: TypeAdapter[TimebackEvent] = TypeAdapter(
    Annotated[TimebackEvent, Field(discriminator="type")])


def is_timeback_event(payload: object) -> bool:
    """Whether a Caliper event claims to be one of the TimebackProfile events modelled here."""
    return (isinstance(payload, dict) and payload.get("profile") == TIMEBACK_PROFILE
            and payload.get("type") in TIMEBACK_EVENT_MODELS)


def validate_timeback_event(payload: object, limits: ValidationLimits = DEFAULT_LIMITS, *,
                            now: datetime | None = None) -> tuple[TimebackEvent | None, list[FieldProblem]]:
    """The typed event (chosen by ``type``), or ``None`` and every problem found; ``limits`` and ``now`` as for
    ``schemas.hub.validate_hub_event``."""
    if not isinstance(payload, dict):
        return None, [FieldProblem(path="$", message="the event must be a JSON object")]
    model = TIMEBACK_EVENT_MODELS.get(str(payload.get("type")))
    if model is None:
        accepted = ", ".join(TIMEBACK_EVENT_MODELS)
        return None, [FieldProblem(path="type", message=f"type must be one of: {accepted}",
                                   missing="type" not in payload)]
    try:
        return model.model_validate(payload, context=validation_context(limits, now)), []
    except ValidationError as error:
        return None, problems_of(error, REQUIRED_PATHS)


def parse_timeback_event(payload: object) -> TimebackEvent:
    """The typed event; raises pydantic's ValidationError (use ``validate_timeback_event`` for problems)."""
    return _ANY_TIMEBACK_EVENT.validate_python(payload)
