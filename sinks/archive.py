"""The raw archive: every accepted event's JSON in ``raw_events`` (migration 008), loaded from the raw topics.

- ``raw_archive_target``: the target of each raw topic (``sinks.targets``): each RawEvent of a message (a
  ``RawEventBatch`` or a lone RawEvent, Avro, any catalog version: ``RawEventCodec.decode_events``) becomes one
  ``raw_events_in`` row (``archive_row``): the routing metadata, the canonical event id and content hash
  (the facts' own, ``schemas.event_identity``), when the event says it happened, and the keyed pseudonym of every
  person the event names where its learner can be (``student_keys``: what erasure matches on);
- ``read_archived``: one tenant's archived versions received in a range, page by page in the table's key order
  (``renormalize`` reads them through the sink's ``POST /archive/raw-events``, or straight from a server);
- ``apply_archive_ttl``: the configured retention (``CALIPER_SINK__ARCHIVE_TTL_DAYS``), set at start when it differs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from schemas.archive import ARCHIVE_PAGE_ROWS, ArchivedEvent
from schemas.codec import RawEventCodec
from schemas.coerce import datetime_to_ms
from schemas.errors import UnknownTimeZoneError
from schemas.event_identity import (
    canonical_document,
    canonical_id,
    document_content_hash,
    event_time_of,
    learner_candidates,
    reference_id,
)
from schemas.privacy import student_key_for
from schemas.records import RawEvent
from schemas.tenants import DEFAULT_TIMEZONE, zone_for
from sinks.clickhouse import ClickHouse
from sinks.failed import describe_raw_event
from sinks.migrations import Layout
from sinks.tables import RAW_ARCHIVE_INPUT_TABLE, RAW_ARCHIVE_TABLE
from sinks.targets import JsonRowsTarget, SourceMessage

log = logging.getLogger(__name__)

# DateTime64(3)'s range: an event time outside it is stored as the received time (the payload keeps the original)
_EARLIEST_MS, _LATEST_MS = -2_208_988_800_000, 10_413_791_999_999  # 1900-01-01, 2299-12-31T23:59:59.999
Rows = Callable[[str, dict[str, Any]], tuple[list[str], list[tuple[Any, ...]]]]


StudentKeys = Callable[[str, str], str]  # (tenant, person) -> the keyed pseudonym


def cached_student_keys(student_key: bytes, size: int = 20_000) -> StudentKeys:
    """``student_key_for`` with ``student_key``, remembering the last ``size`` people: a school's students send
    event after event, and the HMAC is a sizeable part of an archive row's cost."""
    return functools.lru_cache(maxsize=size)(lambda tenant, person: student_key_for(tenant, person, student_key))


def archive_row(raw: RawEvent, student_key: bytes, keys: StudentKeys | None = None) -> dict[str, Any]:
    """The ``raw_events_in`` row of one raw event; ValueError (orjson's) when its payload is not JSON. ``keys``:
    the pseudonyms of ``student_key`` (``cached_student_keys``), computed here when not given."""
    key_of = keys or (lambda tenant, person: student_key_for(tenant, person, student_key))
    document = canonical_document(raw.payload)
    try:
        zone = zone_for(raw.tenant_timezone or DEFAULT_TIMEZONE)
    except UnknownTimeZoneError:  # the event is archived all the same; its time is then read as UTC
        zone = zone_for(DEFAULT_TIMEZONE)
    event_time = event_time_of(raw.source, document, zone)
    if event_time is None or not _EARLIEST_MS <= event_time <= _LATEST_MS:
        event_time = raw.received_time_ms
    people = learner_candidates(document)
    gateway_student = canonical_id(raw.student_id)
    if gateway_student and gateway_student not in people:
        people.append(gateway_student)
    return {
        "tenant": raw.tenant, "client_id": raw.client_id, "source": raw.source,
        "event_id": canonical_id(raw.event_id), "content_hash": document_content_hash(document),
        "event_type": raw.event_type, "profile": raw.profile, "student_id": raw.student_id,
        "student_keys": [key_of(raw.tenant, person) for person in people],
        "actor_id": canonical_id(reference_id(document.get("actor") if isinstance(document, dict) else None)),
        "sensor": raw.sensor, "event_time_ms": event_time, "send_time_ms": raw.send_time_ms or None,
        "received_time_ms": raw.received_time_ms, "envelope_index": raw.envelope_index,
        "tenant_timezone": raw.tenant_timezone, "payload": raw.payload.decode(),
    }


def raw_archive_target(codec: RawEventCodec, student_key: bytes) -> JsonRowsTarget:
    """The target of a raw topic: a message's RawEvents (Avro) -> their ``raw_events_in`` rows (JSONEachRow). A
    message one of whose events cannot become a row is refused whole (``sinks.targets``: per message)."""
    if not student_key:
        raise ValueError("the raw archive needs the student key secret (its rows must be erasable)")

    keys = cached_student_keys(student_key)

    def row_of(message: SourceMessage) -> list[Mapping[str, Any]]:
        return [archive_row(raw, student_key, keys) for raw in codec.decode_events(message.value)]

    return JsonRowsTarget(RAW_ARCHIVE_INPUT_TABLE, row_of, destination=RAW_ARCHIVE_TABLE,
                          describe=describe_raw_event(codec))


