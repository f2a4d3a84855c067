"""The engine: walks a parsed Caliper payload with the tables of ``entity_rules`` / ``event_rules``.

At import time every rule is compiled into a plain checker function and every type's table is
merged with its supertypes' tables, so validating is a walk over dicts with no per-call
compilation.  Every problem is reported (not only the first), each with a dotted path relative
to what was validated (``actor.email``, ``generated.items[2].type``; ``""`` is the root).

Tolerances (real payloads are messy): entity references may be an IRI string or an embedded
object; ``@context`` may be the Caliper IRI, an inline context object, or a list whose last
element is the Caliper IRI; timestamps may omit the UTC offset; properties this model does not
know are kept and not reported -- except an adjacent-letter swap of a known property name
(``endedAtTiem``), which is reported as the typo it is (the corpus requires that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from schemas.caliper import terms
from schemas.caliper.entity_rules import ENTITY_RULES, Kind, ListOf, Record, Ref, Rule, Scalar, Term
from schemas.caliper.event_rules import BASE_EVENT, EVENT_RULES
from schemas.caliper.scalars import (
    SCALAR_CHECKERS,
    Checker,
    Errors,
    FieldError,
    check_integer,
    check_iri,
    check_object,
    child_path,
    format_accepted_values,
    json_type_name,
)
from schemas.caliper.terms import CALIPER_CONTEXT_V1P2

__all__ = ["FieldError", "is_event", "validate_caliper_item", "validate_endpoint_config", "validate_envelope"]


# --- compiled types ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CompiledType:
    name: str
    properties: Mapping[str, Checker]
    required: tuple[str, ...]
    event: terms.EventTypeTerm | None = None  # set for event types: allowed actions and profiles
    required_for_action: Mapping[str, tuple[str, ...]] | None = None


_COMPILED: dict[str, _CompiledType] = {}  # filled below, read by the Ref checkers at call time


def _compile_term(rule: Term) -> Checker:
    values, vocabulary = rule.values, rule.vocabulary
    accepted_values = format_accepted_values(values)

    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not str:
            errors.append(FieldError(path, f"expected a {vocabulary} (string), got {json_type_name(value)}"))
        elif value not in values:
            errors.append(FieldError(path, f"unknown {vocabulary} {value!r}; accepted values: {accepted_values}"))

    return check


def _compile_ref(rule: Ref) -> Checker:
    allowed = terms.entity_subtypes(*rule.types)
    wanted = " or ".join(rule.types)
    fallback_type = rule.types[0]
    iri_allowed = rule.iri_allowed
    shape = f"an IRI or an embedded {wanted} object" if iri_allowed else f"an embedded {wanted} object"

    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is dict:
            _validate_typed_object(value, path, errors, allowed, wanted, fallback_type)
        elif type(value) is str and iri_allowed:
            check_iri(value, path, errors)
        else:
            errors.append(FieldError(path, f"expected {shape}, got {json_type_name(value)}"))

    return check


def _compile_list(rule: ListOf) -> Checker:
    check_item = _compile_rule(rule.item)

    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not list:
            errors.append(FieldError(path, f"expected a list, got {json_type_name(value)}"))
            return
        for index, item in enumerate(value):
            if item is None:
                errors.append(FieldError(f"{path}[{index}]", "must not be null"))
            else:
                check_item(item, f"{path}[{index}]", errors)

    return check


def _compile_record(rule: Record) -> Checker:
    properties = {name: _compile_rule(sub_rule) for name, sub_rule in rule.properties.items()}
    required, record_name = rule.required, rule.name

    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not dict:
            errors.append(FieldError(path, f"expected a {record_name} object, got {json_type_name(value)}"))
            return
        _check_properties(value, path, errors, properties, required)

    return check


def _compile_rule(rule: Rule) -> Checker:
    if isinstance(rule, Scalar):
        return SCALAR_CHECKERS[rule.kind]
    if isinstance(rule, Term):
        return _compile_term(rule)
    if isinstance(rule, Ref):
        return _compile_ref(rule)
    if isinstance(rule, ListOf):
        return _compile_list(rule)
    return _compile_record(rule)


def _without_type(required: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Required names minus ``type``, which ``_validate_typed_object`` checks itself."""
    return tuple(name for name in dict.fromkeys(required) if name != "type")


