"""A temporary ``EventReader`` (``schemas.read_api``) over the sink's read-only SQL (``sinks.query_client``).

Bridge until the sink's own read model lands in ``sinks/`` (the lead writes it; it then replaces this module in
``cli.cmd_gateway``): the SQL of the former ``gateway/read_api.py``, moved here unchanged so that the gateway
imports no ``sinks`` code and ``GET /caliper/events`` keeps working meanwhile.
"""

from __future__ import annotations

import orjson

from schemas.read_api import EventPage, EventQuery, ReadUnavailableError
from sinks.errors import SinkError
from sinks.query_client import SqlClient

EVENT_COLUMNS = (
    "event_id", "event_type", "profile", "action", "event_time", "received_time", "sensor", "ed_app", "student_id",
    "object_id", "object_type", "course_name", "subject_name", "bncc_code", "xp_earned", "seconds_active",
    "score_given", "max_score", "source",
)


def sql_string(value: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def events_sql(database: str, query: EventQuery) -> str:
    conditions = [f"tenant = {sql_string(query.tenant)}"]
    if query.sensor:
        conditions.append(f"sensor = {sql_string(query.sensor)}")
    if query.actor_id:
        conditions.append(f"student_id = {sql_string(query.actor_id)}")
    if query.start_ms is not None:
        conditions.append(f"event_time >= fromUnixTimestamp64Milli({int(query.start_ms)})")
    if query.end_ms is not None:
        conditions.append(f"event_time < fromUnixTimestamp64Milli({int(query.end_ms)})")
    return (f"SELECT {', '.join(EVENT_COLUMNS)} FROM {database}.learning_facts FINAL "
            f"WHERE {' AND '.join(conditions)} ORDER BY event_time DESC, event_id "
            f"LIMIT {int(query.limit)} OFFSET {int(query.offset)}")


class SqlEventReader:
    """``EventReader`` through ``SqlClient`` (the sink's ``POST /sql`` in embedded mode, else the server)."""

    def __init__(self, client: SqlClient) -> None:
        self.client = client

    async def read_events(self, query: EventQuery) -> EventPage:
        try:
            answer = await self.client.query(events_sql(self.client.clickhouse.database, query), "jsoneachrow")
        except SinkError as error:
            raise ReadUnavailableError(f"ClickHouse cannot answer now: {error}") from error
        rows = [orjson.loads(line) for line in answer.splitlines() if line.strip()]
        return EventPage(events=rows, limit=query.limit, offset=query.offset)

    async def close(self) -> None:
        self.client.close()
