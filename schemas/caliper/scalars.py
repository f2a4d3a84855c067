"""Scalar checks for Caliper property values, and the ``Walk`` that carries one validation's state.

Each checker has the signature ``(value, path, walk) -> None`` and reports a ``FieldProblem`` through
``walk.add`` when ``value`` is not of its kind or outside the bounds of ``schemas.limits``.  All patterns are
compiled once, at import time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from schemas.caliper.entity_rules import Kind
from schemas.caliper.versions import CALIPER_1_2, CaliperVersion
from schemas.coerce import parse_time
from schemas.errors import FieldProblem
from schemas.limits import (
    FORBIDDEN_CHARACTER,
    INT64_MAX,
    INT64_MIN,
    ValidationLimits,
    int64_problem,
    number_problem,
    text_problem,
)
from schemas.reasons import ReasonCode


class Walk:
    """One validation: the problems found so far, the limits applied, and what the walk remembers."""

    __slots__ = ("depth", "event_types", "foreign_types", "limits", "max_abs", "max_depth", "min_abs", "months",
                 "nulls", "problems", "strict_decimals", "version", "window")

    def __init__(self, limits: ValidationLimits, strict_decimals: bool, now: datetime | None = None,
                 version: CaliperVersion = CALIPER_1_2) -> None:
        self.problems: list[FieldProblem] = []
        self.limits = limits
        self.window = limits.time_window(now)
        self.strict_decimals = strict_decimals
        self.nulls: list[tuple[dict[str, Any], str]] = []  # (object, key) of optional properties sent as null
        self.months: set[int] = set()  # YYYYMM of the events' eventTime (the fact table's partitions)
        self.depth = 0  # JSON nesting level of the value being checked (the validated root is level 1)
        self.max_depth = limits.max_depth
        self.max_abs, self.min_abs = limits.max_abs_number, limits.min_abs_number
        self.version = version  # the Caliper version whose terms apply (the envelope's dataVersion)
        # what the item being walked may use (validator.walk_item sets them from the item's @context)
        self.event_types = version.event_types_by_context[version.data_version]
        self.foreign_types = False

    def add(self, path: str, message: str, *, missing: bool = False, code: ReasonCode | None = None) -> None:
        self.problems.append(FieldProblem(path, message, missing, code))


Checker = Callable[[Any, str, Walk], None]

_DATETIME_RE: Final = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"[Tt](?:[01]\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:[.,]\d+)?)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?"
)
DURATION_RE: Final = re.compile(
    r"P(?!$)(?:\d+(?:[.,]\d+)?Y)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?W)?(?:\d+(?:[.,]\d+)?D)?"
    r"(?:T(?=\d)(?:\d+(?:[.,]\d+)?H)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?S)?)?"
)
_DURATION_PART_RE: Final = re.compile(r"(\d+(?:[.,]\d+)?)([YMWDHS])")
_DATE_UNIT_SECONDS: Final = {"Y": 31_556_952.0, "M": 2_629_746.0, "W": 604_800.0, "D": 86_400.0}
_TIME_UNIT_SECONDS: Final = {"H": 3_600.0, "M": 60.0, "S": 1.0}
_IRI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_URN_UUID_RE: Final = re.compile(r"urn:uuid:\S+")
_NUMERIC_STRING_RE: Final = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
# ASCII whitespace only: the Timeback seed address "[email\u00a0protected]" (an address a web page
# obfuscated) carries a no-break space and must pass.
_NO_WHITESPACE_RE: Final = re.compile(r"\S+", re.ASCII)


# the JSON name of each Python type a parsed document holds; bool before int (a bool is an int to Python)
_JSON_TYPE_NAMES: Final = ((type(None), "null"), (bool, "boolean"), (int, "integer"), (float, "number"),
                           (str, "string"), (list, "array"), (dict, "object"))


def json_type_name(value: object) -> str:
    """The JSON name of a value's type, for a problem's message (the Python name for anything else)."""
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def format_accepted_values(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def duration_seconds(text: str) -> float:
    """The length of an ISO 8601 duration (already matched by ``DURATION_RE``) in seconds; a year is 365.2425
    days, a month a twelfth of it (only its magnitude is checked)."""
    date_part, _, time_part = text[1:].partition("T")
    total = 0.0
    for number, unit in _DURATION_PART_RE.findall(date_part):
        total += float(number.replace(",", ".")) * _DATE_UNIT_SECONDS[unit]
    for number, unit in _DURATION_PART_RE.findall(time_part):
        total += float(number.replace(",", ".")) * _TIME_UNIT_SECONDS[unit]
    return total


# --- scalar checkers -------------------------------------------------------------------------


def _check_text_content(value: str, path: str, walk: Walk) -> None:
    """Report the control character ``FORBIDDEN_CHARACTER`` found in ``value`` (unless the limits allow them)."""
    if walk.limits.forbid_control_characters:
        walk.add(path, str(text_problem(value)))


_forbidden: Final = FORBIDDEN_CHARACTER.search


def _check_string(value: Any, path: str, walk: Walk) -> None:
    if type(value) is not str:
        walk.add(path, f"expected a string, got {json_type_name(value)}")
    elif _forbidden(value) is not None:
        _check_text_content(value, path, walk)


def check_integer(value: Any, path: str, walk: Walk) -> None:
    kind = type(value)
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return
        walk.add(path, str(int64_problem(value)))
    elif kind is float and value.is_integer():  # 0.0 counts (DOOL-1899); inf and nan are not integers
        if INT64_MIN <= value <= INT64_MAX:
            return
        walk.add(path, str(int64_problem(int(value))))
    else:
        walk.add(path, f"expected an integer, got {json_type_name(value)}")


def _check_bounded(number: float, path: str, walk: Walk) -> None:
    if walk.min_abs <= number <= walk.max_abs or -walk.max_abs <= number <= -walk.min_abs or number == 0:
        return  # the common case, decided by comparisons (nan fails them all)
    problem = number_problem(number, walk.limits)
    if problem is not None:
        walk.add(path, problem)


def _check_decimal(value: Any, path: str, walk: Walk) -> None:
    kind = type(value)
    if kind is float or (kind is int and not walk.strict_decimals):  # JSON has one number type (RFC 8259)
        _check_bounded(value, path, walk)
    elif kind is int:
        walk.add(path, "expected a decimal number written with a fraction (e.g. 3.0), got integer")
    else:
        walk.add(path, f"expected a decimal number, got {json_type_name(value)}")


def _number_of(value: Any, path: str, walk: Walk) -> float | None:
    """A JSON number or a numeric string (tolerance: "12", "2.5") as a number; None after reporting."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is str and _NUMERIC_STRING_RE.fullmatch(value):
        return float(value)
    walk.add(path, f"expected a number, got {json_type_name(value)}")
    return None


