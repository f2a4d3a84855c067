"""The raw archive: every accepted event's JSON in ``raw_events`` (migrations 008, 015), loaded from the archive topic.

- ``raw_archive_target``: the archive topic's target (``sinks.targets``): the rows the streams worker built
  (``schemas.archive_rows``: routing metadata, canonical event id and content hash, event time, the keyed pseudonym
  of every person the event names where its learner can be), Avro blocks appended to ``raw_events_in`` as they are
  (nothing decoded here);
- ``read_archived``: one tenant's archived versions received in a range, page by page in the table's key order
  (``renormalize`` reads them through the sink's ``POST /archive/raw-events``, or straight from a server);
- ``apply_archive_ttl``: the configured retention (``CALIPER_SINK__ARCHIVE_TTL_DAYS``), set at start when it differs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from schemas.archive import ARCHIVE_PAGE_ROWS, ArchivedEvent
from schemas.blocks import BlockCodec, RawArchiveRowCodec
from schemas.coerce import datetime_to_ms
from schemas.records import RawEvent
from sinks.clickhouse import ClickHouse
from sinks.failed import describe_archive_row
from sinks.migrations import Layout
from sinks.tables import RAW_ARCHIVE_INPUT_TABLE, RAW_ARCHIVE_TABLE
from sinks.targets import AvroTarget

log = logging.getLogger(__name__)

Rows = Callable[[str, dict[str, Any]], tuple[list[str], list[tuple[Any, ...]]]]


def raw_archive_target(rows: RawArchiveRowCodec, blocks: BlockCodec) -> AvroTarget:
    """The archive topic's target: RawArchiveRow Avro (blocks, or single rows) -> ``raw_events_in``."""
    return AvroTarget(RAW_ARCHIVE_INPUT_TABLE, rows, blocks=blocks, destination=RAW_ARCHIVE_TABLE,
                      describe=describe_archive_row(rows, blocks))


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
