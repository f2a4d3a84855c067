"""What the sink loads from each topic: a *target* says how the topic's messages become one insert, and which
entry table receives it.

Every target goes through the same machinery (``sinks.batches``, ``sinks.windows``, ``sinks.writer``,
``sinks.loader``): per-partition ranges gathered into one window per target, recorded before one insert carrying the
window's deduplication token, messages ClickHouse refuses isolated into ``sink_rejects``. A target only turns the
messages of a window (each named by its ``MessageKey``: topic, partition, offset) into ``InsertGroup``s (each one
insert of rows in one ClickHouse input format, splittable into sub-ranges) plus the messages it cannot read at all
(rejects, with the reason):

- ``AvroTarget`` (the facts topic, the archive topic): message bodies (single records, or blocks of them:
  ``schemas.blocks``) joined into Avro container files, one per writer schema of the records, that ClickHouse
  decodes; no record is decoded in Python (``sinks.avro_container``);
- ``JsonRowsTarget``: each message becomes one JSON object of a ``JSONEachRow`` insert through a function of the
  message (``row_of``): a JSON side topic (dead letters, rejected requests, jobs), whose ``row_of`` reads the
  record (``schemas.side_topics``) and adds the message's coordinates.

An entry table is a Null table whose columns are the row's keys (or the Avro field names), with a materialized
view moving the rows to the real table (migrations 005, 008, 015).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from fastavro.schema import to_parsing_canonical_form

from schemas.avro.codec import SINGLE_OBJECT_MARKER, AvroCodec
from schemas.blocks import BlockCodec
from schemas.errors import SchemaEncodingError
from sinks.avro_container import Reading, WriterGroup, container_of, group_by_writer
from sinks.clickhouse import ClickHouse

MessageKey = tuple[str, int, int]  # topic, partition, offset: where a message is
Unreadable = tuple[MessageKey, bytes, str]  # the message, its bytes, why it cannot be loaded


class InsertGroup(Protocol):
    """Messages of one window that are inserted together: ``body(low, high)`` is the insert of messages
    ``[low, high)`` (so a refused group can be split), ``rows(low, high)`` how many rows it holds, ``original(i)``
    the i-th message as it was on the topic."""

    @property
    def keys(self) -> list[MessageKey]: ...

    def body(self, low: int, high: int) -> bytes: ...

    def rows(self, low: int, high: int) -> int: ...

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


# whose records a refused message held, one mapping each (tenant, client_id, source, event_id, job_id,
# envelope_index, people or student_keys, payload, original: whatever it can tell), for their failed_events rows
# (sinks.failed); empty when it cannot tell
Describe = Callable[[bytes], Sequence[Mapping[str, Any]]]


# -- Avro ------------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class AvroGroup:
    """The messages whose records have one writer schema: an Avro container file of their bodies."""

    group: WriterGroup[MessageKey]

    @property
    def keys(self) -> list[MessageKey]:
        return self.group.offsets

    def body(self, low: int, high: int) -> bytes:
        return container_of(self.group.schema_json, self.group.bodies[low:high], self.group.counts[low:high])

    def rows(self, low: int, high: int) -> int:
        return sum(self.group.counts[low:high])

    def original(self, index: int) -> bytes:
        return self.group.originals[index]


_BLOCK = ""  # a header's kind: a block record (any other value: a single record's writer schema)


class AvroTarget:
    """Messages with an Avro header naming their writer schema: a single record of ``codec``'s, or a block of them
    (``blocks``); ClickHouse decodes the containers (fields fill the entry table's columns by name, an absent field
    its DEFAULT)."""

    fmt = "Avro"

    def __init__(self, table: str, codec: AvroCodec, *, blocks: BlockCodec | None = None, destination: str,
                 describe: Describe | None = None) -> None:
        self.table = table
        self.codec = codec
        self.blocks = blocks
        self.destination = destination
        self.describe = describe
        self._kinds: dict[bytes, str] = {}  # a header seen -> its kind (_BLOCK, or the single record's schema)

    def read(self, message: bytes) -> Reading:
        """The records' writer schema, their count and their bodies; raises for a header neither codec knows, or
        a block whose body is not one array block."""
        header = message[:10] if message[:2] == SINGLE_OBJECT_MARKER else message[:5]
        kind = self._kinds.get(header)
        if kind is None:
            kind = self._kinds[header] = self._kind_of(message)
        if not kind and self.blocks is not None:
            return self.blocks.items_of(message)
        return kind, 1, message[len(header):]

    def _kind_of(self, message: bytes) -> str:
        try:
            writer, _ = self.codec.writer_schema_of(message)
        except SchemaEncodingError as error:
            if self.blocks is None:
                raise
            try:
                self.blocks.writer_schema_of(message)
            except SchemaEncodingError:
                raise error from None  # a header that names neither: the record's reason
            return _BLOCK
        return str(to_parsing_canonical_form(writer))

    def prepare(self, keys: Sequence[MessageKey],
                values: Sequence[bytes | None]) -> tuple[list[InsertGroup], list[Unreadable]]:
        groups, unreadable = group_by_writer(keys, values, self.read)
        return [AvroGroup(group) for group in groups], unreadable

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


RowOf = Callable[[SourceMessage], Mapping[str, Any]]


@dataclass(slots=True)
class JsonRowsGroup:
    """One JSON object (a line of ``JSONEachRow``) per message."""

    keys: list[MessageKey]
    lines: list[bytes]
    values: list[bytes]

    def body(self, low: int, high: int) -> bytes:
        return b"\n".join(self.lines[low:high]) + b"\n"

    def rows(self, low: int, high: int) -> int:
        return high - low

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
                line = orjson.dumps(self.row_of(SourceMessage(*key, raw)))
            except Exception as error:  # any reason a message cannot become a row is stored with the reject
                unreadable.append((key, raw, f"{type(error).__name__}: {error}"))
                continue
            group.keys.append(key)
            group.lines.append(line)
            group.values.append(raw)
        return ([group] if group.keys else []), unreadable

    def insert(self, clickhouse: ClickHouse, body: bytes, settings: Mapping[str, Any]) -> None:
        clickhouse.insert_raw(self.table, body, self.fmt, settings)