# -- reading ---------------------------------------------------------------------------------------------------

ARCHIVED_COLUMNS = ("tenant", "client_id", "source", "event_id", "event_type", "profile", "student_id", "sensor",
                    "send_time", "received_time", "envelope_index", "tenant_timezone", "content_hash", "payload")


def _range(tenant: str, from_ms: int | None, to_ms: int | None) -> tuple[list[str], dict[str, Any]]:
    conditions = ["tenant = {tenant:String}"]
    parameters: dict[str, Any] = {"tenant": tenant}
    if from_ms is not None:
        conditions.append("received_time >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')")
        parameters["from_ms"] = from_ms
    if to_ms is not None:
        conditions.append("received_time < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')")
        parameters["to_ms"] = to_ms
    return conditions, parameters


def count_archived(rows: Rows, database: str, tenant: str, from_ms: int | None, to_ms: int | None) -> int:
    """How many archived versions ``read_archived`` gives for the same range."""
    conditions, parameters = _range(tenant, from_ms, to_ms)
    _, result = rows(f"SELECT count() FROM {database}.{RAW_ARCHIVE_TABLE} FINAL WHERE {' AND '.join(conditions)}",
                     parameters)
    return int(result[0][0]) if result else 0


def read_archived(rows: Rows, database: str, tenant: str, from_ms: int | None, to_ms: int | None,
                  page_rows: int = ARCHIVE_PAGE_ROWS) -> Iterator[list[ArchivedEvent]]:
    """Pages of one tenant's archived versions received in ``[from_ms, to_ms)``, in the table's key order (event
    id, content hash; each page starts where the last ended, so a page reads only its own key range)."""
    conditions, parameters = _range(tenant, from_ms, to_ms)
    after: tuple[str, str] | None = None
    while True:
        where = list(conditions)
        page_parameters = {**parameters, "limit": page_rows}
        if after is not None:
            where.append("(event_id, content_hash) > ({after_id:String}, {after_hash:String})")
            page_parameters |= {"after_id": after[0], "after_hash": after[1]}
        columns, result = rows(
            f"SELECT {', '.join(ARCHIVED_COLUMNS)} FROM {database}.{RAW_ARCHIVE_TABLE} FINAL "
            f"WHERE {' AND '.join(where)} ORDER BY event_id, content_hash LIMIT {{limit:UInt32}}", page_parameters)
        if not result:
            return
        page = [_archived(dict(zip(columns, row, strict=True))) for row in result]
        yield page
        if len(result) < page_rows:
            return
        after = (page[-1].event.event_id, page[-1].content_hash)


def _archived(row: dict[str, Any]) -> ArchivedEvent:
    send = row["send_time"]
    event = RawEvent(
        tenant=row["tenant"], client_id=row["client_id"], source=row["source"], event_id=row["event_id"],
        event_type=row["event_type"], profile=row["profile"], student_id=row["student_id"], sensor=row["sensor"],
        send_time_ms=0 if send is None else _epoch_ms(send), received_time_ms=_epoch_ms(row["received_time"]),
        envelope_index=int(row["envelope_index"]), tenant_timezone=row["tenant_timezone"],
        payload=row["payload"].encode())
    return ArchivedEvent(event=event, content_hash=row["content_hash"])


def _epoch_ms(moment: Any) -> int:
    return datetime_to_ms(moment)  # naive datetimes from the client are UTC


# -- retention -------------------------------------------------------------------------------------------------

_TTL_DAYS = re.compile(r"TTL\s+toDateTime\(received_time\)\s*\+\s*toIntervalDay\((\d+)\)")


def apply_archive_ttl(clickhouse: ClickHouse, layout: Layout, days: int) -> bool:
    """Keep archived events ``days`` after they were received (0: for ever); True when the TTL was changed.
    Changing it rewrites the TTL of existing parts (a mutation), so it is done only when it differs."""
    table = layout.local_table(RAW_ARCHIVE_TABLE)
    database, name = table.split(".", 1)
    create = clickhouse.scalar("SELECT create_table_query FROM system.tables "
                               "WHERE database = {db:String} AND name = {name:String}", {"db": database, "name": name})
    match = _TTL_DAYS.search(str(create or ""))
    current = int(match.group(1)) if match else 0
    if current == days:
        return False
    if days:
        clickhouse.command(f"ALTER TABLE {table} {layout.on_cluster} "
                           f"MODIFY TTL toDateTime(received_time) + toIntervalDay({int(days)})")
    else:
        clickhouse.command(f"ALTER TABLE {table} {layout.on_cluster} REMOVE TTL")
    log.info("raw archive: events are now kept %s", f"{days} days" if days else "for ever")
    return True
