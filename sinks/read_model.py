"""The senders' read model: one tenant's events as they were sent, read from the raw archive with bound parameters.

``ClickHouseEventReader`` implements ``schemas.read_api.EventReader`` over ``raw_events``. It runs where ClickHouse
can be opened: inside the sink process (embedded engine; the gateway reaches it through the sink's
``POST /read/events``, see ``gateway.read_client``) or in the gateway process against a server. Every value of the
query travels as a bound ``{name:Type}`` parameter, never spliced into the SQL text.

A page is read in two steps (``page_sql`` then ``payloads_sql``):

1. the CURRENT version of every event of the tenant (``argMax`` by newest send time - the received time where the
   source sends none -, then received time, then content hash: the facts' rule, ``current_facts``), the filters
   applied to that version, newest event time first, one row more than the page (is there a next page?). Events
   with no version passing the filters are left out before grouping (a cheap pre-filter: the current version of
   a kept event is one of its versions);
2. the JSON of exactly those versions.

The page's ``total`` (how many events pass the filters, wherever the page starts: the Timeback API's
``pagination``) comes from the page itself on the last page reached by offset, else from ``count_sql``: the same
grouping without the limit, in the same read slot. Any other page therefore costs one more
aggregation over the tenant's matching events. Each event is answered in the Timeback API's shape
(``schemas.timeback_read.stored_event``) with the pipeline's own fields beside it (``event`` as sent, ``source``,
``receivedTime``, ``versions``). ``event_id`` names one event (the primary key: no scan of the tenant).
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
from schemas.timeback_read import stored_event
from sinks.errors import QueryCapacityError, SinkError
from sinks.queries import AnalystQueries
from sinks.tables import RAW_ARCHIVE_TABLE

T = TypeVar("T")

# the current version of an event: what argMax keeps of it, and by what order
CURRENT_VERSION = "tuple(coalesce(send_time, received_time), received_time, content_hash)"
CURRENT_FIELDS = ("content_hash", "event_time", "event_type", "profile", "sensor", "actor_id")
# filters on a value of the event as sent, not a column: read from the payload only when the filter is given
EXPRESSIONS = {"actor_email": "JSONExtractString(payload, 'actor', 'email')"}
CURSOR = "(fromUnixTimestamp64Milli({after_time:Int64}, 'UTC'), {after_id:String})"


def _fields(query: EventQuery) -> tuple[str, ...]:
    return CURRENT_FIELDS + tuple(name for name in EXPRESSIONS if getattr(query, name))


def _filters(query: EventQuery, prefix: str, *, cursor: bool = True) -> tuple[list[str], dict[str, Any]]:
    """Conditions on one version's columns (``prefix``: how a column is named in the statement; "" for a version's
    own columns)."""
    conditions: list[str] = []
    parameters: dict[str, Any] = {}
    for name in ("sensor", "actor_id", "event_type", "profile", "actor_email"):
        value = getattr(query, name)
        if value:
            column = f"{prefix}{name}" if prefix else EXPRESSIONS.get(name, name)
            conditions.append(f"{column} = {{{name}:String}}")
            parameters[name] = value
    if query.start_ms is not None:
        conditions.append(f"{prefix}event_time >= fromUnixTimestamp64Milli({{start:Int64}}, 'UTC')")
        parameters["start"] = query.start_ms
    if query.end_ms is not None:
        conditions.append(f"{prefix}event_time < fromUnixTimestamp64Milli({{end:Int64}}, 'UTC')")
        parameters["end"] = query.end_ms
    if cursor and query.after_time_ms is not None:
        conditions.append(f"({prefix}event_time, event_id) < {CURSOR}")
        parameters |= {"after_time": query.after_time_ms, "after_id": query.after_event_id}
    return conditions, parameters


def _current_versions(database: str, query: EventQuery, *, cursor: bool) -> tuple[str, dict[str, Any]]:
    """The current version of each event passing the filters (and, with ``cursor``, after the cursor)."""
    table = f"{database}.{RAW_ARCHIVE_TABLE}"
    on_version, parameters = _filters(query, "", cursor=cursor)
    on_current, _ = _filters(query, "current_", cursor=cursor)
    parameters["tenant"] = query.tenant
    scope = "tenant = {tenant:String}"
    if query.event_id:
        scope += " AND event_id = {event_id:String}"
        parameters["event_id"] = query.event_id
    prefilter = ""
    if on_version:
        prefilter = f" AND event_id IN (SELECT event_id FROM {table} WHERE {scope} AND {' AND '.join(on_version)})"
    fields = _fields(query)
    current = ", ".join(f"current.{i + 1} AS current_{name}" for i, name in enumerate(fields))
    sql = (
        f"SELECT event_id, {current}, versions, first_received FROM ("
        f"SELECT event_id, argMax(tuple({', '.join(EXPRESSIONS.get(name, name) for name in fields)}), "
        f"{CURRENT_VERSION}) AS current, uniqExact(content_hash) AS versions, min(received_time) AS first_received "
        f"FROM {table} WHERE {scope}{prefilter} GROUP BY event_id)"
        + (f" WHERE {' AND '.join(on_current)}" if on_current else ""))
    return sql, parameters


def page_sql(database: str, query: EventQuery) -> tuple[str, dict[str, Any]]:
    """Step 1: the page's events (their current version's key and filter columns, how many versions, when the
    first was received)."""
    sql, parameters = _current_versions(database, query, cursor=True)
    parameters |= {"limit": query.limit + 1, "offset": query.offset}
    return sql + " ORDER BY current_event_time DESC, event_id DESC LIMIT {limit:UInt32} OFFSET {offset:UInt64}", \
        parameters


def count_sql(database: str, query: EventQuery) -> tuple[str, dict[str, Any]]:
    """How many events pass the filters (``total``) and, for a page after a cursor, how many come before it in
    the page order (``passed``: the position of the page)."""
    sql, parameters = _current_versions(database, query, cursor=False)
    passed = "0"
    if query.after_time_ms is not None:
        passed = f"countIf((current_event_time, event_id) >= {CURSOR})"
        parameters |= {"after_time": query.after_time_ms, "after_id": query.after_event_id}
    return f"SELECT count() AS total, {passed} AS passed FROM ({sql})", parameters


def payloads_sql(database: str, tenant: str, event_ids: list[str], hashes: list[str]) -> tuple[str, dict[str, Any]]:
    """Step 2: the versions the page shows, as they were sent."""
    sql = (f"SELECT event_id, content_hash, payload, source, client_id, send_time, received_time "
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
            total, position = self._count(query, page, more)
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
            payload = orjson.loads(stored["payload"])
            received = iso_utc(stored["received_time"])
            timeback = stored_event(
                payload, event_id=row["event_id"], event_type=row["current_event_type"], sensor=row["current_sensor"],
                event_time=iso_utc(row["current_event_time"]), send_time=iso_utc(stored["send_time"]),
                created=iso_utc(row["first_received"]), updated=received, client_id=stored["client_id"])
            events.append({**timeback, "event": payload, "source": stored["source"], "receivedTime": received,
                           "versions": int(row["versions"])})
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = encode_cursor(datetime_to_ms(last["current_event_time"]), last["event_id"])
        return EventPage(events=events, limit=query.limit, offset=query.offset, next_cursor=next_cursor, total=total,
                         position=position)

    def _count(self, query: EventQuery, page: list[dict[str, Any]], more: bool) -> tuple[int, int]:
        """``(total, position)`` of the page: from the page itself when it is the last one reached by offset (no
        statement), else by ``count_sql``."""
        if query.after_time_ms is None and not more and (page or query.offset == 0):
            return query.offset + len(page), query.offset
        _, rows = self._queries.rows_blocking(*count_sql(self._queries.database, query))
        total, passed = (int(value) for value in rows[0])
        return total, passed if query.after_time_ms is not None else query.offset

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
