"""``GET /caliper/events``: a sender reads back its own tenant's events (like Timeback's read endpoint).

Filters: ``limit`` (1-1000, default 100), ``offset``, ``sensor``, ``startDate``/``endDate`` (event time, ISO 8601),
``actorId``. Every query is restricted to the caller's tenant; values are sent as escaped SQL literals.
The query runs through the sink's read-only SQL endpoint (embedded ClickHouse) or on the ClickHouse server.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import ClickHouseUnavailableForReadsError, InvalidPayloadError
from schemas.coerce import parse_time
from schemas.errors import FieldProblem
from sinks.errors import SinkError
from sinks.query_client import SqlClient

EVENT_COLUMNS = (
    "event_id", "event_type", "profile", "action", "event_time", "received_time", "sensor", "ed_app", "student_id",
    "object_id", "object_type", "course_name", "subject_name", "bncc_code", "xp_earned", "seconds_active",
    "score_given", "max_score", "source",
)
MAX_LIMIT = 1000


def sql_string(value: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _integer(query: Any, name: str, default: int, low: int, high: int, problems: list[FieldProblem]) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(FieldProblem(name, f"{name} must be an integer, got {raw!r}"))
        return default
    if not low <= value <= high:
        problems.append(FieldProblem(name, f"{name} must be between {low} and {high}"))
    return value


def events_query(database: str, tenant: str, query: Any) -> tuple[str, int, int]:
    """The SQL of one read request; raises InvalidPayloadError naming every bad parameter."""
    problems: list[FieldProblem] = []
    limit = _integer(query, "limit", 100, 1, MAX_LIMIT, problems)
    offset = _integer(query, "offset", 0, 0, 10_000_000, problems)
    conditions = [f"tenant = {sql_string(tenant)}"]
    if query.get("sensor"):
        conditions.append(f"sensor = {sql_string(query['sensor'])}")
    if query.get("actorId"):
        conditions.append(f"student_id = {sql_string(query['actorId'])}")
    for name, operator in (("startDate", ">="), ("endDate", "<")):
        if name in query:  # present but empty is an error too, not "no filter"
            moment = parse_time(query[name])
            if moment is None:
                problems.append(FieldProblem(name, f"{name} must be an ISO 8601 date-time, got {query[name]!r}"))
            else:
                conditions.append(f"event_time {operator} fromUnixTimestamp64Milli({int(moment.timestamp() * 1000)})")
    if problems:
        raise InvalidPayloadError("invalid query parameters", problems=problems)
    sql = (f"SELECT {', '.join(EVENT_COLUMNS)} FROM {database}.learning_facts FINAL "
           f"WHERE {' AND '.join(conditions)} ORDER BY event_time DESC, event_id LIMIT {limit} OFFSET {offset}")
    return sql, limit, offset


async def read_events(reader: SqlClient, database: str, tenant: str, query: Any, retry_after: int) -> web.Response:
    sql, limit, offset = events_query(database, tenant, query)
    try:
        answer = await reader.query(sql, "jsoneachrow")
    except SinkError as error:
        raise ClickHouseUnavailableForReadsError(f"ClickHouse cannot answer now: {error}",
                                                 retry_after=retry_after) from error
    rows = [orjson.loads(line) for line in answer.splitlines() if line.strip()]
    return web.Response(body=orjson.dumps({"events": rows, "limit": limit, "offset": offset, "count": len(rows)}),
                        content_type="application/json")
