"""The typed reading of hub and Timeback events without pydantic, for the events the models accept.

The hub and Timeback normalizers convert the event as their pydantic models read it (``model_dump(by_alias=True,
exclude_unset=True)``: numbers coerced, codes upper-cased, ids trimmed...). Validating and dumping through
pydantic cost ~60 % of normalizing such an event, although the gateway has already validated every event on the
raw topics with the same rules. These functions give the same dump directly:

- ``hub_typed``: built from ``schemas.hub.HubEvent`` itself (each field's own before-validator, the one that reads
  and bounds the value, is called as pydantic would call it, with the same validation context);
- ``timeback_typed``: the Timeback models' few field kinds written out (``TIMEBACK_FIELDS`` must list exactly the
  models' fields, checked at import: a changed model turns the fast reading off rather than diverging).

Each returns ``None`` whenever it is not certain: an event the model would refuse, a value of an unusual type, a
key spelled as a field's Python name (pydantic's ``populate_by_name``). The normalizer then takes the pydantic
path, which names the problem, so nothing changes for an invalid event. ``tests/unit/streams/test_typed_fast_path.py``
compares both paths on generated valid and damaged events.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, BeforeValidator

from schemas.caliper.terms import TIMEBACK_ACTIVITY_METRIC_TYPES, TIMEBACK_TIME_SPENT_METRIC_TYPES
from schemas.coerce import coerce_number, parse_time
from schemas.hub import HubEvent
from schemas.limits import DEFAULT_LIMITS, STORAGE_LIMITS
from schemas.model_checks import validation_context
from schemas.timeback import TIMEBACK_EVENT_MODELS

__all__ = ["hub_typed", "timeback_typed"]

_MISSING = object()


class _Info:
    """What a field validator reads of pydantic's ValidationInfo: the validation context."""

    __slots__ = ("context",)

    def __init__(self, context: dict[str, Any] | None) -> None:
        self.context = context


class _Unsure(Exception):
    """Leave this event to pydantic."""


# --- hub: the model's own field validators -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    key: str  # as sent (the alias)
    required: bool
    check: Any  # the field's before-validator function (value, info) -> typed value; None for a nested model
    model: _Model | None  # the nested model of an object field
    types: tuple[type, ...]  # what the typed value may be (anything else: unsure)


@dataclass(frozen=True, slots=True)
class _Model:
    fields: tuple[_Field, ...]
    keys: frozenset[str]  # every alias: what is not one is an extra, kept as sent
    names: frozenset[str]  # Python names that differ from their alias: pydantic would read them too


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _types_of(annotation: Any) -> tuple[type, ...]:
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, type(int | str)) else ()
    found = tuple(typing.get_origin(m) or m for m in (members or (annotation,)) if m is not type(None))
    if not all(isinstance(t, type) for t in found) or (int in found and float in found):
        raise TypeError(f"cannot read {annotation!r} without pydantic")
    return found


def _describe(model: type[BaseModel]) -> _Model:
    """The fields of ``model`` as the fast reading walks them; TypeError for anything it cannot mirror."""
    decorators = model.__pydantic_decorators__
    if decorators.model_validators or decorators.field_validators or decorators.validators:
        raise TypeError(f"{model.__name__} has model or field validators")
    if model.model_config.get("extra") != "allow":
        raise TypeError(f"{model.__name__} does not keep extra fields")
    fields = []
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        validators = [m.func for m in info.metadata if isinstance(m, BeforeValidator)]
        if len(info.metadata) != len(validators) or (nested is None) == (len(validators) != 1):
            raise TypeError(f"{model.__name__}.{name} is not a plain checked field or nested model")
        fields.append(_Field(info.alias or name, info.is_required(), validators[0] if validators else None,
                             _describe(nested) if nested is not None else None,
                             () if nested is not None else _types_of(info.annotation)))
    return _Model(tuple(fields), frozenset(f.key for f in fields),
                  frozenset(name for name, info in model.model_fields.items() if info.alias not in (None, name)))


def _read(model: _Model, sent: Any, info: _Info) -> dict[str, Any]:
    """The model's dump of ``sent`` (set fields and extras), or _Unsure."""
    if type(sent) is not dict or not model.names.isdisjoint(sent):
        raise _Unsure
    typed = {key: value for key, value in sent.items() if key not in model.keys}  # extras, as sent
    for field in model.fields:
        value = sent.get(field.key, _MISSING)
        if value is _MISSING:
            if field.required:
                raise _Unsure
            continue
        if field.model is not None:
            if value is None and not field.required:
                typed[field.key] = None
            else:
                typed[field.key] = _read(field.model, value, info)
            continue
        result = field.check(value, info)  # raises pydantic's error for a value the model refuses
        if result is not None and type(result) not in field.types:
            raise _Unsure
        typed[field.key] = result
    return typed


