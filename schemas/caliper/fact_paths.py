"""Properties the normalizers map into a typed fact column whatever the Caliper type of the object holding them.

The type rules check a property only where the holder's Caliper type defines it, but the generic Caliper
normalizer reads some paths from any event (``generated.scoreGiven`` becomes ``score_given`` whether
``generated`` is a Score or a Comment; ``actor.email`` becomes the student's email though a Person has no
email). Each such path is checked here the way its value would be read (``schemas.coerce``) and bounded by the
column it lands in: a value the normalizer would not read stays in ``extensions_json`` and is not refused.

``tests/unit/sinks/test_accepted_events_load.py`` puts hostile values at the source path of every normalizer rule, so
a rule added without its path here (or a type rule) fails there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Final

from schemas.caliper.scalars import DURATION_RE, Walk, duration_seconds
from schemas.coerce import coerce_int, coerce_number, parse_time
from schemas.limits import FORBIDDEN_CHARACTER, int64_problem, number_problem, text_problem


class Column(Enum):
    """How a normalizer reads the value, and the column type it lands in."""

    TIME = "DateTime64"  # read as a date-time (offset-less = UTC)
    INT64 = "Int64"  # read as an integral number (numeric strings too)
    FLOAT64 = "Float64"  # read as a number (numeric strings too)
    SECONDS = "Float64 seconds"  # read as an ISO 8601 duration, or a number of seconds
    STRING = "String"  # read as text


# first key -> second key -> (rest of the path, column); relative to an event
# an Attempt's assignee, read as the learner wherever it is (streams.normalizers.caliper.find_learner)
_ASSIGNEE: Final = ((("assignee",), Column.STRING), (("assignee", "id"), Column.STRING),
                    (("assignee", "type"), Column.STRING))

FACT_PATHS: Final[Mapping[str, Mapping[str, tuple[tuple[tuple[str, ...], Column], ...]]]] = {
    "actor": {"email": (((), Column.STRING),)},
    "object": {"assignee": tuple((rest[1:], column) for rest, column in _ASSIGNEE)},
    "generated": {
        "assignee": tuple((rest[1:], column) for rest, column in _ASSIGNEE),
        "scoreGiven": (((), Column.FLOAT64),),
        "maxScore": (((), Column.FLOAT64),),
        "count": (((), Column.INT64),),
        "duration": (((), Column.SECONDS),),
        "startedAtTime": (((), Column.TIME),),
        "endedAtTime": (((), Column.TIME),),
        "attempt": (
            (("count",), Column.INT64),
            (("startedAtTime",), Column.TIME),
            (("endedAtTime",), Column.TIME),
            (("assignable", "id"), Column.STRING),
            *_ASSIGNEE,
        ),
    },
}


def _time(value: Any, walk: Walk) -> str | None:
    moment = parse_time(value)
    return None if moment is None else walk.window.problem(moment)


def _int64(value: Any, walk: Walk) -> str | None:
    number = coerce_int(value)
    return None if number is None else int64_problem(number)


def _float64(value: Any, walk: Walk) -> str | None:
    kind = type(value)
    if (kind is int or kind is float) and (walk.min_abs <= abs(value) <= walk.max_abs or value == 0):
        return None  # the common case
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    number = value if isinstance(value, int) else coerce_number(value)
    return None if number is None else number_problem(number, walk.limits)


def _seconds(value: Any, walk: Walk) -> str | None:
    if isinstance(value, str) and DURATION_RE.fullmatch(value.strip().upper()):
        seconds = duration_seconds(value.strip().upper())
        if not math.isfinite(seconds) or seconds > walk.limits.max_abs_number:
            return f"must be at most {walk.limits.max_abs_number:g} seconds long"
        return None
    return _float64(value, walk)


def _string(value: Any, walk: Walk) -> str | None:
    if type(value) is str and walk.limits.forbid_control_characters and FORBIDDEN_CHARACTER.search(value):
        return text_problem(value)
    return None


_CHECKS: Final[Mapping[str, Callable[[Any, Walk], str | None]]] = {  # by Column.value (an enum hashes slowly)
    Column.TIME.value: _time, Column.INT64.value: _int64, Column.FLOAT64.value: _float64,
    Column.SECONDS.value: _seconds, Column.STRING.value: _string,
}


def check_fact_paths(event: Mapping[str, Any], path: str, walk: Walk) -> None:
    """Check the ``FACT_PATHS`` of ``event`` (validated at ``path``); a path the type rules already reported on
    is not reported twice."""
    for first, by_key in FACT_PATHS.items():
        holder = event.get(first)
        if type(holder) is not dict:
            continue
        for second, child in holder.items():
            specs = by_key.get(second)
            if specs is None or child is None:
                continue
            for rest, column in specs:
                value: Any = child
                for key in rest:
                    value = value.get(key) if type(value) is dict else None
                if value is None or type(value) is dict or type(value) is list:
                    continue
                problem = _CHECKS[column.value](value, walk)
                if problem is not None:
                    where = ".".join((path, first, second, *rest) if path else (first, second, *rest))
                    if all(reported.path != where for reported in walk.problems):
                        walk.add(where, f"{problem} (read into a {column.value} column)")
