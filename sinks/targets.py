"""What the sink loads from each topic: a *target* says how the topic's messages become one insert, and which
entry table receives it.

Every target goes through the same machinery (``sinks.batches``, ``sinks.windows``, ``sinks.writer``,
``sinks.loader``): per-partition ranges gathered into one window per target, recorded before one insert carrying the
window's deduplication token, messages ClickHouse refuses isolated into ``sink_rejects``. A target only turns the
messages of a window (each named by its ``MessageKey``: topic, partition, offset) into ``InsertGroup``s (each one
insert of rows in one ClickHouse input format, splittable into sub-ranges) plus the messages it cannot read at all
(rejects, with the reason):

- ``AvroTarget`` (the facts topic): message bodies joined into Avro container files, one per writer schema, that
  ClickHouse decodes; no record is decoded in Python (``sinks.avro_container``);
- ``JsonRowsTarget``: each message becomes one JSON object (or several) of a ``JSONEachRow`` insert through a
  function of the message (``row_of``); the raw archive is one (``raw_archive_target``: each RawEvent of a message
  -> a ``raw_events_in`` row, ``sinks.archive``). A JSON side topic (dead letters, rejected requests) is another:
  its ``row_of`` reads the record (``schemas.side_topics``) and adds the message's coordinates.

An entry table is a Null table whose columns are the row's keys (or the Avro field names), with a materialized
view moving the rows to the real table (migrations 005, 008).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from schemas.codec import AvroCodec
from sinks.avro_container import WriterGroup, container_of, group_by_writer
from sinks.clickhouse import ClickHouse

MessageKey = tuple[str, int, int]  # topic, partition, offset: where a message is
Unreadable = tuple[MessageKey, bytes, str]  # the message, its bytes, why it cannot be loaded


class InsertGroup(Protocol):
    """Messages of one window that are inserted together: ``body(low, high)`` is the insert of messages
    ``[low, high)`` (so a refused group can be split), ``original(i)`` the i-th message as it was on the topic."""

    @property
    def keys(self) -> list[MessageKey]: ...

    def body(self, low: int, high: int) -> bytes: ...

    def original(self, index: int) -> bytes: ...


class Target(Protocol):
    """How one topic's messages are loaded."""

    table: str  # the entry table the inserts go to
    destination: str  # the table its view fills (what analysts read; the metrics' label)
    fmt: str  # the ClickHouse input format of an insert's body

    def prepare(self, keys: Sequence[MessageKey],
                values: Sequence[bytes | None]) -> tuple[list[InsertGroup], list[Unreadable]]:
        """The inserts of a window's messages, and the messages that cannot be loaded."""
        ...

    def insert(self, clickhouse: ClickHouse, body: bytes, settings: Mapping[str, Any]) -> None:
        """Insert one body into the entry table."""
        ...


# whose message a refused message was (tenant, client_id, source, event_id, job_id, envelope_index, people,
# payload; whatever it can tell), for its failed_events row (sinks.failed)
Describe = Callable[[bytes], Mapping[str, Any]]


# -- Avro ------------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class AvroGroup:
    """The messages of one writer schema: an Avro container file of their bodies."""

    group: WriterGroup
    schema_json: str

    @property
    def keys(self) -> list[MessageKey]:
        return self.group.offsets

    def body(self, low: int, high: int) -> bytes:
        return container_of(self.schema_json, self.group.bodies[low:high])

    def original(self, index: int) -> bytes:
        return self.group.headers[index] + self.group.bodies[index]


class AvroTarget:
    """Messages with an Avro header naming their writer schema (``codec.writer_schema_of``); ClickHouse decodes the
    containers (fields fill the entry table's columns by name, an absent field its DEFAULT)."""

    fmt = "Avro"

    def __init__(self, table: str, codec: AvroCodec, *, destination: str, describe: Describe | None = None) -> None:
        self.table = table
        self.codec = codec
        self.destination = destination
        self.describe = describe

    def prepare(self, keys: Sequence[MessageKey],
                values: Sequence[bytes | None]) -> tuple[list[InsertGroup], list[Unreadable]]:
        groups, unreadable = group_by_writer(keys, values, self.codec.writer_schema_of)
        return [AvroGroup(group, group.schema_json()) for group in groups], unreadable

    def insert(self, clickhouse: ClickHouse, body: bytes, settings: Mapping[str, Any]) -> None:
        clickhouse.insert_avro(self.table, body, settings)


# -- JSON rows -------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message of a batch, for a ``row_of`` function."""

    topic: str
    partition: int
    offset: int
    value: bytes


# the row of a message, or its rows (a list: a message holding several records, e.g. a batch of raw events)
RowOf = Callable[[SourceMessage], Mapping[str, Any] | list[Mapping[str, Any]]]


@dataclass(slots=True)
class JsonRowsGroup:
    """The JSON objects (lines of ``JSONEachRow``) of each message: a message's rows stay together, so a refused
    insert is split between messages, never inside one."""

    keys: list[MessageKey]
    lines: list[bytes]
    values: list[bytes]

    def body(self, low: int, high: int) -> bytes:
        return b"\n".join(self.lines[low:high]) + b"\n"

    def original(self, index: int) -> bytes:
        return self.values[index]


class JsonRowsTarget:
    """Messages turned into rows by ``row_of`` (which raises for a message it cannot read: a reject with the
    reason), inserted as ``JSONEachRow``; the row's keys are the entry table's columns."""

    fmt = "JSONEachRow"

    def __init__(self, table: str, row_of: RowOf, *, destination: str, describe: Describe | None = None) -> None:
        self.table = table
        self.row_of = row_of
        self.destination = destination
        self.describe = describe

    def prepare(self, keys: Sequence[MessageKey],
                values: Sequence[bytes | None]) -> tuple[list[InsertGroup], list[Unreadable]]:
        group = JsonRowsGroup([], [], [])
        unreadable: list[Unreadable] = []
        for key, value in zip(keys, values, strict=True):
            raw = value or b""
            try:
                row = self.row_of(SourceMessage(*key, raw))
                line = (b"\n".join([orjson.dumps(one) for one in row]) if isinstance(row, list)
                        else orjson.dumps(row))
            except Exception as error:  # any reason a message cannot become a row is stored with the reject
                unreadable.append((key, raw, f"{type(error).__name__}: {error}"))
                continue
            if not line:  # a message without rows (an empty batch) loads nothing, and is not refused
                continue
            group.keys.append(key)
            group.lines.append(line)
            group.values.append(raw)
        return ([group] if group.keys else []), unreadable

    def insert(self, clickhouse: ClickHouse, body: bytes, settings: Mapping[str, Any]) -> None:
        clickhouse.insert_raw(self.table, body, self.fmt, settings)
