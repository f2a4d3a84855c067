"""The senders' read model: one tenant's events as they were sent, read from the raw archive with bound parameters.

``ClickHouseEventReader`` implements ``schemas.read_api.EventReader`` over ``raw_events``. It runs where ClickHouse
can be opened: inside the sink process (embedded engine; the gateway reaches it through the sink's
``POST /read/events``, see ``sinks.read_client``) or in the gateway process against a server. Every value of the
query travels as a bound ``{name:Type}`` parameter, never spliced into the SQL text.

A page is read in two steps (``page_sql`` then ``payloads_sql``):

1. the CURRENT version of every event of the tenant (``argMax`` by newest send time - the received time where the
   source sends none -, then received time, then content hash: the facts' rule, ``current_facts``), the filters
   applied to that version, newest event time first, one row more than the page (is there a next page?). Events
   with no version passing the filters are left out before grouping (a cheap pre-filter: the current version of
   a kept event is one of its versions);
2. the JSON of exactly those versions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

import orjson

from schemas.coerce import datetime_to_ms
from schemas.kafka import Topics
from schemas.read_api import EventPage, EventQuery, JobStatus, ReadBusyError, ReadUnavailableError, encode_cursor
from sinks.errors import QueryCapacityError, SinkError
from sinks.queries import AnalystQueries
from sinks.tables import RAW_ARCHIVE_TABLE

T = TypeVar("T")

# the current version of an event: what argMax keeps of it, and by what order
CURRENT_VERSION = "tuple(coalesce(send_time, received_time), received_time, content_hash)"
CURRENT_FIELDS = ("content_hash", "event_time", "event_type", "profile", "sensor", "actor_id")


def _filters(query: EventQuery, prefix: str) -> tuple[list[str], dict[str, Any]]:
    """Conditions on one version's columns (``prefix``: how a column is named in the statement)."""
    conditions: list[str] = []
    parameters: dict[str, Any] = {}
    for name, column in (("sensor", "sensor"), ("actor_id", "actor_id"), ("event_type", "event_type"),
                         ("profile", "profile")):
        value = getattr(query, name)
        if value:
            conditions.append(f"{prefix}{column} = {{{name}:String}}")
            parameters[name] = value
    if query.start_ms is not None:
        conditions.append(f"{prefix}event_time >= fromUnixTimestamp64Milli({{start:Int64}}, 'UTC')")
        parameters["start"] = query.start_ms
    if query.end_ms is not None:
        conditions.append(f"{prefix}event_time < fromUnixTimestamp64Milli({{end:Int64}}, 'UTC')")
        parameters["end"] = query.end_ms
    if query.after_time_ms is not None:
        conditions.append(f"({prefix}event_time, event_id) < "
                          "(fromUnixTimestamp64Milli({after_time:Int64}, 'UTC'), {after_id:String})")
        parameters |= {"after_time": query.after_time_ms, "after_id": query.after_event_id}
    return conditions, parameters


