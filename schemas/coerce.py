"""Tolerant readers for the messy values real senders post (used by the models and the normalizers).

- times with or without an offset (``"2022-07-19T19:36:12.117"`` is read as UTC), ``Z`` suffix;
- booleans as ``true``/``"True"``/``"TRUE"``/``"false"``;
- numbers as JSON numbers or numeric strings (integers are read exactly, never through a float).
Each returns ``None`` for a value it cannot read (also for a time outside Python's datetime range or a number
that is not finite); callers decide whether that is an error. Bounds (int64, magnitudes, the event-time window)
are ``schemas.limits``'s concern.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,30}")
# an explicit offset at the end of the time part of an ISO 8601 date-time: Z, +03, -0300, +03:00
_OFFSET = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d+)?)?)?)$")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date-time as an aware UTC datetime; no offset means UTC."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # the common case: "2024-04-24T14:12:00.000Z" (Z read as UTC)
    except ValueError:
        text = value.strip()
        if text.endswith("z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is UTC:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # an offset that moves the time out of years 1..9999
        return None


def datetime_to_ms(moment: datetime) -> int:
    """Epoch milliseconds of a datetime (naive = UTC), exactly: no float rounding (``x.timestamp() * 1000`` is
    off by one millisecond for about one time in 160)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MILLISECOND


def time_to_ms(value: Any) -> int | None:
    parsed = parse_time(value)
    return None if parsed is None else datetime_to_ms(parsed)


def has_offset(text: str) -> bool:
    """Whether an ISO 8601 date-time names its offset (``Z``, ``-03:00``...); a bare date has none."""
    return _OFFSET.search(text.strip()[10:]) is not None


def zoned_time_to_ms(value: Any, zone: tzinfo = UTC) -> int | None:
    """A date-time as UTC epoch milliseconds; without an offset it is a wall-clock time in ``zone`` (the
    tenant's time zone), e.g. the hub's ``lastTime: "2022-07-19T19:36:12.117"``."""
    if isinstance(value, datetime):
        return datetime_to_ms(value if value.tzinfo is not None else value.replace(tzinfo=zone))
    moment = parse_time(value)  # offset-less is read as UTC here: the same wall clock, moved into the zone below
    if moment is None:
        return None
    if zone is not UTC and not has_offset(value):
        moment = moment.replace(tzinfo=zone)
    return datetime_to_ms(moment)


def coerce_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        folded = value.strip().casefold()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    return None


def coerce_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # not a number; an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def coerce_int(value: Any) -> int | None:
    """An integral value as an exact int: ``12``, ``12.0``, ``"12"``, ``" 12 "``; ``None`` for ``12.5``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_TEXT.fullmatch(text):
            return int(text)
    number = coerce_number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)