def _compile_entity(type_name: str) -> _CompiledType:
    properties: dict[str, Checker] = {}
    required: list[str] = []
    for ancestor in reversed(terms.ENTITY_LINEAGE[type_name]):  # root first, so subtypes override
        table = ENTITY_RULES[ancestor]
        properties.update((name, _compile_rule(rule)) for name, rule in table.properties.items())
        required.extend(name for name in table.required if name not in required)
    return _CompiledType(type_name, properties, _without_type(required))


def _compile_event(type_name: str) -> _CompiledType:
    table = EVENT_RULES[type_name]
    merged = {**BASE_EVENT.properties, **table.properties}
    properties = {name: _compile_rule(rule) for name, rule in merged.items()}
    required = _without_type(BASE_EVENT.required + table.required)
    return _CompiledType(
        type_name, properties, required, terms.EVENT_TYPES[type_name], table.required_for_action or None
    )


_COMPILED.update({name: _compile_entity(name) for name in terms.ENTITY_SUPERTYPE})
_COMPILED.update({name: _compile_event(name) for name in terms.EVENT_TYPES})
_EVENT_TYPES: Final = frozenset(terms.EVENT_TYPES)
_KNOWN_TYPES_HINT: Final = "a Caliper 1.2 Event or Entity type (e.g. ViewEvent, Person)"


# --- the walk ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _transposition_of(type_name: str, key: str) -> str | None:
    """The known property of ``type_name`` that ``key`` is an adjacent-letter swap of, if any."""
    for known in _COMPILED[type_name].properties:
        if len(known) != len(key) or known == key:
            continue
        diff = [i for i, (a, b) in enumerate(zip(known, key, strict=True)) if a != b]
        if (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and known[diff[0]] == key[diff[1]]
            and known[diff[1]] == key[diff[0]]
        ):
            return known
    return None


def _check_properties(
    obj: Mapping[str, Any],
    path: str,
    errors: Errors,
    properties: Mapping[str, Checker],
    required: tuple[str, ...],
    type_name: str | None = None,
) -> None:
    for key, value in obj.items():
        check = properties.get(key)
        if check is not None:
            key_path = f"{path}.{key}" if path else key
            if value is None:
                errors.append(FieldError(key_path, "must not be null"))
            else:
                check(value, key_path, errors)
        elif type_name is not None and key not in ("type", "action", "profile"):
            intended = _transposition_of(type_name, key)
            if intended is not None:
                errors.append(
                    FieldError(child_path(path, key), f"unknown property {key!r}: misspelling of {intended!r}?")
                )
    for name in required:
        if name not in obj:
            errors.append(FieldError(child_path(path, name), "required property is missing"))


def _check_event_terms(obj: Mapping[str, Any], path: str, errors: Errors, compiled: _CompiledType) -> None:
    event = compiled.event
    assert event is not None
    action = obj.get("action")
    if action is not None:  # a missing action is reported by the required check
        if type(action) is not str or action not in event.actions:
            errors.append(
                FieldError(
                    child_path(path, "action"),
                    f"action {action!r} is not allowed for {compiled.name}; "
                    f"accepted values: {format_accepted_values(event.actions)}",
                )
            )
        elif compiled.required_for_action:
            for name in compiled.required_for_action.get(action, ()):
                if name not in obj:
                    errors.append(FieldError(child_path(path, name), f"required when action is {action!r}"))
    if "profile" in obj:
        profile = obj["profile"]
        if type(profile) is not str or profile not in terms.KNOWN_PROFILES:
            errors.append(
                FieldError(
                    child_path(path, "profile"),
                    f"unknown profile {profile!r}; accepted values: {format_accepted_values(terms.KNOWN_PROFILES)}",
                )
            )
        elif profile not in event.profiles:
            errors.append(
                FieldError(
                    child_path(path, "profile"),
                    f"{compiled.name} is not part of {profile}; "
                    f"accepted values: {format_accepted_values(event.profiles)}",
                )
            )


