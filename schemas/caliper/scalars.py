"""Scalar checks for Caliper property values, and the FieldError they report.

Each checker has the signature ``(value, path, errors) -> None`` and appends a ``FieldError`` when
``value`` is not of its kind.  All patterns are compiled once, at import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from schemas.caliper import terms
from schemas.caliper.entity_rules import Kind
from schemas.caliper.terms import CALIPER_CONTEXT_V1P2


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str  # dotted path with list indexes, relative to what was validated; "" is the root
    message: str


Errors = list[FieldError]
Checker = Callable[[Any, str, Errors], None]

_DATETIME_RE: Final = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"[Tt](?:[01]\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:[.,]\d+)?)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?"
)
_DURATION_RE: Final = re.compile(
    r"P(?!$)(?:\d+(?:[.,]\d+)?Y)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?W)?(?:\d+(?:[.,]\d+)?D)?"
    r"(?:T(?=\d)(?:\d+(?:[.,]\d+)?H)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?S)?)?"
)
_IRI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_NUMERIC_STRING_RE: Final = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
# ASCII whitespace only: the Timeback seed address "[email\u00a0protected]" (an address a web page
# obfuscated) carries a no-break space and must pass.
_NO_WHITESPACE_RE: Final = re.compile(r"\S+", re.ASCII)


def json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def format_accepted_values(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


# --- scalar checkers -------------------------------------------------------------------------


def _check_string(value: Any, path: str, errors: Errors) -> None:
    if type(value) is not str:
        errors.append(FieldError(path, f"expected a string, got {json_type_name(value)}"))


def check_integer(value: Any, path: str, errors: Errors) -> None:
    kind = type(value)
    if kind is int or (kind is float and value.is_integer()):  # 0.0 counts (DOOL-1899)
        return
    errors.append(FieldError(path, f"expected an integer, got {json_type_name(value)} {value!r}"))


def _check_decimal(value: Any, path: str, errors: Errors) -> None:
    if type(value) is float:
        return
    if type(value) is int:
        message = f"expected a decimal number written with a fraction (e.g. {value}.0), got integer {value}"
    else:
        message = f"expected a decimal number, got {json_type_name(value)} {value!r}"
    errors.append(FieldError(path, message))


def _check_number(value: Any, path: str, errors: Errors) -> None:
    kind = type(value)
    if kind is int or kind is float:
        return
    if kind is str and _NUMERIC_STRING_RE.fullmatch(value):  # tolerance: "12", "2.5"
        return
    errors.append(FieldError(path, f"expected a number, got {json_type_name(value)} {value!r}"))


def _check_boolean(value: Any, path: str, errors: Errors) -> None:
    if type(value) is not bool:
        errors.append(FieldError(path, f"expected a boolean (true/false), got {json_type_name(value)} {value!r}"))


def _pattern_checker(pattern: re.Pattern[str], what: str) -> Checker:
    fullmatch = pattern.fullmatch

    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not str:
            errors.append(FieldError(path, f"expected {what}, got {json_type_name(value)}"))
        elif fullmatch(value) is None:
            errors.append(FieldError(path, f"expected {what}, got {value!r}"))

    return check


def check_object(value: Any, path: str, errors: Errors) -> None:
    if type(value) is not dict:
        errors.append(FieldError(path, f"expected a JSON object, got {json_type_name(value)}"))


def _check_context(value: Any, path: str, errors: Errors) -> None:
    expected = f"expected {CALIPER_CONTEXT_V1P2!r} (or a list ending with it, or an inline context object)"
    if type(value) is str:
        if value not in terms.ACCEPTED_CONTEXTS:
            errors.append(FieldError(path, f"unknown @context {value!r}; {expected}"))
    elif type(value) is list:
        if not value or type(value[-1]) is not str or value[-1] not in terms.ACCEPTED_CONTEXTS:
            errors.append(FieldError(path, f"the last @context entry must be the Caliper context; {expected}"))
        for index, entry in enumerate(value):
            if type(entry) is not str and type(entry) is not dict:
                errors.append(
                    FieldError(f"{path}[{index}]", f"expected an IRI or an object, got {json_type_name(entry)}")
                )
    elif type(value) is not dict:
        errors.append(FieldError(path, f"{expected}, got {json_type_name(value)}"))


SCALAR_CHECKERS: Final[Mapping[Kind, Checker]] = {
    Kind.STRING: _check_string,
    Kind.INTEGER: check_integer,
    Kind.DECIMAL: _check_decimal,
    Kind.NUMBER: _check_number,
    Kind.BOOLEAN: _check_boolean,
    Kind.DATETIME: _pattern_checker(_DATETIME_RE, "an ISO 8601 date and time (e.g. 2024-01-01T10:00:00.000Z)"),
    Kind.DURATION: _pattern_checker(_DURATION_RE, "an ISO 8601 duration (e.g. PT50M30S)"),
    Kind.IRI: _pattern_checker(_IRI_RE, "an IRI (scheme:..., no whitespace)"),
    Kind.EMAIL: _pattern_checker(_NO_WHITESPACE_RE, "a non-empty email address without whitespace"),
    Kind.OBJECT: check_object,
    Kind.CONTEXT: _check_context,
}
check_iri: Final = SCALAR_CHECKERS[Kind.IRI]
