"""The engine: walks a parsed Caliper payload with the tables of ``entity_rules`` / ``event_rules``.

At import time every rule is compiled into a plain checker function and every type's table is
merged with its supertypes' tables, so validating is a walk over dicts with no per-call
compilation.  Every problem is reported (not only the first), each with a dotted path relative
to what was validated (``actor.email``, ``generated.items[2].type``; ``""`` is the root), and
every value is held to the bounds of ``schemas.limits`` (``limits=``, default ``DEFAULT_LIMITS``),
so that what is accepted can be normalized and loaded.

Tolerances (real payloads are messy): entity references may be an IRI string or an embedded
object; ``@context`` may be the Caliper IRI, an inline context object, or a list whose last
element is the Caliper IRI; timestamps may omit the UTC offset; properties this model does not
know are kept and not reported -- except an adjacent-letter swap of a known property name
(``endedAtTiem``), which is reported as the typo it is (the corpus requires that); ``null`` on an
optional property means the property is absent (the IMS reference sensor writes ``"description":
null``; JSON-LD drops null values too) -- ``schemas.caliper.envelope.check_envelope`` returns the
envelope without them --,
while ``null`` on a required property is an error; JSON integers are accepted for decimal
properties unless ``strict_decimals=True`` (the IMS corpus's reading).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from schemas.caliper import terms
from schemas.caliper.entity_rules import ENTITY_RULES, ListOf, Record, Ref, Rule, Scalar, Term
from schemas.caliper.event_rules import BASE_EVENT, EVENT_RULES
from schemas.caliper.fact_paths import check_fact_paths
from schemas.caliper.scalars import (
    SCALAR_CHECKERS,
    Checker,
    Walk,
    check_iri,
    child_path,
    format_accepted_values,
    json_type_name,
)
from schemas.caliper.versions import CALIPER_1_2, VERSIONS, CaliperVersion, caliper_context_iri
from schemas.errors import FieldProblem
from schemas.limits import DEFAULT_LIMITS, ValidationLimits
from schemas.reasons import ReasonCode

__all__ = ["is_event", "validate_caliper_item", "walk_item"]


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

    def check(value: Any, path: str, walk: Walk) -> None:
        if type(value) is not str:
            walk.add(path, f"expected a {vocabulary} (string), got {json_type_name(value)}")
        elif value not in values:
            walk.add(path, f"unknown {vocabulary}; accepted values: {accepted_values}")

    return check


def _too_deep(path: str, walk: Walk) -> bool:
    """Report that the container at ``path`` (one level below ``walk.depth``) nests too deep; always True.
    Callers test ``walk.depth >= walk.max_depth`` first (inline: this walk is the validator's hot path)."""
    walk.add(path, f"nested more than {walk.max_depth} levels of objects and arrays deep")
    return True


def _compile_ref(rule: Ref) -> Checker:
    allowed = terms.entity_subtypes(*rule.types)
    wanted = " or ".join(rule.types)
    fallback_type = rule.types[0]
    iri_allowed = rule.iri_allowed
    shape = f"an IRI or an embedded {wanted} object" if iri_allowed else f"an embedded {wanted} object"

    def check(value: Any, path: str, walk: Walk) -> None:
        if type(value) is dict:
            _validate_typed_object(value, path, walk, allowed, wanted, fallback_type)
        elif type(value) is str and iri_allowed:
            check_iri(value, path, walk)
        else:
            walk.add(path, f"expected {shape}, got {json_type_name(value)}")

    return check


def _compile_list(rule: ListOf) -> Checker:
    check_item = _compile_rule(rule.item)

    def check(value: Any, path: str, walk: Walk) -> None:
        if type(value) is not list:
            walk.add(path, f"expected a list, got {json_type_name(value)}")
            return
        if walk.depth >= walk.max_depth and _too_deep(path, walk):
            return
        walk.depth += 1
        for index, item in enumerate(value):
            if item is None:
                walk.add(f"{path}[{index}]", "must not be null")
            else:
                check_item(item, f"{path}[{index}]", walk)
        walk.depth -= 1

    return check


def _compile_record(rule: Record) -> Checker:
    properties = {name: _compile_rule(sub_rule) for name, sub_rule in rule.properties.items()}
    required, record_name = rule.required, rule.name

    def check(value: Any, path: str, walk: Walk) -> None:
        if type(value) is not dict:
            walk.add(path, f"expected a {record_name} object, got {json_type_name(value)}")
        elif walk.depth < walk.max_depth or not _too_deep(path, walk):
            walk.depth += 1
            _check_properties(value, path, walk, properties, required)
            walk.depth -= 1

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


def merged_rules(type_name: str) -> tuple[dict[str, Rule], tuple[str, ...], Mapping[str, tuple[str, ...]]]:
    """The rules of a type merged with its supertypes' (an event's with ``Event``'s): every property's rule, the
    required names (without ``type``) and, for events, the properties each action makes required."""
    if type_name in EVENT_RULES:
        table = EVENT_RULES[type_name]
        return ({**BASE_EVENT.properties, **table.properties}, _without_type(BASE_EVENT.required + table.required),
                table.required_for_action)
    rules: dict[str, Rule] = {}
    required: list[str] = []
    for ancestor in reversed(terms.ENTITY_LINEAGE[type_name]):  # root first, so subtypes override
        entity_table = ENTITY_RULES[ancestor]
        rules.update(entity_table.properties)
        required.extend(name for name in entity_table.required if name not in required)
    return rules, _without_type(required), {}


def _compile_type(type_name: str) -> _CompiledType:
    rules, required, required_for_action = merged_rules(type_name)
    properties = {name: _compile_rule(rule) for name, rule in rules.items()}
    return _CompiledType(type_name, properties, required, terms.EVENT_TYPES.get(type_name),
                         required_for_action or None)


_COMPILED.update({name: _compile_type(name) for name in (*terms.ENTITY_SUPERTYPE, *terms.EVENT_TYPES)})


def _compile_version(version: CaliperVersion) -> dict[str, _CompiledType]:
    """The compiled types under ``version``: the shared ones, but for the event types whose entity properties
    the version widens (``CaliperVersion.widened_refs``)."""
    compiled = dict(_COMPILED)
    for type_name, widened in version.widened_refs.items():
        rules, required, required_for_action = merged_rules(type_name)
        for name, extra_types in widened.items():
            rule = rules[name]
            assert isinstance(rule, Ref), (type_name, name)
            rules[name] = Ref((*rule.types, *extra_types), rule.iri_allowed)
        compiled[type_name] = _CompiledType(type_name, {name: _compile_rule(rule) for name, rule in rules.items()},
                                            required, terms.EVENT_TYPES.get(type_name), required_for_action or None)
    return compiled


_COMPILED_BY_VERSION: Final = {version.label: _compile_version(version) for version in VERSIONS.values()}
_EVENT_TYPES: Final = frozenset(terms.EVENT_TYPES)
_KNOWN_TYPES_HINT: Final = "a Caliper Event or Entity type (e.g. ViewEvent, Person)"
TIMEBACK_EVENTS: Final = frozenset({"ActivityEvent", "TimeSpentEvent"})  # the Timeback normalizer's events


# --- the walk ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def transposition_of(type_name: str, key: str) -> str | None:
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
    obj: dict[str, Any],
    path: str,
    walk: Walk,
    properties: Mapping[str, Checker],
    required: tuple[str, ...],
    type_name: str | None = None,
) -> None:
    for key, value in obj.items():
        check = properties.get(key)
        if check is not None:
            key_path = f"{path}.{key}" if path else key
            if value is not None:
                check(value, key_path, walk)
            elif key in required:
                walk.add(key_path, "required property must not be null", missing=True)
            else:  # an optional property sent as null is absent
                walk.nulls.append((obj, key))
        elif type_name is not None and key not in ("type", "action", "profile"):
            intended = transposition_of(type_name, key)
            if intended is not None:
                walk.add(child_path(path, key), f"unknown property {key!r}: misspelling of {intended!r}?")
    for name in required:
        if name not in obj:
            walk.add(child_path(path, name), "required property is missing", missing=True)
        elif name not in properties and obj[name] is None:  # action, profile: checked by the engine
            walk.add(child_path(path, name), "required property must not be null", missing=True)