def _check_number(value: Any, path: str, walk: Walk) -> None:
    kind = type(value)
    if (kind is int or kind is float) and walk.min_abs <= value <= walk.max_abs:
        return  # the common case: a positive number in bounds
    number = _number_of(value, path, walk)
    if number is not None:
        _check_bounded(number, path, walk)


def _check_non_negative_number(value: Any, path: str, walk: Walk) -> None:
    number = _number_of(value, path, walk)
    if number is None:
        return
    if number < 0:
        walk.add(path, "must not be negative")
    else:
        _check_bounded(number, path, walk)


def _check_boolean(value: Any, path: str, walk: Walk) -> None:
    if type(value) is not bool:
        walk.add(path, f"expected a boolean (true/false), got {json_type_name(value)}")


_DATETIME_EXPECTED: Final = "an ISO 8601 date and time (e.g. 2024-01-01T10:00:00.000Z)"


def _moment(value: Any, path: str, walk: Walk) -> datetime | None:
    """The UTC instant of a date-time property; None after reporting."""
    if type(value) is not str:
        walk.add(path, f"expected {_DATETIME_EXPECTED}, got {json_type_name(value)}")
        return None
    if _DATETIME_RE.fullmatch(value) is None:
        walk.add(path, f"expected {_DATETIME_EXPECTED}")
        return None
    moment = parse_time(value)
    if moment is None:  # 2024-02-30, 23:59:60, an offset that leaves year 1..9999
        walk.add(path, "expected a real calendar date and time")
    return moment