try:
    _HUB: _Model | None = _describe(HubEvent)
except TypeError:  # pragma: no cover - the hub model changed shape: every hub event takes the pydantic path
    _HUB = None


def hub_typed(document: dict[str, Any]) -> dict[str, Any] | None:
    """``validate_hub_event(document)``'s event dumped by alias, with its times as sent; None when unsure."""
    if _HUB is None:
        return None
    from schemas.limits import depth_problem

    if depth_problem(document, DEFAULT_LIMITS) is not None:
        return None
    info = _Info(validation_context(DEFAULT_LIMITS))  # what validate_hub_event applies
    try:
        typed = _read(_HUB, document, info)
    except Exception:
        return None
    sent = document["object"]  # validated: an object
    attempt = typed["object"]
    for name in ("dateCreated", "startedAtTime", "endedAtTime", "lastTime"):  # the times as sent (strings)
        if isinstance(attempt.get(name), datetime):
            attempt[name] = sent[name]
    return typed


# --- Timeback: the models' field kinds written out -----------------------------------------------------------

_STORAGE_WINDOW = STORAGE_LIMITS.time_window()
_ACTION = {"ActivityEvent": "Completed", "TimeSpentEvent": "SpentTime"}
_COLLECTION = {"ActivityEvent": "TimebackActivityMetricsCollection",
               "TimeSpentEvent": "TimebackTimeSpentMetricsCollection"}
_METRICS = {"ActivityEvent": TIMEBACK_ACTIVITY_METRIC_TYPES, "TimeSpentEvent": TIMEBACK_TIME_SPENT_METRIC_TYPES}
_REFERENCES = ("edApp", "target", "referrer", "group", "membership", "session", "federatedSession")
_NAMED_REF_OPTIONAL = ("id", "name")
# every field of the Timeback models, by model, as (key as sent, required): what the checks below cover
TIMEBACK_FIELDS: dict[str, frozenset[tuple[str, bool]]] = {
    "event": frozenset({("@context", False), ("id", True), ("actor", True), ("object", True), ("eventTime", True),
                        ("profile", True), *((key, False) for key in _REFERENCES), ("extensions", False),
                        ("type", True), ("action", True), ("generated", True)}),
    "TimebackUser": frozenset({("id", True), ("type", False), ("email", False), ("name", False), ("role", False),
                               ("extensions", False)}),
    "TimebackActivityContext": frozenset({("id", True), ("type", False), ("subject", True), ("app", True),
                                          ("course", False), ("activity", False)}),
    "TimebackNamedRef": frozenset({("id", False), ("name", False), ("extensions", False)}),
    "TimebackActivityMetricsCollection": frozenset({("id", False), ("type", False), ("items", True),
                                                    ("extensions", False)}),
    "TimebackTimeSpentMetricsCollection": frozenset({("id", False), ("type", False), ("items", True),
                                                     ("extensions", False)}),
    "TimebackActivityMetric": frozenset({("type", True), ("value", True), ("extensions", False)}),
    "TimebackTimeSpentMetric": frozenset({("type", True), ("subType", False), ("value", True),
                                          ("startDate", False), ("endDate", False), ("extensions", False)}),
}


def _timeback_models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}

    def walk(model: type[BaseModel]) -> None:
        found[model.__name__] = model
        for info in model.model_fields.values():
            for candidate in (info.annotation, *typing.get_args(info.annotation)):
                nested = _model_of(candidate) or next(
                    (m for m in map(_model_of, typing.get_args(candidate)) if m is not None), None)
                if nested is not None and nested.__name__ not in found:
                    walk(nested)

    for model in TIMEBACK_EVENT_MODELS.values():
        walk(model)
    return found


def _fields_of(model: type[BaseModel]) -> frozenset[tuple[str, bool]]:
    return frozenset((info.alias or name, info.is_required()) for name, info in model.model_fields.items())


def _timeback_names() -> frozenset[str] | None:
    """The Python names differing from their alias, if the models are those ``TIMEBACK_FIELDS`` describes."""
    names: set[str] = set()
    for model_name, model in _timeback_models().items():
        described = "event" if model in TIMEBACK_EVENT_MODELS.values() else model_name
        decorators = model.__pydantic_decorators__
        if (TIMEBACK_FIELDS.get(described) != _fields_of(model) or decorators.model_validators
                or decorators.field_validators or model.model_config.get("extra") != "allow"):
            return None
        names |= {name for name, info in model.model_fields.items() if info.alias not in (None, name)}
    return frozenset(names)


