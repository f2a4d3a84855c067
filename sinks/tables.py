"""The sink's tables: their names (the one definition every module and tool uses) and the Arrow blocks inserted.

Facts are inserted into ``learning_facts_in`` (columns = the LearningFact's field names, times as ``*_ms``
``DateTime64(3, 'UTC')``, dates as ``*_days`` ``Date32``), from which a materialized view fills ``learning_facts``,
where a field ``x_ms`` or ``x_days`` is the column ``x``. ``Optional`` fields are the only nullable columns.
"""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from schemas.reasons import ReasonCode
from schemas.records import LEARNING_FACT_FIELDS, LearningFact

FACT_TABLE = "learning_facts"  # what analysts read
FACT_INPUT_TABLE = "learning_facts_in"  # what the loader writes (a Null table; a view moves rows to FACT_TABLE)
CURRENT_FACTS_VIEW = "current_facts"
REJECTS_TABLE = "sink_rejects"  # messages the loader could not load, byte for byte (base64)
REJECTS_SUMMARY_VIEW = "sink_rejects_summary"  # sink_rejects without the bytes: for analysts
BATCHES_TABLE = "sink_batches"
ERASURES_TABLE = "erasures"
RAW_ARCHIVE_TABLE = "raw_events"  # every accepted event's JSON (the raw archive)
RAW_ARCHIVE_INPUT_TABLE = "raw_events_in"  # what the loader writes for the archive topic (a Null table + view)
JOBS_TABLE = "jobs"  # the accepted requests (migration 010), one row per part of a job
JOBS_INPUT_TABLE = "jobs_in"
JOB_FACTS_TABLE = "job_facts"  # which events of a job have facts loaded (filled with every fact insert)
FAILED_EVENTS_TABLE = "failed_events"  # dead letters, rejected requests, messages refused at load (what was sent)
FAILED_EVENTS_INPUT_TABLE = "failed_events_in"
FAILED_EVENTS_SUMMARY_VIEW = "failed_events_summary"  # failed_events without what was sent: for analysts
FACT_CONFLICTS_VIEW = "fact_conflicts"  # events delivered with more than one content
STUDENT_DAILY_XP_VIEW = "student_daily_xp"
STUDENT_DAILY_TIME_VIEW = "student_daily_time_on_task"
STUDENT_DAILY_CALENDAR_VIEW = "student_daily_calendar"
STUDENT_SKILL_MASTERY_VIEW = "student_skill_mastery"

# What an analyst statement (the sink's POST /sql) may read: the facts, the views over them and the bookkeeping
# without what was sent (docs/analytics.md lists them). Every other table or view of the pipeline's database is
# private, a new one included until it is added here: the raw archive and the failed events (what was sent:
# emails and names in clear), the loader's refused messages byte for byte, the entry tables (``*_in``) and the
# materialized views that fill the tables (``*_loader``: reading one reads its target table), and the sink's
# own bookkeeping (``sink_batches``, ``schema_migrations``).
ANALYST_TABLES = frozenset({
    FACT_TABLE, CURRENT_FACTS_VIEW, FACT_CONFLICTS_VIEW, STUDENT_DAILY_XP_VIEW, STUDENT_DAILY_TIME_VIEW,
    STUDENT_DAILY_CALENDAR_VIEW, STUDENT_SKILL_MASTERY_VIEW, REJECTS_SUMMARY_VIEW, FAILED_EVENTS_SUMMARY_VIEW,
    ERASURES_TABLE, JOBS_TABLE, JOB_FACTS_TABLE,
})

_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(), bytes: pa.binary(),
}
_TIME = pa.timestamp("ms", tz="UTC")
_UNIT_SUFFIXES = ("_ms", "_days")  # a field's unit, not part of its column's name


def column_for(field_name: str) -> str:
    """The fact table column that stores a ``LearningFact`` field (``event_time_ms`` -> ``event_time``)."""
    for suffix in _UNIT_SUFFIXES:
        if field_name.endswith(suffix):
            return field_name[:-len(suffix)]
    return field_name


def _arrow_field(name: str, annotation: Any) -> pa.Field:
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        annotation, nullable = members[0], True
    if typing.get_origin(annotation) is dict:  # a map (seconds_by_sub_type)
        key, value = typing.get_args(annotation)
        arrow_type = pa.map_(_ARROW_TYPES[key], _ARROW_TYPES[value])
    elif name.endswith("_days"):
        arrow_type = pa.date32()
    else:
        arrow_type = _TIME if name.endswith("_ms") else _ARROW_TYPES[annotation]
    return pa.field(name, arrow_type, nullable=nullable)


def fact_arrow_schema() -> pa.Schema:
    """The Arrow schema of a block for ``learning_facts_in``: one field per ``LearningFact`` field."""
    hints = typing.get_type_hints(LearningFact)
    return pa.schema([_arrow_field(f.name, hints[f.name]) for f in dataclasses.fields(LearningFact)])


FACT_ARROW_SCHEMA = fact_arrow_schema()
FACT_COLUMNS: tuple[str, ...] = tuple(column_for(name) for name in LEARNING_FACT_FIELDS)

REJECT_ARROW_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.uint32(), nullable=False),
    pa.field("offset", pa.uint64(), nullable=False),
    pa.field("error", pa.string(), nullable=False),
    pa.field("reason_code", pa.string(), nullable=False),
    pa.field("raw_base64", pa.string(), nullable=False),
    pa.field("rejected_at", _TIME, nullable=False),
])


def facts_to_arrow(records: Sequence[dict[str, Any]]) -> pa.Table:
    """One Arrow block of decoded facts (dicts keyed by ``LearningFact`` field names), typed by the field list."""
    columns = [
        pa.array([record[name] for record in records], type=field.type, from_pandas=False)
        for name, field in zip(LEARNING_FACT_FIELDS, FACT_ARROW_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=FACT_ARROW_SCHEMA)


def fact_records(facts: Iterable[LearningFact]) -> list[dict[str, Any]]:
    return [fact.to_record() for fact in facts]


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message of the facts topic that could not be loaded, and why (``error``, and its ``reason_code``:
    ``undecodable`` when the sink could not read it, ``clickhouse_refused`` when ClickHouse refused its row)."""

    topic: str
    partition: int
    offset: int
    error: str
    raw: bytes
    reason_code: ReasonCode


def rejects_to_arrow(rejects: Sequence[RejectedMessage]) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {"topic": r.topic, "partition": r.partition, "offset": r.offset, "error": r.error[:2000],
             "reason_code": r.reason_code.value,
             "raw_base64": base64.b64encode(r.raw).decode("ascii"), "rejected_at": now}
            for r in rejects
        ],
        schema=REJECT_ARROW_SCHEMA,
    )
