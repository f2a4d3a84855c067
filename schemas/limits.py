"""What an accepted event must satisfy so that every later stage can load it -- each bound defined once, here.

The gateway acknowledges an event only when the streams worker can normalize it and the sink can insert its
fact, so the validators it calls (``schemas.caliper.validate_envelope``, ``schemas.hub.validate_hub_event``, the
Timeback models) check every limit a later stage enforces and name the offending field:

- **Int64 columns** (``attempts`` from a Caliper ``count`` / hub ``trys``, ``frequency_assigned``): integers in
  ``[-2**63, 2**63 - 1]``; every Caliper integer property is held to it (``maxAttempts``, ``index``...).
- **Float64 columns** (scores, xp, seconds, percent...): finite, ``|x| <= 1e15``, and a non-zero ``|x| >= 1e-100``.
  1e15 is far above any real score, xp or duration (1e15 s is 31 million years) yet keeps every integer-valued
  number exact (below 2**53 ~ 9.007e15) and the sum of a billion of them finite and exact to the unit; the lower
  bound keeps a ratio of two accepted numbers (``score_ratio = scoreGiven / maxScore``) finite, and is far below
  any arithmetic noise a sender's floats carry (0.1 + 0.2 - 0.3 ~ 5.6e-17).
- **DateTime64 columns**: a real calendar date-time (``2024-02-30`` and leap second ``23:59:60`` are refused:
  Python, the normalizers and ClickHouse cannot represent them) and, for the times that become a fact's event /
  started / ended / last-access / send time, inside the **event-time window** ``[earliest_time, now + max_future]``
  (default 1970-01-01T00:00:00Z .. now + 1 day).
- **String columns**: no NUL or other C0 control character except tab, CR and LF, and no lone surrogate (which
  cannot be encoded as UTF-8 at all).
- **Nesting**: at most ``max_depth`` levels of JSON objects and arrays (the envelope itself is level 1), so no
  stage recurses without bound (orjson refuses to serialize beyond ~255 levels).
- **Months per envelope**: the fact table is partitioned by month of event time and ClickHouse refuses an insert
  that touches more than 100 partitions, so an envelope's events may span at most ``max_months_per_envelope``
  distinct UTC months.

``DEFAULT_LIMITS`` is what the gateway accepts; ``STORAGE_LIMITS`` is what the store can hold at all (the whole
DateTime64 range, any finite number, any string) -- for stages that re-read already accepted events (the
normalizers) and must not refuse what a gateway with wider configured limits accepted.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from schemas.errors import FieldProblem

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# ClickHouse DateTime64's range: [1900-01-01 00:00:00, 2299-12-31 23:59:59.99999999]
DATETIME64_MIN: Final = datetime(1900, 1, 1, tzinfo=UTC)
DATETIME64_MAX: Final = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
CLICKHOUSE_MAX_PARTITIONS_PER_INSERT: Final = 100

# C0 controls except tab (09), LF (0A), CR (0D); lone surrogates (never valid in UTF-8)
FORBIDDEN_CHARACTER: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """The bounds the validators apply (see the module doc for why each is what it is)."""

    earliest_time: datetime = UNIX_EPOCH  # aware; the first instant an event / start / end / send time may be
    max_future: timedelta = timedelta(days=1)  # the last is now + max_future ...
    latest_time: datetime | None = None  # ... unless a fixed last instant is given (aware)
    max_abs_number: float = 1e15
    min_abs_number: float = 1e-100  # non-zero magnitudes below it are refused
    max_depth: int = 64  # as the gateway's max_json_depth: the IMS corpus nests 6 levels; orjson stops at ~255
    max_months_per_envelope: int = CLICKHOUSE_MAX_PARTITIONS_PER_INSERT
    forbid_control_characters: bool = True  # in strings that land in String columns

    def __post_init__(self) -> None:
        if self.earliest_time.tzinfo is None or (self.latest_time is not None and self.latest_time.tzinfo is None):
            raise ValueError("the event-time window's bounds must be timezone-aware datetimes")
        if not 0 < self.max_months_per_envelope <= CLICKHOUSE_MAX_PARTITIONS_PER_INSERT:
            raise ValueError(f"max_months_per_envelope must be in 1..{CLICKHOUSE_MAX_PARTITIONS_PER_INSERT}")
        if self.max_depth < 4:
            raise ValueError("max_depth must allow at least an envelope, its data and an event (4 levels)")

    def time_window(self, now: datetime | None = None) -> TimeWindow:
        """The window of event times as of ``now`` (default: the current time, to the second)."""
        if self.latest_time is not None:
            return self._window(self.latest_time)
        if now is not None:
            return self._window(now + self.max_future)
        second = int(time.time())  # the current window is computed once a second (validation is a hot path)
        cached = _CURRENT_WINDOWS.get(id(self))
        if cached is None or cached[0] is not self or cached[1] != second:
            moment = datetime.fromtimestamp(second + 1, UTC)  # rounded up: never narrower than now + max_future
            cached = _CURRENT_WINDOWS[id(self)] = (self, second, self._window(moment + self.max_future))
        return cached[2]

    def _window(self, latest: datetime) -> TimeWindow:
        return TimeWindow(max(self.earliest_time, DATETIME64_MIN), min(latest, DATETIME64_MAX))


_CURRENT_WINDOWS: dict[int, tuple[ValidationLimits, int, TimeWindow]] = {}  # by id(limits); few limits exist


@dataclass(frozen=True, slots=True)
class TimeWindow:
    earliest: datetime
    latest: datetime

    def problem(self, moment: datetime) -> str | None:
        """Why ``moment`` (aware) is outside the window, or None."""
        if self.earliest <= moment <= self.latest:
            return None
        return f"must be between {_iso(self.earliest)} and {_iso(self.latest)} (event-time window)"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


DEFAULT_LIMITS: Final = ValidationLimits()
STORAGE_LIMITS: Final = ValidationLimits(
    earliest_time=DATETIME64_MIN, latest_time=DATETIME64_MAX, max_abs_number=sys.float_info.max, min_abs_number=0.0,
    forbid_control_characters=False)


# --- checks shared by the validators (each says why the value is out of bounds, without the value, or None) ---


def text_problem(value: str) -> str | None:
    """A string that may land in a String column: no NUL / C0 control (tab, CR, LF allowed), no lone surrogate."""
    found = FORBIDDEN_CHARACTER.search(value)
    if found is None:
        return None
    return f"must not contain the control character U+{ord(found.group()):04X} (at position {found.start()})"


def int64_problem(value: int) -> str | None:
    if INT64_MIN <= value <= INT64_MAX:
        return None
    return f"must be an integer between {INT64_MIN} and {INT64_MAX} (64-bit)"


def number_problem(value: float, limits: ValidationLimits) -> str | None:
    """A number (int or float) that may land in a Float64 column."""
    if type(value) is float and not math.isfinite(value):
        return "must be a finite number"
    magnitude = abs(value)
    if magnitude > limits.max_abs_number:
        return f"must be between -{limits.max_abs_number:g} and {limits.max_abs_number:g}"
    if 0 < magnitude < limits.min_abs_number:
        return f"must be 0 or at least {limits.min_abs_number:g} in magnitude"
    return None


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether the containers in ``value`` nest more than ``levels`` deep (recursion at most ``levels`` deep)."""
    if type(value) is dict:
        children: Any = value.values()
    elif type(value) is list:
        children = value
    else:
        return False
    if levels <= 0:
        return True
    for child in children:  # noqa: SIM110 - a loop: any() over a generator costs twice as much here
        if (type(child) is dict or type(child) is list) and _deeper_than(child, levels - 1):
            return True
    return False


def _too_deep_path(value: Any, levels: int, path: str) -> str:
    """The path of the first container nested more than ``levels`` deep in ``value`` (which is)."""
    if levels <= 0:
        return path
    children = value.items() if type(value) is dict else enumerate(value)
    for key, child in children:
        if (type(child) is dict or type(child) is list) and _deeper_than(child, levels - 1):
            where = f"{path}[{key}]" if type(key) is int else (f"{path}.{key}" if path else str(key))
            return _too_deep_path(child, levels - 1, where)
    return path  # pragma: no cover - only called on a value that is too deep


def depth_problem(value: Any, limits: ValidationLimits, path: str = "") -> FieldProblem | None:
    """The first place where ``value`` nests deeper than ``limits.max_depth`` (``value`` itself is level 1)."""
    limit = limits.max_depth
    if not _deeper_than(value, limit - 1):
        return None
    return FieldProblem(_too_deep_path(value, limit - 1, path),
                        f"nested more than {limit} levels of objects and arrays deep")