def _validate_typed_object(
    obj: Mapping[str, Any],
    path: str,
    errors: Errors,
    allowed: frozenset[str] | None,
    wanted: str,
    fallback_type: str,
) -> None:
    """Validate an object whose rules come from its ``type``; ``allowed=None`` accepts any type."""
    type_name = obj.get("type")
    compiled = _COMPILED.get(type_name) if type(type_name) is str else None
    type_path = child_path(path, "type")
    if type_name is None:
        problem = "must not be null" if "type" in obj else "required property is missing"
        errors.append(FieldError(type_path, f"{problem}; expected {wanted}"))
    elif compiled is None:
        errors.append(FieldError(type_path, f"unknown type {type_name!r}; expected {wanted}"))
    elif allowed is not None and type_name not in allowed:
        errors.append(FieldError(type_path, f"type {type_name!r} is not allowed here; expected {wanted}"))
    if compiled is None:  # still report what can be checked, with the rules of the expected type
        compiled = _COMPILED[fallback_type]
    _check_properties(obj, path, errors, compiled.properties, compiled.required, compiled.name)
    if compiled.event is not None:
        _check_event_terms(obj, path, errors, compiled)


# --- public API ----------------------------------------------------------------------------------


def is_event(item: Mapping[str, Any]) -> bool:
    """True when ``type`` is an Event type (or the item has actor + action + eventTime)."""
    type_name = item.get("type")
    if type(type_name) is str and type_name in _EVENT_TYPES:
        return True
    return "actor" in item and "action" in item and "eventTime" in item


def validate_caliper_item(item: object) -> list[FieldError]:
    """Validate one Event or Entity (a parsed JSON value). Empty list = valid. Reports EVERY problem."""
    errors: Errors = []
    if type(item) is not dict:
        errors.append(FieldError("", f"expected a Caliper Event or Entity object, got {json_type_name(item)}"))
        return errors
    fallback = "Event" if is_event(item) else "Entity"
    _validate_typed_object(item, "", errors, None, _KNOWN_TYPES_HINT, fallback)
    return errors


_check_send_time: Final = SCALAR_CHECKERS[Kind.DATETIME]


def validate_envelope(payload: object) -> list[FieldError]:
    """Validate a whole envelope {sensor, sendTime, dataVersion, data[>=1]}; item errors are
    prefixed with data[i]."""
    if type(payload) is not dict:
        return [FieldError("", f"expected a Caliper envelope object, got {json_type_name(payload)}")]
    errors: Errors = []
    for name in ("sensor", "sendTime", "dataVersion", "data"):
        if payload.get(name) is None:
            errors.append(FieldError(name, "required property is missing"))
    sensor, send_time = payload.get("sensor"), payload.get("sendTime")
    if sensor is not None:
        check_iri(sensor, "sensor", errors)
    if send_time is not None:
        _check_send_time(send_time, "sendTime", errors)
    data_version = payload.get("dataVersion")
    if data_version is not None and data_version != CALIPER_CONTEXT_V1P2:
        errors.append(
            FieldError("dataVersion", f"unsupported dataVersion {data_version!r}; accepted: {CALIPER_CONTEXT_V1P2}")
        )
    data = payload.get("data")
    if data is not None:
        if type(data) is not list:
            errors.append(FieldError("data", f"expected a list of Events and Entities, got {json_type_name(data)}"))
        elif not data:
            errors.append(FieldError("data", "must hold at least one Event or Entity"))
        else:
            for index, item in enumerate(data):
                prefix = f"data[{index}]"
                for error in validate_caliper_item(item):
                    path = f"{prefix}.{error.path}" if error.path else prefix
                    errors.append(FieldError(path, error.message))
    return errors


def validate_endpoint_config(payload: object) -> list[FieldError]:
    """Validate a Caliper 1.2 endpoint configuration document (what a receiver's config endpoint
    returns): caliper_supported_versions (list of IRIs, required), caliper_maximum_payload_size
    (integer), caliper_supported_extensions (object)."""
    if type(payload) is not dict:
        return [FieldError("", f"expected an endpoint configuration object, got {json_type_name(payload)}")]
    errors: Errors = []
    versions = payload.get("caliper_supported_versions")
    if versions is None:
        errors.append(FieldError("caliper_supported_versions", "required property is missing"))
    elif type(versions) is not list:
        errors.append(FieldError("caliper_supported_versions", f"expected a list, got {json_type_name(versions)}"))
    else:
        for index, version in enumerate(versions):
            check_iri(version, f"caliper_supported_versions[{index}]", errors)
    size = payload.get("caliper_maximum_payload_size")
    if size is not None:
        check_integer(size, "caliper_maximum_payload_size", errors)
    extensions = payload.get("caliper_supported_extensions")
    if extensions is not None:
        check_object(extensions, "caliper_supported_extensions", errors)
    return errors