def _check_event_terms(obj: Mapping[str, Any], path: str, walk: Walk, compiled: _CompiledType) -> None:
    event = compiled.event
    assert event is not None
    action = obj.get("action")
    if action is not None:  # a missing or null action is reported by the required check
        if type(action) is not str or action not in event.actions:
            walk.add(
                child_path(path, "action"),
                f"action not allowed for {compiled.name}; "
                f"accepted values: {format_accepted_values(event.actions)}",
            )
        elif compiled.required_for_action:
            for name in compiled.required_for_action.get(action, ()):
                if obj.get(name) is None:
                    walk.add(child_path(path, name), f"required when action is {action!r}", missing=True)
    profile = obj.get("profile")
    if profile is not None:  # optional unless the type requires it (then the required check reports null)
        if type(profile) is not str or profile not in walk.version.profiles:
            walk.add(
                child_path(path, "profile"),
                f"unknown profile in Caliper {walk.version.label}; "
                f"accepted values: {format_accepted_values(walk.version.profiles)}", code=ReasonCode.UNKNOWN_PROFILE,
            )
        elif profile not in event.profiles:
            walk.add(
                child_path(path, "profile"),
                f"{compiled.name} is not part of {profile}; accepted values: {format_accepted_values(event.profiles)}",
                code=ReasonCode.UNKNOWN_PROFILE,
            )
    elif "profile" in obj and "profile" not in compiled.required:
        walk.nulls.append((obj, "profile"))  # type: ignore[arg-type]  # obj is the walked dict


