"""Caliper envelopes (and the endpoint configuration document): the envelope's own fields, then every item with
the engine of ``schemas.caliper.validator``; ``check_envelope`` also returns the envelope as it should be
published, without the optional properties sent as null."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from schemas.caliper.fast_path import accepts
from schemas.caliper.scalars import (
    Walk,
    check_event_time,
    check_integer,
    check_iri,
    check_object,
    json_type_name,
)
from schemas.caliper.validator import walk_item
from schemas.caliper.versions import CALIPER_1_2, VERSIONS
from schemas.errors import FieldProblem
from schemas.limits import DEFAULT_LIMITS, ValidationLimits
from schemas.reasons import ReasonCode

__all__ = ["EnvelopeCheck", "check_envelope", "drop_optional_nulls", "validate_endpoint_config", "validate_envelope"]


class EnvelopeCheck(NamedTuple):
    """What ``check_envelope`` found: every problem, and the envelope as it should be published -- without the
    optional properties sent as null (the very object passed in when there were none)."""

    problems: list[FieldProblem]
    payload: Any


def check_envelope(payload: object, limits: ValidationLimits = DEFAULT_LIMITS, *, strict_decimals: bool = False,
                   now: datetime | None = None) -> EnvelopeCheck:
    """Validate a whole envelope {sensor, sendTime, dataVersion, data[>=1]} (item problems are prefixed with
    ``data[i]``) and return it without its optional nulls. Parameters as for ``validate_caliper_item``; the
    events of one envelope may span at most ``limits.max_months_per_envelope`` months of event time."""
    if _walk_envelope(payload, Walk(limits, strict_decimals, now), fast=True):  # the common case, see fast_path
        return EnvelopeCheck([], payload)
    walk = Walk(limits, strict_decimals, now)
    _walk_envelope(payload, walk)
    if walk.problems or not walk.nulls:
        return EnvelopeCheck(walk.problems, payload)
    return EnvelopeCheck(walk.problems, _without(payload, _drops_of(walk), limits.max_depth))


def validate_envelope(payload: object, limits: ValidationLimits = DEFAULT_LIMITS, *, strict_decimals: bool = False,
                      now: datetime | None = None) -> list[FieldProblem]:
    """The problems of ``check_envelope`` (an empty list = valid)."""
    if _walk_envelope(payload, Walk(limits, strict_decimals, now), fast=True):
        return []
    walk = Walk(limits, strict_decimals, now)
    _walk_envelope(payload, walk)
    return walk.problems


def drop_optional_nulls(payload: object, limits: ValidationLimits = DEFAULT_LIMITS) -> Any:
    """A valid envelope without the optional properties sent as null (``check_envelope(...).payload``)."""
    return check_envelope(payload, limits).payload


def _walk_envelope(payload: object, walk: Walk, *, fast: bool = False) -> bool:
    """Validate the envelope into ``walk``. ``fast``: check the items with ``fast_path.accepts`` and stop at the
    first it does not accept; True when the envelope is valid with no optional null (else walk it again)."""
    if type(payload) is not dict:
        walk.add("", f"expected a Caliper envelope object, got {json_type_name(payload)}")
        return False
    for name in ("sensor", "sendTime", "dataVersion", "data"):
        if payload.get(name) is None:
            walk.add(name, "required property is missing", missing=True)
    sensor, send_time = payload.get("sensor"), payload.get("sendTime")
    if sensor is not None:
        check_iri(sensor, "sensor", walk)
    if send_time is not None:
        check_event_time(send_time, "sendTime", walk)
    data_version = payload.get("dataVersion")
    version = VERSIONS.get(data_version) if type(data_version) is str else None
    if version is not None:
        walk.version = version  # the items are held to this version's terms (schemas.caliper.versions)
        if fast and version is not CALIPER_1_2:
            return False  # the fast path knows the 1.2 terms only: the engine decides
    elif data_version is not None:
        walk.add("dataVersion", f"unsupported dataVersion; accepted: {', '.join(VERSIONS)}",
                 code=ReasonCode.UNSUPPORTED_VERSION)
    data = payload.get("data")
    if data is None or (fast and walk.problems):
        return False
    if type(data) is not list:
        walk.add("data", f"expected a list of Events and Entities, got {json_type_name(data)}")
    elif not data:
        walk.add("data", "must hold at least one Event or Entity")
    else:
        walk.depth = 2  # the envelope is level 1, its data list level 2
        if fast:
            for item in data:
                if not accepts(item, walk):
                    return False
        else:
            for index, item in enumerate(data):
                walk_item(item, f"data[{index}]", walk)
        months = len(walk.months)
        if months > walk.limits.max_months_per_envelope:
            walk.add("data", f"the events' eventTime span {months} distinct months; at most "
                             f"{walk.limits.max_months_per_envelope} per envelope (facts are stored by month)")
    return not walk.problems


def _drops_of(walk: Walk) -> dict[int, set[str]]:
    drops: dict[int, set[str]] = {}
    for obj, key in walk.nulls:
        drops.setdefault(id(obj), set()).add(key)
    return drops


def _without(value: Any, drops: dict[int, set[str]], levels: int) -> Any:
    """A copy of ``value`` without the keys ``drops`` names (by object identity); subtrees unchanged are shared.
    Nulls are recorded only within the validated depth, so the copy stops ``levels`` deep."""
    if levels <= 0:
        return value
    if type(value) is dict:
        dropped = drops.get(id(value), ())
        return {key: _without(child, drops, levels - 1) for key, child in value.items() if key not in dropped}
    if type(value) is list:
        return [_without(child, drops, levels - 1) for child in value]
    return value


def validate_endpoint_config(payload: object, limits: ValidationLimits = DEFAULT_LIMITS) -> list[FieldProblem]:
    """Validate a Caliper 1.2 endpoint configuration document (what a receiver's config endpoint
    returns): caliper_supported_versions (list of IRIs, required), caliper_maximum_payload_size
    (integer), caliper_supported_extensions (object)."""
    if type(payload) is not dict:
        return [FieldProblem("", f"expected an endpoint configuration object, got {json_type_name(payload)}")]
    walk = Walk(limits, strict_decimals=False)
    versions = payload.get("caliper_supported_versions")
    if versions is None:
        walk.add("caliper_supported_versions", "required property is missing", missing=True)
    elif type(versions) is not list:
        walk.add("caliper_supported_versions", f"expected a list, got {json_type_name(versions)}")
    else:
        for index, version in enumerate(versions):
            check_iri(version, f"caliper_supported_versions[{index}]", walk)
    size = payload.get("caliper_maximum_payload_size")
    if size is not None:
        check_integer(size, "caliper_maximum_payload_size", walk)
    extensions = payload.get("caliper_supported_extensions")
    if extensions is not None:
        check_object(extensions, "caliper_supported_extensions", walk)
    return walk.problems
