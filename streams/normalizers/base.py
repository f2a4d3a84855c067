"""Declarative conversion of an event document into the fields of a LearningFact.

A converter is a ``ConversionSet``: an ordered tuple of ``FieldRule(source path, destination field, transform)``
entries, in the manner of ralph's xAPI converters. ``ConversionSet.convert`` walks the rules, reads each source
path (dotted, e.g. ``object.assignable.skillCode``), transforms the value and stores it in its fact field:

- a transform returning ``None`` means "not mappable": the rule is skipped and the value stays in the remainder;
- a rule whose destination an earlier rule already filled is skipped (earlier rules have priority);
- a rule with ``destination=None`` has a transform that returns several fact fields at once (a dict);
- a rule with ``destination=CONSUMED`` swallows a value that has no fact field and need not be kept;
- ``leftover`` decides what of a mapped value is still kept (e.g. per-item attributes of a metrics list);
- ``consume=False`` reads a value without removing it (another rule maps the same value too);
- a ``zoned`` rule's transform also gets the tenant's time zone (``time_rule``: an offset-less date-time is a
  wall-clock time of the tenant, not UTC).

Everything not mapped is the remainder, stored as the fact's ``extensions_json`` so nothing is lost, but for
the personal data in it: its ``extensions`` objects and Person entities go through the personal-data policy
first (``schemas.personal_data``: e-mails and logins pseudonymized, IP addresses, user agents and names dropped).
``build_fact`` turns the converted fields plus the raw event's routing metadata into the LearningFact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

import orjson

from schemas.caliper import CALIPER_CONTEXT_V1P1, CALIPER_CONTEXT_V1P2, version_of_context
from schemas.caliper.versions import caliper_context_iri
from schemas.coerce import coerce_bool, coerce_int, coerce_number, zoned_time_to_ms
from schemas.errors import NormalizationError, UnknownTimeZoneError
from schemas.event_identity import (  # noqa: F401 (re-exported: the normalizers' names for them)
    canonical_id,
    canonical_json,
    has_upper_case_uuid_urn,
    lower_uuid_urns,
)
from schemas.personal_data import Pseudonymizer, policy_from_text
from schemas.privacy import student_key_for
from schemas.records import LearningFact, RawEvent, content_hash_of, fact_id_for, pseudonymize_email
from schemas.tenants import DEFAULT_TIMEZONE, local_days, zone_for
from streams.normalizers.compiler import Converter, compile_conversion

CONSUMED = "__consumed__"
_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$")

# Any: a transform takes the value, and a zoned one the tenant's time zone as well
Transform = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class NormalizeOptions:
    """What a normalizer needs besides the event: the pseudonymization keys and the version stamp."""

    email_hash_key: bytes
    keep_raw_email: bool
    normalizer_version: str
    student_key: bytes


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Map the value at ``source`` (a dotted path) through ``transform`` into the fact field ``destination``."""

    source: str
    destination: str | None
    transform: Transform | None = None
    leftover: Callable[[Any], Any] | None = None
    consume: bool = True
    zoned: bool = False
    keys: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.source.split(".")))


class _PathNode:
    """One key of the rules' source paths: the rules ending here and the keys below (built once per set)."""

    __slots__ = ("below", "children", "ending")

    def __init__(self) -> None:
        self.children: dict[str, _PathNode] = {}
        self.ending: list[int] = []  # indexes of the rules whose source path ends at this key
        self.below: set[int] = set()  # indexes of the rules whose source path passes through this key