def _validate_typed_object(
    obj: dict[str, Any],
    path: str,
    walk: Walk,
    allowed: frozenset[str] | None,
    wanted: str,
    fallback_type: str,
) -> None:
    """Validate an object whose rules come from its ``type``; ``allowed=None`` accepts any type."""
    if walk.depth >= walk.max_depth and _too_deep(path, walk):
        return
    type_name = obj.get("type")
    compiled = _COMPILED_BY_VERSION[walk.version.label].get(type_name) if type(type_name) is str else None
    type_path = child_path(path, "type")
    if type_name is None:
        problem = "must not be null" if "type" in obj else "required property is missing"
        walk.add(type_path, f"{problem}; expected {wanted}", missing=True)
    elif compiled is None:
        if not walk.foreign_types:  # else a type of the other vocabulary the item's @context names
            walk.add(type_path, f"unknown type; expected {wanted}", code=ReasonCode.UNKNOWN_TYPE)
    elif allowed is not None and type_name not in allowed:
        walk.add(type_path, f"type {type_name!r} is not allowed here; expected {wanted}", code=ReasonCode.UNKNOWN_TYPE)
    elif compiled.event is not None and type_name not in walk.event_types:
        walk.add(type_path, f"{type_name} is not a Caliper {walk.version.label} event type under this @context; "
                            f"accepted values: {format_accepted_values(walk.event_types)}",
                 code=ReasonCode.UNKNOWN_TYPE)
    if compiled is None:  # still report what can be checked, with the rules of the expected type
        compiled = _COMPILED[fallback_type]
    walk.depth += 1
    _check_properties(obj, path, walk, compiled.properties, compiled.required, compiled.name)
    if compiled.event is not None:
        _check_event_terms(obj, path, walk, compiled)
    walk.depth -= 1


# --- public API ----------------------------------------------------------------------------------


def is_event(item: Mapping[str, Any]) -> bool:
    """True when ``type`` is an Event type (or the item has actor + action + eventTime)."""
    type_name = item.get("type")
    if type(type_name) is str and type_name in _EVENT_TYPES:
        return True
    return "actor" in item and "action" in item and "eventTime" in item


def _use_item_context(item: Mapping[str, Any], path: str, walk: Walk, event: bool) -> None:
    """Set what the item may use from its ``@context`` under the walk's version (``versions``): the event types
    of the context it names (else of the version's core context), and whether another vocabulary's types are
    accepted (a list context naming another vocabulary, where the version allows it)."""
    version = walk.version
    context = item.get("@context")
    iri = caliper_context_iri(context)
    walk.event_types = version.event_types_by_context.get(iri or "", version.event_types_by_context[
        version.data_version])
    walk.foreign_types = version.foreign_types and type(context) is list and len(context) > 1
    if event and version.event_context_required and context is None:
        walk.add(child_path(path, "@context"), f"required property is missing (every Caliper {version.label} "
                                               f"Event carries its @context)", missing=True)


def walk_item(item: object, path: str, walk: Walk) -> None:
    """Validate one envelope item at ``path`` within ``walk``."""
    if type(item) is not dict:
        walk.add(path, f"expected a Caliper Event or Entity object, got {json_type_name(item)}")
        return
    event = is_event(item)
    _use_item_context(item, path, walk, event)
    _validate_typed_object(item, path, walk, None, _KNOWN_TYPES_HINT, "Event" if event else "Entity")
    type_name = item.get("type")
    if event and not (item.get("profile") == "TimebackProfile" and type(type_name) is str
                      and type_name in TIMEBACK_EVENTS):
        check_fact_paths(item, path, walk)  # (the Timeback normalizer reads only what the Timeback rules type)


def validate_caliper_item(item: object, limits: ValidationLimits = DEFAULT_LIMITS, *,
                          strict_decimals: bool = False, now: datetime | None = None,
                          version: CaliperVersion = CALIPER_1_2) -> list[FieldProblem]:
    """Validate one Event or Entity (a parsed JSON value). Empty list = valid. Reports EVERY problem.

    ``limits``: the bounds of ``schemas.limits`` (event-time window, magnitudes, depth...); ``strict_decimals``:
    refuse JSON integers for decimal properties (the IMS conformance corpus's reading); ``now``: the instant the
    event-time window is computed from (default: the current time); ``version``: whose terms apply."""
    walk = Walk(limits, strict_decimals, now, version)
    walk_item(item, "", walk)
    return walk.problems
