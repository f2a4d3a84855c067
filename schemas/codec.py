"""Avro encoding of the Kafka records with fastavro.

Every message names the schema that wrote it, so a consumer decodes any past version:

- by default the Avro single-object encoding: ``C3 01`` + the writer schema's CRC-64-AVRO fingerprint
  (8 bytes, little-endian) + the binary body; writers are looked up in the catalog of released versions;
- with a schema registry, the Confluent wire format: ``00`` + the registry's schema id (4 bytes, big-endian)
  + the body (see ``schemas.registry``).

Decoding always resolves the writer's schema to the reader's (the newest catalog version), following the Avro
resolution rules, so old messages gain the defaults of fields added since.

The newest version is also compiled into a plain encoder and decoder (``schemas.avro_fast``: the same bytes,
several times faster than fastavro's walk of the schema); whatever they do not handle goes through fastavro.
"""

from __future__ import annotations

import io
import operator
import struct
from collections.abc import Callable, Sequence
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas.avro_fast import FastPathMiss, compile_decoder, compile_encoder, compile_item_decoder, read_varint, varint
from schemas.avro_flat import FlatRecordWriter
from schemas.avro_gen import catalog_versions
from schemas.errors import SchemaEncodingError
from schemas.records import RAW_EVENT_FIELDS, LearningFact, RawEvent

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


def crc64_fingerprint(parsed_schema: Any) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a schema's parsing canonical form."""
    # fastavro prints the fingerprint's bytes in little-endian order already (e.g. "null" -> 8a8f25cce724dd63)
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed_schema), "CRC-64-AVRO"))