def _check_datetime(value: Any, path: str, walk: Walk) -> None:
    _moment(value, path, walk)


def check_event_time(value: Any, path: str, walk: Walk) -> None:
    """A date-time that dates a fact (event, start, end, creation, send time): inside the event-time window."""
    moment = _moment(value, path, walk)
    if moment is None:
        return
    window = walk.window
    if not window.earliest <= moment <= window.latest:
        walk.add(path, str(window.problem(moment)))
    elif path.endswith(".eventTime") and path.count(".") == 1:  # data[i].eventTime: the fact's partition
        walk.months.add(moment.year * 100 + moment.month)  # toYYYYMM: parse_time gives UTC already


def _check_duration(value: Any, path: str, walk: Walk) -> None:
    if type(value) is not str:
        walk.add(path, f"expected an ISO 8601 duration (e.g. PT50M30S), got {json_type_name(value)}")
    elif DURATION_RE.fullmatch(value) is None:
        walk.add(path, "expected an ISO 8601 duration (e.g. PT50M30S)")
    elif len(value) > 9 or walk.max_abs < 3.2e14:  # "P9999999Y" (9 characters) is 3.2e14 s: shorter ones fit
        seconds = duration_seconds(value)
        if not math.isfinite(seconds) or seconds > walk.limits.max_abs_number:
            walk.add(path, f"must be at most {walk.limits.max_abs_number:g} seconds long")


def _pattern_checker(pattern: re.Pattern[str], what: str) -> Checker:
    """A checker for strings of ``pattern``, also free of control characters."""
    fullmatch = pattern.fullmatch
    forbidden = _forbidden

    def check(value: Any, path: str, walk: Walk) -> None:
        if type(value) is not str:
            walk.add(path, f"expected {what}, got {json_type_name(value)}")
        elif fullmatch(value) is None:
            walk.add(path, f"expected {what}")
        elif forbidden(value) is not None:
            _check_text_content(value, path, walk)

    return check


def check_object(value: Any, path: str, walk: Walk) -> None:
    if type(value) is not dict:
        walk.add(path, f"expected a JSON object, got {json_type_name(value)}")


def _check_context(value: Any, path: str, walk: Walk) -> None:
    contexts = walk.version.contexts
    expected = (f"expected {walk.version.data_version!r} (Caliper {walk.version.label}, the envelope's dataVersion; "
                f"or a list ending with it, or an inline context object)")
    if type(value) is str:
        if value not in contexts:
            walk.add(path, f"unknown @context; {expected}")
    elif type(value) is list:
        if not value or type(value[-1]) is not str or value[-1] not in contexts:
            walk.add(path, f"the last @context entry must be the Caliper context; {expected}")
        for index, entry in enumerate(value):
            if type(entry) is not str and type(entry) is not dict:
                walk.add(f"{path}[{index}]", f"expected an IRI or an object, got {json_type_name(entry)}")
    elif type(value) is not dict:
        walk.add(path, f"{expected}, got {json_type_name(value)}")


SCALAR_CHECKERS: Final[Mapping[Kind, Checker]] = {
    Kind.STRING: _check_string,
    Kind.INTEGER: check_integer,
    Kind.DECIMAL: _check_decimal,
    Kind.NUMBER: _check_number,
    Kind.NON_NEGATIVE_NUMBER: _check_non_negative_number,
    Kind.BOOLEAN: _check_boolean,
    Kind.DATETIME: _check_datetime,
    Kind.EVENT_TIME: check_event_time,
    Kind.DURATION: _check_duration,
    Kind.IRI: _pattern_checker(_IRI_RE, "an IRI (scheme:..., no whitespace)"),
    Kind.URN_UUID: _pattern_checker(_URN_UUID_RE, "a urn:uuid: IRI (e.g. urn:uuid:c51570e4-f8ed-...)"),
    Kind.EMAIL: _pattern_checker(_NO_WHITESPACE_RE, "a non-empty email address without whitespace"),
    Kind.OBJECT: check_object,
    Kind.CONTEXT: _check_context,
}
check_iri: Final = SCALAR_CHECKERS[Kind.IRI]