def page_sql(database: str, query: EventQuery) -> tuple[str, dict[str, Any]]:
    """Step 1: the page's events (their current version's key and filter columns, and how many versions)."""
    table = f"{database}.{RAW_ARCHIVE_TABLE}"
    on_version, parameters = _filters(query, "")
    on_current, _ = _filters(query, "current_")
    parameters |= {"tenant": query.tenant, "limit": query.limit + 1, "offset": query.offset}
    prefilter = ""
    if on_version:
        prefilter = (f" AND event_id IN (SELECT event_id FROM {table} WHERE tenant = {{tenant:String}} AND "
                     f"{' AND '.join(on_version)})")
    current = ", ".join(f"current.{i + 1} AS current_{name}" for i, name in enumerate(CURRENT_FIELDS))
    sql = (
        f"SELECT event_id, {current}, versions FROM ("
        f"SELECT event_id, argMax(tuple({', '.join(CURRENT_FIELDS)}), {CURRENT_VERSION}) AS current, "
        f"uniqExact(content_hash) AS versions FROM {table} "
        f"WHERE tenant = {{tenant:String}}{prefilter} GROUP BY event_id)"
        + (f" WHERE {' AND '.join(on_current)}" if on_current else "")
        + " ORDER BY current_event_time DESC, event_id DESC LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    return sql, parameters


def payloads_sql(database: str, tenant: str, event_ids: list[str], hashes: list[str]) -> tuple[str, dict[str, Any]]:
    """Step 2: the versions the page shows, as they were sent."""
    sql = (f"SELECT event_id, content_hash, payload, source, send_time, received_time "
           f"FROM {database}.{RAW_ARCHIVE_TABLE} WHERE tenant = {{tenant:String}} "
           "AND event_id IN (SELECT arrayJoin({ids:Array(String)})) "
           "AND content_hash IN (SELECT arrayJoin({hashes:Array(String)})) "
           "ORDER BY received_time DESC LIMIT 1 BY event_id, content_hash")
    return sql, {"tenant": tenant, "ids": event_ids, "hashes": hashes}


def iso_utc(value: Any) -> str | None:
    """A DateTime64 value as ISO 8601 UTC with milliseconds and ``Z`` (the client gives naive UTC datetimes)."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return str(aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))


class ClickHouseEventReader:
    """``EventReader`` over the raw archive, through the read pool (read-only, limited, one slot per tenant); the jobs'
    status from the receipts tables (``sinks.jobs_model``)."""

    def __init__(self, queries: AnalystQueries, facts_topic: str = Topics().facts) -> None:
        self._queries = queries
        self.facts_topic = facts_topic

    def read_blocking(self, query: EventQuery) -> EventPage:
        database = self._queries.database
        try:
            columns, rows = self._queries.rows_blocking(*page_sql(database, query))
            page = [dict(zip(columns, row, strict=True)) for row in rows]
            more = len(page) > query.limit
            page = page[:query.limit]
            versions: dict[tuple[str, str], dict[str, Any]] = {}
            if page:
                names, found = self._queries.rows_blocking(*payloads_sql(
                    database, query.tenant, [row["event_id"] for row in page],
                    [row["current_content_hash"] for row in page]))
                for values in found:
                    version = dict(zip(names, values, strict=True))
                    versions[(version["event_id"], version["content_hash"])] = version
        except SinkError as error:
            raise ReadUnavailableError(f"the events cannot be read now: {type(error).__name__}") from error
        events = []
        for row in page:
            stored = versions.get((row["event_id"], row["current_content_hash"]))
            if stored is None:  # erased or expired between the two steps
                continue
            events.append({
                "event": orjson.loads(stored["payload"]), "source": stored["source"], "sensor": row["current_sensor"],
                "eventTime": iso_utc(row["current_event_time"]), "sendTime": iso_utc(stored["send_time"]),
                "receivedTime": iso_utc(stored["received_time"]), "versions": int(row["versions"]),
            })
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = encode_cursor(datetime_to_ms(last["current_event_time"]), last["event_id"])
        return EventPage(events=events, limit=query.limit, offset=query.offset, next_cursor=next_cursor)

    async def read_events(self, query: EventQuery) -> EventPage:
        return await read_in_slot(self._queries, query.tenant, self.read_blocking, query)

    async def read_job(self, tenant: str, job_id: str) -> JobStatus | None:
        from sinks.jobs_model import ClickHouseJobReader  # it imports this module (iso_utc)

        return await ClickHouseJobReader(self._queries, self.facts_topic).read_job(tenant, job_id)

    async def close(self) -> None:
        await asyncio.to_thread(self._queries.close)


async def read_in_slot(queries: AnalystQueries, tenant: str, read: Callable[..., T], *args: Any) -> T:
    """``read(*args)`` in a slot of ``queries`` for ``tenant`` (``sinks.query_slots``): ``ReadBusyError`` when
    the tenant's or every slot stays taken."""
    try:
        return await queries.slots.call(tenant, read, *args)
    except QueryCapacityError as error:
        raise ReadBusyError(str(error), retry_after=error.retry_after) from error