class AvroCodec:
    """Encode with the newest catalog version of one record; decode any version the catalog holds."""

    def __init__(self, record_name: str, schema_ids: dict[int, int] | None = None) -> None:
        versions = catalog_versions(record_name)
        if not versions:
            raise SchemaEncodingError(f"no catalog version of {record_name}")
        self.record_name = record_name
        self._parsed_versions = [parse_schema(schema) for _, schema in versions]
        self.reader_schema = self._parsed_versions[-1]
        # the newest version compiled (None where a schema is not flat): the hot paths of both stages
        self._fast_encode = compile_encoder(versions[-1][1], attributes=False)
        self._fast_encode_attributes = compile_encoder(versions[-1][1], attributes=True)
        self._fast_decode = compile_decoder(versions[-1][1])
        self.version = versions[-1][0]
        self._field_names = [str(field["name"]) for field in versions[-1][1]["fields"]]
        self.fingerprint = crc64_fingerprint(self.reader_schema)
        self._header = SINGLE_OBJECT_MARKER + self.fingerprint
        self._writers_by_fingerprint = {crc64_fingerprint(p): p for p in self._parsed_versions}
        # Confluent wire format: registry schema id -> catalog version number (filled by schemas.registry)
        self._confluent_id: int | None = None
        self._writers_by_registry_id: dict[int, Any] = {}
        if schema_ids:
            self.use_registry_ids(schema_ids)

    def use_registry_ids(self, schema_ids: dict[int, int]) -> None:
        """Switch to the Confluent wire format; ``schema_ids`` maps registry ids to catalog versions."""
        by_version = {number: parsed for number, parsed in zip(
            [n for n, _ in catalog_versions(self.record_name)], self._parsed_versions, strict=True)}
        self._writers_by_registry_id = {sid: by_version[v] for sid, v in schema_ids.items()}
        self._confluent_id = max(sid for sid, v in schema_ids.items() if v == self.version)
        self._header = CONFLUENT_MAGIC + struct.pack(">I", self._confluent_id)

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._fast_encode is not None:
            try:
                return self._header + self._fast_encode(record)
            except FastPathMiss:
                pass
        return self._encode_with_fastavro(record)

    def encode_attributes(self, record: Any) -> bytes:
        """``encode`` of an object holding every field as an attribute (a record dataclass), without a dict."""
        if self._fast_encode_attributes is not None:
            try:
                return self._header + self._fast_encode_attributes(record)
            except FastPathMiss:
                pass
        return self._encode_with_fastavro({name: getattr(record, name) for name in self._field_names})

    def _encode_with_fastavro(self, record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        try:
            fastavro.schemaless_writer(buffer, self.reader_schema, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            raise SchemaEncodingError(f"{self.record_name} does not fit its schema: {error}") from error
        return buffer.getvalue()

    @property
    def header(self) -> bytes:
        """What every message this codec writes starts with: the newest version's fingerprint or registry id."""
        return self._header

    def names_writer(self, message: bytes) -> bool:
        """Whether the message's header names a version of this record (a fingerprint or a registry id)."""
        if message[:2] == SINGLE_OBJECT_MARKER:
            return message[2:10] in self._writers_by_fingerprint
        if message[:1] == CONFLUENT_MAGIC and len(message) >= 5:
            return struct.unpack(">I", message[1:5])[0] in self._writers_by_registry_id
        return False

    def writer_schema_of(self, message: bytes) -> tuple[Any, int]:
        """The writer schema named by a message's header, and where its body starts."""
        if message[:2] == SINGLE_OBJECT_MARKER:
            writer = self._writers_by_fingerprint.get(message[2:10])
            if writer is None:
                raise SchemaEncodingError(
                    f"unknown {self.record_name} writer fingerprint {message[2:10].hex()}")
            return writer, 10
        if message[:1] == CONFLUENT_MAGIC and len(message) >= 5:
            schema_id = struct.unpack(">I", message[1:5])[0]
            writer = self._writers_by_registry_id.get(schema_id)
            if writer is None:
                raise SchemaEncodingError(f"unknown {self.record_name} registry schema id {schema_id}")
            return writer, 5
        raise SchemaEncodingError(f"{self.record_name} message has no Avro single-object or Confluent header")

    def decode(self, message: bytes) -> dict[str, Any]:
        writer, start = self.writer_schema_of(message)
        if writer is self.reader_schema and self._fast_decode is not None:
            try:
                return self._fast_decode(message, start)
            except FastPathMiss:
                pass
        try:  # the reader schema only when it differs (fastavro would compare them on every call)
            record = fastavro.schemaless_reader(io.BytesIO(message[start:]), writer,
                                                None if writer is self.reader_schema else self.reader_schema)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as error:
            raise SchemaEncodingError(f"cannot decode {self.record_name}: {error}") from error
        if not isinstance(record, dict):
            raise SchemaEncodingError(f"{self.record_name} message did not decode to a record")
        return record


class RawEventCodec(AvroCodec):
    """Avro codec of the gateway's raw events. Encoding goes through ``schemas.avro_flat`` (the same bytes as
    fastavro, several times faster) while the RawEvent schema is flat.

    A raw topic holds two records: a lone ``RawEvent`` and a ``RawEventBatch`` (several events of one request, one
    partition: what the gateway writes). ``encode_batch`` joins encoded events into a batch record;
    ``decode_events`` reads either, by the writer its header names: every reader of a raw topic goes through it.
    ``batch_schema_ids``: the registry ids of ``raw_event_batch``'s versions (Confluent wire format)."""

    def __init__(self, schema_ids: dict[int, int] | None = None,
                 batch_schema_ids: dict[int, int] | None = None) -> None:
        super().__init__("raw_event", schema_ids)
        self.batch_codec = AvroCodec("raw_event_batch", batch_schema_ids)
        batch_schema: Any = catalog_versions("raw_event_batch")[-1][1]
        # the newest batch's items are the newest RawEvent (both generated from the records): read without fastavro
        items = batch_schema["fields"][0]["type"]["items"]
        self._fast_item = (compile_item_decoder(items)
                           if items == catalog_versions("raw_event")[-1][1] else None)
        self._flat = FlatRecordWriter.of(self.reader_schema)
        schema: Any = self.reader_schema
        # the fields in the schema's order (the order they are written in), whatever RawEvent's attribute order
        self._fields = tuple(field["name"] for field in schema["fields"])
        if set(self._fields) != set(RAW_EVENT_FIELDS):
            raise SchemaEncodingError(f"RawEvent's fields {RAW_EVENT_FIELDS} are not its schema's {self._fields}")
        self._values = operator.attrgetter(*self._fields)
        self._defaults = {field["name"]: field["default"] for field in schema["fields"] if "default" in field}

    def encode_record(self, event: RawEvent) -> bytes:
        if self._flat is None:
            return self.encode({name: getattr(event, name) for name in RAW_EVENT_FIELDS})
        try:
            return self._header + self._flat.write(self._values(event))
        except ValueError as error:  # a string that cannot be UTF-8 (a lone surrogate)
            raise SchemaEncodingError(f"{self.record_name} does not fit its schema: {error}") from error

    def writer_for(self, variable: tuple[str, ...], **constants: Any) -> Callable[..., bytes]:
        """Encodes many RawEvents whose fields ``constants`` have the same values (those of one request): the
        function returned takes the values of the ``variable`` fields (in the schema's order, which is checked
        here) and returns the message, as ``encode_record`` would. A field named in neither takes its schema
        default (so an optional field added to RawEvent's schema needs no change here); a field without a default
        must be named."""
        remaining = tuple(name for name in self._fields if name not in constants)
        defaulted = {name: self._defaults[name] for name in remaining
                     if name not in variable and name in self._defaults}
        expected = tuple(name for name in remaining if name not in defaulted)
        if expected != variable:
            raise SchemaEncodingError(f"RawEvent's other fields are {expected}, not {variable}")
        constants = {**defaulted, **constants}
        if self._flat is None:
            def encode(*values: Any) -> bytes:
                return self.encode({**constants, **dict(zip(variable, values, strict=True))})
            return encode
        return self._flat.bind(self._header, **constants)

    def decode_record(self, message: bytes) -> RawEvent:
        return RawEvent(**self.decode(message))

    def encode_batch(self, messages: Sequence[bytes]) -> bytes:
        """The ``RawEventBatch`` record of these events, each a message of this codec (``encode_record``, or a
        ``writer_for`` writer): its header, then the Avro array of their bodies (a count, the items, a 0 count)."""
        header_size = len(self._header)
        if not messages:
            return self.batch_codec.header + b"\x00"
        return b"".join([self.batch_codec.header, varint(len(messages) << 1),
                         *[message[header_size:] for message in messages], b"\x00"])

    def encode_events(self, events: Sequence[RawEvent]) -> bytes:
        """The ``RawEventBatch`` record of these events."""
        return self.encode_batch([self.encode_record(event) for event in events])

    def decode_events(self, message: bytes) -> list[RawEvent]:
        """The events of a raw-topic message: a ``RawEventBatch``'s, in order, or a lone ``RawEvent``. Raises
        ``SchemaEncodingError`` for anything else (no header, an unknown writer, a malformed body)."""
        batch = self.batch_codec
        if not batch.names_writer(message):
            return [self.decode_record(message)]
        writer, start = batch.writer_schema_of(message)
        if writer is batch.reader_schema and self._fast_item is not None:
            try:
                return self._decode_items(message, start, self._fast_item)
            except FastPathMiss:
                pass
        return [RawEvent(**record) for record in batch.decode(message)["events"]]

    @staticmethod
    def _decode_items(message: bytes, position: int, item: Callable[[bytes, int], tuple[dict[str, Any], int]],
                      ) -> list[RawEvent]:
        """An Avro array of RawEvents at ``position`` to the message's end (blocks of items, a 0 count last; a
        negative count is followed by the block's size in bytes)."""
        events = []
        try:
            count, position = read_varint(message, position)
            while count:
                if count < 0:
                    count = -count
                    _, position = read_varint(message, position)
                for _ in range(count):
                    record, position = item(message, position)
                    events.append(RawEvent(**record))
                count, position = read_varint(message, position)
        except IndexError:
            raise FastPathMiss from None
        if position != len(message):
            raise FastPathMiss
        return events


class LearningFactCodec(AvroCodec):
    """Avro codec of the learning facts."""

    def __init__(self, schema_ids: dict[int, int] | None = None) -> None:
        super().__init__("learning_fact", schema_ids)

    def encode_record(self, fact: LearningFact) -> bytes:
        return self.encode_attributes(fact)

    def decode_record(self, message: bytes) -> LearningFact:
        return LearningFact(**self.decode(message))