@dataclass(frozen=True, slots=True)
class ConversionSet:
    """An ordered set of rules: the declarative description of one source's conversion."""

    name: str
    rules: tuple[FieldRule, ...]
    _paths: _PathNode = field(init=False, repr=False, compare=False)
    _compiled: Converter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        root = _PathNode()
        for index, rule in enumerate(self.rules):
            node = root
            for key in rule.keys:
                node = node.children.setdefault(key, _PathNode())
                node.below.add(index)
            node.ending.append(index)
        object.__setattr__(self, "_paths", root)
        # the rules as one straight-line function (streams.normalizers.compiler), built once with the set
        object.__setattr__(self, "_compiled", compile_conversion(self.name, self.rules, root, CONSUMED))

    def extended(self, name: str, first: Iterable[FieldRule] = (), then: Iterable[FieldRule] = ()) -> ConversionSet:
        """A new set with extra rules before (higher priority) and after this one's."""
        return ConversionSet(name, (*first, *self.rules, *then))

    def convert(self, document: dict[str, Any], zone: tzinfo = UTC) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fact fields the rules produce, and the remainder of the document nothing mapped; offset-less times
        are read in ``zone`` (the tenant's). Runs the compiled rules: the semantics of ``convert_interpreted``."""
        return self._compiled(document, zone)

    def convert_interpreted(self, document: dict[str, Any],
                            zone: tzinfo = UTC) -> tuple[dict[str, Any], dict[str, Any]]:
        """``convert`` by walking the rules one by one: the reference the compiled function is tested against."""
        values: dict[str, Any] = {}
        consumed: set[int] = set()
        for index, rule in enumerate(self.rules):
            destination = rule.destination
            if destination is not None and destination in values:
                continue
            value: Any = document
            for key in rule.keys:
                if type(value) is not dict:
                    value = None
                    break
                value = value.get(key)
            if value is None:
                continue
            if rule.transform is None:
                result = value
            else:
                result = rule.transform(value, zone) if rule.zoned else rule.transform(value)
            if result is None:
                continue
            if destination is None:
                if any(name in values for name in result):
                    continue
                values.update(result)
            elif destination != CONSUMED:
                values[destination] = result
            if rule.consume:
                consumed.add(index)
        if not consumed:
            return values, dict(document)
        return values, self._remainder(document, self._paths, consumed)

    def _remainder(self, document: dict[str, Any], node: _PathNode, consumed: set[int]) -> dict[str, Any]:
        """A copy of ``document`` without the consumed paths (nor the objects they leave empty)."""
        result = dict(document)
        for key, child in node.children.items():
            if key not in result or child.below.isdisjoint(consumed):
                continue
            taken = [index for index in child.ending if index in consumed]
            if taken:
                leftover = self.rules[taken[0]].leftover
                kept = leftover(result[key]) if leftover is not None else None
                if kept:
                    result[key] = kept
                else:
                    del result[key]
            elif child.children and type(result[key]) is dict:
                nested = self._remainder(result[key], child, consumed)
                if nested:
                    result[key] = nested
                else:
                    del result[key]
        return result


# --- transforms -------------------------------------------------------------------------------------------


def text(value: Any) -> str | None:
    """A non-empty string (numbers become their text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float):
        return str(value)
    return None


def iri(value: Any) -> str | None:
    """A reference given as a plain IRI string (an object reference is mapped by its ``.id`` rule instead)."""
    return value if isinstance(value, str) and value.strip() else None


def millis(value: Any, zone: tzinfo = UTC) -> int | None:
    """A date-time as UTC epoch milliseconds, offset-less in ``zone`` (``schemas.coerce.zoned_time_to_ms``)."""
    return zoned_time_to_ms(value, zone)


def time_rule(source: str, destination: str, *, consume: bool = True) -> FieldRule:
    """A rule reading a date-time, offset-less in the tenant's time zone (``millis``)."""
    return FieldRule(source, destination, millis, consume=consume, zoned=True)


def entity_rules(source: str, id_to: str, *, type_to: str | None = None, name_to: str | None = None,
                 by_iri: bool = False) -> tuple[FieldRule, ...]:
    """The rules of a Caliper entity at ``source``: with ``by_iri``, the entity given as its IRI alone (a string)
    into ``id_to``; its ``id`` into ``id_to``, and its ``type`` and ``name`` into ``type_to`` and ``name_to`` when
    those are given."""
    rules = [FieldRule(source, id_to, iri)] if by_iri else []
    rules.append(FieldRule(f"{source}.id", id_to, text))
    if type_to is not None:
        rules.append(FieldRule(f"{source}.type", type_to, text))
    if name_to is not None:
        rules.append(FieldRule(f"{source}.name", name_to, text))
    return tuple(rules)


def period_rules(source: str) -> tuple[FieldRule, FieldRule]:
    """When the attempt (or session...) at ``source`` started and ended."""
    return time_rule(f"{source}.startedAtTime", "started_time_ms"), time_rule(f"{source}.endedAtTime", "ended_time_ms")


def number(value: Any) -> float | None:
    return coerce_number(value)


def integer(value: Any) -> int | None:
    return coerce_int(value)


def boolean(value: Any) -> bool | None:
    return coerce_bool(value)


def duration_seconds(value: Any) -> float | None:
    """An ISO 8601 duration (``PT1H2M3.5S``, ``P1DT2H``) in seconds; plain numbers are seconds already."""
    if not isinstance(value, str):
        return coerce_number(value)
    match = _ISO_DURATION.match(value.strip().upper())
    if match is None or value.strip().upper() in ("P", "PT"):
        return coerce_number(value)
    parts = {name: float(part) for name, part in match.groupdict().items() if part is not None}
    return (parts.get("days", 0.0) * 86400 + parts.get("hours", 0.0) * 3600
            + parts.get("minutes", 0.0) * 60 + parts.get("seconds", 0.0))


# --- the fact ---------------------------------------------------------------------------------------------


def decode_payload(raw: RawEvent) -> dict[str, Any]:
    """The raw event's JSON payload as a dict; a NormalizationError if it is not a JSON object."""
    try:
        document = orjson.loads(raw.payload)
    except orjson.JSONDecodeError as error:
        raise NormalizationError(f"payload is not JSON: {error}", event_id=raw.event_id) from error
    if not isinstance(document, dict):
        raise NormalizationError("payload is not a JSON object", event_id=raw.event_id)
    return document


def tenant_zone(raw: RawEvent) -> tzinfo:
    """The tenant's time zone the gateway stamped on the event; a NormalizationError if it is unknown here."""
    if raw.tenant_timezone == DEFAULT_TIMEZONE:
        return UTC  # the same rules as ZoneInfo("UTC"), and the normalizers' fast path
    try:
        return zone_for(raw.tenant_timezone)
    except UnknownTimeZoneError as error:
        raise NormalizationError(str(error), event_id=raw.event_id) from error


def converted_fact(raw: RawEvent, document: dict[str, Any], conversion: ConversionSet, options: NormalizeOptions,
                   complete: Callable[[dict[str, Any]], None], typed: dict[str, Any] | None = None) -> LearningFact:
    """The fact of one event: ``conversion`` run over ``typed`` (the event as its model read it) or else the
    ``document`` as sent, offset-less times in the tenant's zone; ``complete`` adds to the values what the source
    knows beyond its rules (the learner, the contract's defaults); then ``build_fact``."""
    zone = tenant_zone(raw)
    values, remainder = conversion.convert(document if typed is None else typed, zone)
    complete(values)
    return build_fact(raw, document, values, remainder, options, zone)


def build_fact(raw: RawEvent, payload: dict[str, Any], values: dict[str, Any], remainder: dict[str, Any],
               options: NormalizeOptions, zone: tzinfo, fact_index: int = 0) -> LearningFact:
    """The LearningFact of converted ``values`` plus the raw event's routing metadata.

    ``values`` name the learner (``student_id``, ``learner_role``, ``learner_type``) as the source's normalizer
    found them; without a student the fact is loaded all the same, marked ``learner_role = "none"``.
    """
    event_id = canonical_id(values.pop("event_id", "") or raw.event_id)
    if not event_id:
        raise NormalizationError("the event has no id", event_id=raw.event_id)
    event_time_ms = values.pop("event_time_ms", None)
    if event_time_ms is None:
        raise NormalizationError("the event has no readable event time", event_id=event_id)
    student_id = values.pop("student_id", "")
    email = values.pop("student_email", "")
    if not student_id:  # nobody to attribute the event to: say so, never name the actor (an application) instead
        values["learner_role"], values["learner_type"], email = "none", "", ""
    # the remainder without personal data in clear (schemas.personal_data), by the tenant's policy the gateway
    # stamped on the raw event; the payload says the entities' types
    kept = Pseudonymizer(raw.tenant, options.email_hash_key, options.student_key,
                         policy_from_text(raw.extensions_policy)).document(remainder, payload)
    score, maximum = values.get("score_given"), values.get("max_score")
    if score is not None and maximum is not None and maximum > 0 and "score_ratio" not in values:
        values["score_ratio"] = score / maximum
    return LearningFact(
        fact_id=fact_id_for(raw.tenant, event_id, fact_index),
        fact_index=fact_index,
        content_hash=content_hash_of(canonical_json(payload)),
        tenant=raw.tenant,
        client_id=raw.client_id,
        source=raw.source,
        event_id=event_id,
        event_type=values.pop("event_type", "") or raw.event_type,
        profile=values.pop("profile", "") or raw.profile,
        action=values.pop("action", ""),
        event_time_ms=event_time_ms,
        send_time_ms=raw.send_time_ms or None,  # 0: the source has no sendTime (the hub)
        received_time_ms=raw.received_time_ms,
        event_date_days=local_days(event_time_ms, zone),
        tenant_timezone=raw.tenant_timezone,
        sensor=raw.sensor,
        student_id=student_id,
        student_email_hash=pseudonymize_email(email, options.email_hash_key),
        student_key=student_key_for(raw.tenant, student_id, options.student_key),
        student_email=email if options.keep_raw_email else "",
        normalizer_version=options.normalizer_version,
        extensions_json=canonical_json(kept).decode(),
        **values,
    )


# the v1p2 and v1p1 context IRIs as the spec writes them (http) and their https forms, which senders also use
CALIPER_STANDARD_CONTEXTS = frozenset(
    iri.replace("http://", scheme, 1) for iri in (CALIPER_CONTEXT_V1P2, CALIPER_CONTEXT_V1P1)
    for scheme in ("http://", "https://"))


def standard_context(value: Any) -> bool | None:
    """Swallow a standard ``@context`` string (no information beyond the version, which ``caliper_version``
    keeps); anything else is kept."""
    return True if isinstance(value, str) and value.strip() in CALIPER_STANDARD_CONTEXTS else None


def caliper_version(value: Any) -> str | None:
    """The Caliper version (``"1.1"``, ``"1.2"``) an event's ``@context`` names -- the IRI, or a list ending with
    it, http or https; None (the fact's default, 1.2: a 1.1 event always carries its context) otherwise."""
    iri = caliper_context_iri(value)
    version = version_of_context(iri.strip().replace("https://", "http://", 1)) if iri is not None else None
    return version.label if version is not None else None


# The first rules of every source's set: what identifies the event.
EVENT_IDENTITY: tuple[FieldRule, ...] = (
    FieldRule("@context", "caliper_version", caliper_version, consume=False),
    FieldRule("@context", CONSUMED, standard_context),
    FieldRule("id", "event_id", text),
    FieldRule("type", "event_type", text),
    FieldRule("profile", "profile", text),
    FieldRule("action", "action", text),
)
# What every Caliper-shaped source (generic Caliper, the hub) maps alike: when the object was created, and the
# score the event generated.
OBJECT_CREATED = time_rule("object.dateCreated", "date_created_ms")
GENERATED_SCORE: tuple[FieldRule, ...] = (
    FieldRule("generated.scoreGiven", "score_given", number),
    FieldRule("generated.maxScore", "max_score", number),
)


def source_set(name: str, rules: Iterable[FieldRule]) -> ConversionSet:
    """A source's conversion set: ``EVENT_IDENTITY`` (what identifies the event) first, then the source's rules."""
    return ConversionSet(name, (*EVENT_IDENTITY, *rules))
