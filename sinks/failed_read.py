"""Reading failed events back for ``caliper-pipeline replay --from-failed`` (the sink's ``POST
/admin/failed-events``, admin token): the failed messages a selection names, with their original bytes.

A selection is any of tenant, job id, a reason (the rows whose reason contains it), a reason code (one of
``schemas.reasons.ReasonCode``) and the stage (``streams`` by default: dead-lettered events, which go back to their
raw topic; ``sink``: messages refused at load, back to their topic). Rows come newest failure first, one per
failed message (``FINAL``), at most ``limit``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.reasons import STAGE_SINK, STAGE_STREAMS, ReasonCode
from sinks.tables import FAILED_EVENTS_TABLE

Rows = Callable[[str, dict[str, Any]], tuple[list[str], list[tuple[Any, ...]]]]
REPLAYABLE_STAGES = (STAGE_STREAMS, STAGE_SINK)
MAX_FAILED_ROWS = 100_000
COLUMNS = ("stage", "reason", "tenant", "client_id", "job_id", "envelope_index", "event_id", "topic", "partition",
           "offset", "original_base64")


@dataclass(frozen=True, slots=True)
class FailedSelection:
    tenant: str = ""
    job_id: str = ""
    reason: str = ""
    reason_code: str = ""
    stage: str = STAGE_STREAMS
    limit: int = MAX_FAILED_ROWS

    @classmethod
    def from_json(cls, payload: Any) -> FailedSelection:
        """The selection of a request body; ValueError naming the field."""
        if not isinstance(payload, Mapping):
            raise ValueError("a JSON object (tenant, job_id, reason, reason_code, stage, limit; all optional) is "
                             "expected")
        unknown = set(payload) - {"tenant", "job_id", "reason", "reason_code", "stage", "limit"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
        values: dict[str, Any] = {}
        for name in ("tenant", "job_id", "reason", "reason_code", "stage"):
            value = payload.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > 2000 or "\x00" in value:
                raise ValueError(f"{name} must be a string (at most 2000 characters, no NUL)")
            values[name] = value
        if values.get("reason_code", ReasonCode.UNKNOWN) not in set(ReasonCode):
            raise ValueError(f"reason_code must be one of {', '.join(ReasonCode)}")
        if values.get("stage", STAGE_STREAMS) not in REPLAYABLE_STAGES:
            raise ValueError(f"stage must be one of {', '.join(REPLAYABLE_STAGES)} (a refused request cannot be "
                             "replayed: it was never accepted)")
        limit = payload.get("limit", MAX_FAILED_ROWS)
        if type(limit) is not int or not 1 <= limit <= MAX_FAILED_ROWS:
            raise ValueError(f"limit must be an integer between 1 and {MAX_FAILED_ROWS}")
        return cls(**values, limit=limit)


# the selection's optional fields and their conditions (bound by the field's name); an empty field selects all
_OPTIONAL_CONDITIONS = {
    "tenant": "tenant = {tenant:String}",
    "job_id": "job_id = {job_id:String}",
    "reason": "position(reason, {reason:String}) > 0",
    "reason_code": "reason_code = {reason_code:String}",
}


def select_failed(rows: Rows, database: str, selection: FailedSelection) -> list[dict[str, Any]]:
    """The failed messages ``selection`` names (every value a bound parameter)."""
    conditions = ["stage = {stage:String}"]
    parameters: dict[str, Any] = {"stage": selection.stage, "limit": selection.limit}
    for field, condition in _OPTIONAL_CONDITIONS.items():
        value = getattr(selection, field)
        if value:
            conditions.append(condition)
            parameters[field] = value
    names, found = rows(f"SELECT {', '.join(COLUMNS)} FROM {database}.{FAILED_EVENTS_TABLE} FINAL "
                        f"WHERE {' AND '.join(conditions)} ORDER BY failed_time DESC LIMIT {{limit:UInt32}}",
                        parameters)
    return [dict(zip(names, row, strict=True)) for row in found]


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)
