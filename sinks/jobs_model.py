"""The status of a job (delivery receipts), read from ClickHouse with bound parameters (migration 010).

A job's events are listed by its records in ``jobs`` (one row per part). Each event, by its position in the
request (``envelope_index``), is then:

1. *loaded* when ``job_facts`` holds a fact of it (filled by the very insert that loads the fact);
2. else *dead-lettered* when ``failed_events`` holds a stage ``streams`` row for it;
3. else *rejected at load* when ``failed_events`` holds a stage ``sink`` row of a facts-topic message of it;
4. else *processing*.

So an event replayed after it failed, and loaded, counts as loaded (its failure stays in ``failed_events``). The
job is ``processing`` while an event is, or while a part of its record is not loaded yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.read_api import (
    COMPLETED,
    COMPLETED_WITH_ERRORS,
    PROCESSING,
    FailedEventReceipt,
    JobStatus,
    ReadUnavailableError,
)
from schemas.reasons import STAGE_SINK, STAGE_STREAMS
from sinks.errors import SinkError
from sinks.queries import AnalystQueries
from sinks.read_model import iso_utc, read_in_slot
from sinks.tables import FAILED_EVENTS_TABLE, JOB_FACTS_TABLE, JOBS_TABLE

Rows = Callable[[str, dict[str, Any]], tuple[list[str], list[tuple[Any, ...]]]]
FAILURES_SHOWN = 1000  # failures listed in one answer (the counts count them all)


def job_status(rows: Rows, database: str, tenant: str, job_id: str, facts_topic: str) -> JobStatus | None:
    """The status of ``job_id`` of ``tenant``; None when no record of the job is loaded."""
    key = {"tenant": tenant, "job": job_id}
    _, parts = rows(f"SELECT part, parts, accepted, entities, received_time, event_indexes, event_ids "
                    f"FROM {database}.{JOBS_TABLE} FINAL WHERE tenant = {{tenant:String}} AND job_id = {{job:String}} "
                    "ORDER BY part", key)
    if not parts:
        return None
    _, loaded_rows = rows(f"SELECT DISTINCT envelope_index FROM {database}.{JOB_FACTS_TABLE} "
                          "WHERE tenant = {tenant:String} AND job_id = {job:String}", key)
    _, failed_rows = rows(
        f"SELECT assumeNotNull(envelope_index) AS position, stage, argMax(reason, failed_time), any(event_id) "
        f"FROM {database}.{FAILED_EVENTS_TABLE} WHERE tenant = {{tenant:String}} AND job_id = {{job:String}} "
        "AND envelope_index IS NOT NULL AND (stage = {streams:String} OR (stage = {sink:String} AND "
        "topic = {facts:String})) GROUP BY position, stage", {**key, "streams": STAGE_STREAMS, "sink": STAGE_SINK,
                                                               "facts": facts_topic})
    accepted, entities, received, expected_parts = int(parts[0][2]), int(parts[0][3]), parts[0][4], int(parts[0][1])
    events: dict[int, str] = {}
    for row in parts:
        events.update(zip((int(i) for i in row[5]), (str(e) for e in row[6]), strict=True))
    loaded = {int(index) for (index,) in loaded_rows}
    failed: dict[int, tuple[str, str]] = {}
    for index, stage, reason, _ in sorted(failed_rows, key=lambda row: row[1] != STAGE_STREAMS):
        failed.setdefault(int(index), (str(stage), str(reason)))  # a dead letter says more than a reject after it
    failures = [FailedEventReceipt(index, events.get(index, ""), *failed[index])
                for index in sorted(failed) if index in events and index not in loaded]
    dead = sum(1 for failure in failures if failure.stage == STAGE_STREAMS)
    done = len(parts) == expected_parts and all(index in loaded or index in failed for index in events)
    status = PROCESSING if not done else (COMPLETED_WITH_ERRORS if failures else COMPLETED)
    return JobStatus(
        job_id=job_id, status=status, accepted=accepted, entities=entities,
        loaded=sum(1 for index in events if index in loaded), dead_lettered=dead,
        rejected_at_load=len(failures) - dead, received_time=iso_utc(received),
        event_ids=[events[index] for index in sorted(events)] if done else None, failures=failures[:FAILURES_SHOWN],
        loaded_ids=[events[index] for index in sorted(events) if index in loaded] if done else None)


class ClickHouseJobReader:
    """``read_job`` over the read pool (read-only, limited, one slot per tenant), as ``sinks.read_model`` reads
    events."""

    def __init__(self, queries: AnalystQueries, facts_topic: str) -> None:
        self._queries = queries
        self.facts_topic = facts_topic

    def read_blocking(self, tenant: str, job_id: str) -> JobStatus | None:
        try:
            return job_status(self._queries.rows_blocking, self._queries.database, tenant, job_id, self.facts_topic)
        except SinkError as error:
            raise ReadUnavailableError(f"the job cannot be read now: {type(error).__name__}") from error

    async def read_job(self, tenant: str, job_id: str) -> JobStatus | None:
        return await read_in_slot(self._queries, tenant, self.read_blocking, tenant, job_id)