_NAMES_IF_DESCRIBED = _timeback_names()
_TIMEBACK_READABLE = _NAMES_IF_DESCRIBED is not None  # False: the models changed, every event takes pydantic's path
_TIMEBACK_NAMES: frozenset[str] = _NAMES_IF_DESCRIBED or frozenset()


def _optional_text(node: dict[str, Any], key: str) -> None:
    value = node.get(key)
    if value is not None and type(value) is not str:
        raise _Unsure


def _optional_object(node: dict[str, Any], key: str) -> None:
    value = node.get(key)
    if value is not None and type(value) is not dict:
        raise _Unsure


def _object(node: dict[str, Any], key: str) -> dict[str, Any]:
    value = node.get(key)
    if type(value) is not dict or not _TIMEBACK_NAMES.isdisjoint(value):
        raise _Unsure
    return value


def _literal(node: dict[str, Any], key: str, expected: str) -> None:
    if key in node and (type(node[key]) is not str or node[key] != expected):
        raise _Unsure


def _non_empty_text(node: dict[str, Any], key: str) -> None:
    value = node.get(key)
    if type(value) is not str or not value:  # Field(min_length=1)
        raise _Unsure


def _named_ref(node: dict[str, Any], key: str, required: bool) -> None:
    if not required and node.get(key) is None:
        return
    ref = _object(node, key)
    for name in _NAMED_REF_OPTIONAL:
        _optional_text(ref, name)
    _optional_object(ref, "extensions")


def _time(value: Any) -> None:
    moment = parse_time(value)
    if moment is None or _STORAGE_WINDOW.problem(moment) is not None:
        raise _Unsure


def _metric(item: Any, kind: str) -> dict[str, Any]:
    if type(item) is not dict or not _TIMEBACK_NAMES.isdisjoint(item):
        raise _Unsure
    metric = item.get("type")
    if type(metric) is not str or metric not in _METRICS[kind]:
        raise _Unsure
    value = item.get("value")
    number = coerce_number(value) if type(value) in (int, float, str) else None  # never a bool
    if number is None or (kind == "TimeSpentEvent" and not number >= 0):
        raise _Unsure
    _optional_object(item, "extensions")
    if kind == "TimeSpentEvent":
        _optional_text(item, "subType")
        for name in ("startDate", "endDate"):
            if item.get(name) is not None:
                _time(item[name])
    return {**item, "value": number}  # the model's float; the times stay as sent (the normalizer reads them so)


def timeback_typed(document: dict[str, Any]) -> dict[str, Any] | None:
    """The Timeback model's dump of an ``is_timeback_event`` document, with its times as sent; None when unsure."""
    if not _TIMEBACK_READABLE:
        return None
    try:
        kind = document.get("type")
        if type(kind) is not str or kind not in _ACTION:
            raise _Unsure
        if not _TIMEBACK_NAMES.isdisjoint(document) or document.get("action") != _ACTION[kind]:
            raise _Unsure
        identifier = document.get("id")
        if type(identifier) is not str or not identifier.startswith("urn:uuid:"):
            raise _Unsure
        if type(document.get("@context")) not in (str, list, dict, type(None)):
            raise _Unsure
        actor = _object(document, "actor")
        _non_empty_text(actor, "id")
        _literal(actor, "type", "TimebackUser")
        for name in ("email", "name", "role"):
            _optional_text(actor, name)
        _optional_object(actor, "extensions")
        context = _object(document, "object")
        _non_empty_text(context, "id")
        _literal(context, "type", "TimebackActivityContext")
        if type(context.get("subject")) is not str:
            raise _Unsure
        _named_ref(context, "app", required=True)
        _named_ref(context, "course", required=False)
        _named_ref(context, "activity", required=False)
        _time(document.get("eventTime"))
        for name in _REFERENCES:
            if type(document.get(name)) not in (str, dict, type(None)):
                raise _Unsure
        _optional_object(document, "extensions")
        generated = _object(document, "generated")
        _optional_text(generated, "id")
        _literal(generated, "type", _COLLECTION[kind])
        _optional_object(generated, "extensions")
        items = generated.get("items")
        if type(items) is not list:
            raise _Unsure
        return {**document, "generated": {**generated, "items": [_metric(item, kind) for item in items]}}
    except _Unsure:
        return None
