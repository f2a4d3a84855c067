"""The senders' read model: one tenant's events, read from the fact table with bound parameters.

``ClickHouseEventReader`` implements ``schemas.read_api.EventReader`` over the sink's tables. It runs where
ClickHouse can be opened: inside the sink process (embedded engine; the gateway reaches it through the sink's
``POST /read/events``, see ``sinks.read_client``) or in the gateway process against a server. Every value of
the query travels as a bound ``{name:Type}`` parameter, never spliced into the SQL text.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from schemas.read_api import EventPage, EventQuery, ReadUnavailableError
from sinks.errors import SinkError
from sinks.queries import AnalystQueries
from sinks.tables import FACT_TABLE

EVENT_COLUMNS = (
    "event_id", "event_type", "profile", "action", "event_time", "received_time", "sensor", "ed_app", "student_id",
    "object_id", "object_type", "course_name", "subject_name", "bncc_code", "xp_earned", "seconds_active",
    "score_given", "max_score", "source",
)


def events_sql(database: str, query: EventQuery) -> tuple[str, dict[str, Any]]:
    """The statement and its parameters for one page."""
    conditions = ["tenant = {tenant:String}"]
    parameters: dict[str, Any] = {"tenant": query.tenant, "limit": query.limit, "offset": query.offset}
    if query.sensor:
        conditions.append("sensor = {sensor:String}")
        parameters["sensor"] = query.sensor
    if query.actor_id:
        conditions.append("student_id = {actor:String}")
        parameters["actor"] = query.actor_id
    if query.start_ms is not None:
        conditions.append("event_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')")
        parameters["start"] = query.start_ms
    if query.end_ms is not None:
        conditions.append("event_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')")
        parameters["end"] = query.end_ms
    sql = (f"SELECT {', '.join(EVENT_COLUMNS)} FROM {database}.{FACT_TABLE} FINAL "
           f"WHERE {' AND '.join(conditions)} ORDER BY event_time DESC, event_id "
           "LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    return sql, parameters


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


class ClickHouseEventReader:
    """``EventReader`` over the fact table, through the analyst query pool (read-only, limited)."""

    def __init__(self, queries: AnalystQueries) -> None:
        self._queries = queries

    def read_blocking(self, query: EventQuery) -> EventPage:
        sql, parameters = events_sql(self._queries.database, query)
        try:
            columns, rows = self._queries.rows_blocking(sql, parameters)
        except SinkError as error:
            raise ReadUnavailableError(f"the events cannot be read now: {type(error).__name__}") from error
        events = [{name: _json_value(value) for name, value in zip(columns, row, strict=True)} for row in rows]
        return EventPage(events=events, limit=query.limit, offset=query.offset)

    async def read_events(self, query: EventQuery) -> EventPage:
        return await asyncio.to_thread(self.read_blocking, query)

    async def close(self) -> None:
        await asyncio.to_thread(self._queries.close)
