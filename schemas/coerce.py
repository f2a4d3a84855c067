"""Tolerant readers for the messy values real senders post (used by the models and the normalizers).

- times with or without an offset (``"2022-07-19T19:36:12.117"`` is read as UTC), ``Z`` suffix;
- booleans as ``true``/``"True"``/``"TRUE"``/``"false"``;
- numbers as JSON numbers or numeric strings.
Each returns ``None`` for a value it cannot read; callers decide whether that is an error.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date-time as an aware UTC datetime; no offset means UTC."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def time_to_ms(value: Any) -> int | None:
    parsed = parse_time(value)
    return None if parsed is None else int(parsed.timestamp() * 1000)


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
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def coerce_int(value: Any) -> int | None:
    number = coerce_number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)
