"""Avro encoding of the Kafka records.

Every message names the schema that wrote it, so a consumer decodes any past version:

- by default the Avro single-object encoding: ``C3 01`` + the writer schema's CRC-64-AVRO fingerprint
  (8 bytes, little-endian) + the binary body; writers are looked up in the catalog of released versions;
- with a schema registry, the Confluent wire format: ``00`` + the registry's schema id (4 bytes, big-endian)
  + the body (see ``schemas.avro.registry``).

Decoding always resolves the writer's schema to the reader's (the newest catalog version), following the Avro
resolution rules, so old messages gain the defaults of fields added since.

The bytes are written by ``schemas.avro.coder`` and read by ``schemas.avro.decoder`` (code compiled from each
schema, on first use: the encoder of the newest version, a decoder per writer version met); fastavro parses the
schemas and gives their fingerprints. Whatever does not fit raises ``SchemaEncodingError`` naming the field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas.avro.coder import bind_encoder, compile_encoder, varint
from schemas.avro.decoder import compile_decoder
from schemas.avro.generate import catalog_versions
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
        self.version = versions[-1][0]
        self.fingerprint = crc64_fingerprint(self.reader_schema)
        self._header = SINGLE_OBJECT_MARKER + self.fingerprint
        self._writers_by_fingerprint = {crc64_fingerprint(p): p for p in self._parsed_versions}
        # Confluent wire format: registry schema id -> catalog version number (filled by schemas.avro.registry)
        self._confluent_id: int | None = None
        self._writers_by_registry_id: dict[int, Any] = {}
        self._forget_compiled()
        if schema_ids:
            self.use_registry_ids(schema_ids)

    def _forget_compiled(self) -> None:
        """Drop the compiled coders (compiled again on first use): the header they write changed."""
        self._encoders: dict[bool, Callable[[Any], bytes]] = {}  # attributes? -> header + body
        self._decoders: dict[int, Callable[[bytes, int], dict[str, Any]]] = {}  # id(writer schema) -> decoder

    def use_registry_ids(self, schema_ids: dict[int, int]) -> None:
        """Switch to the Confluent wire format; ``schema_ids`` maps registry ids to catalog versions."""
        by_version = {number: parsed for number, parsed in zip(
            [n for n, _ in catalog_versions(self.record_name)], self._parsed_versions, strict=True)}
        self._writers_by_registry_id = {sid: by_version[v] for sid, v in schema_ids.items()}
        self._confluent_id = max(sid for sid, v in schema_ids.items() if v == self.version)
        self._header = CONFLUENT_MAGIC + struct.pack(">I", self._confluent_id)
        self._forget_compiled()

    def _encoder(self, attributes: bool) -> Callable[[Any], bytes]:
        encoder = self._encoders.get(attributes)
        if encoder is None:
            encoder = self._encoders[attributes] = compile_encoder(self.reader_schema, attributes=attributes,
                                                                   prefix=self._header)
        return encoder

    def encode(self, record: dict[str, Any]) -> bytes:
        """The message of a record given as a dict (a missing key takes its field's default)."""
        return self._encoder(False)(record)

    def encode_attributes(self, record: Any) -> bytes:
        """``encode`` of an object holding every field as an attribute (a record dataclass), without a dict."""
        return self._encoder(True)(record)

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
        decoder = self._decoders.get(id(writer))
        if decoder is None:  # the reader schema only when it differs (then resolved)
            decoder = self._decoders[id(writer)] = compile_decoder(
                writer, None if writer is self.reader_schema else self.reader_schema)
        return decoder(message, start)


class RawEventCodec(AvroCodec):
    """Avro codec of the gateway's raw events.

    A raw topic holds two records: a lone ``RawEvent`` and a ``RawEventBatch`` (several events of one request, one
    partition: what the gateway writes). ``encode_batch`` joins encoded events into a batch record;
    ``decode_events`` reads either, by the writer its header names: every reader of a raw topic goes through it.
    ``batch_schema_ids``: the registry ids of ``raw_event_batch``'s versions (Confluent wire format)."""

    def __init__(self, schema_ids: dict[int, int] | None = None,
                 batch_schema_ids: dict[int, int] | None = None) -> None:
        super().__init__("raw_event", schema_ids)
        self.batch_codec = AvroCodec("raw_event_batch", batch_schema_ids)
        schema: Any = self.reader_schema
        # the fields in the schema's order (the order they are written in), whatever RawEvent's attribute order
        self._fields = tuple(field["name"] for field in schema["fields"])
        if set(self._fields) != set(RAW_EVENT_FIELDS):
            raise SchemaEncodingError(f"RawEvent's fields {RAW_EVENT_FIELDS} are not its schema's {self._fields}")
        self._defaults = {field["name"]: field["default"] for field in schema["fields"] if "default" in field}

    def _forget_compiled(self) -> None:
        super()._forget_compiled()
        self._binders: dict[tuple[str, ...], Callable[..., Callable[..., bytes]]] = {}

    def encode_record(self, event: RawEvent) -> bytes:
        return self.encode_attributes(event)

    def writer_for(self, variable: tuple[str, ...], **constants: Any) -> Callable[..., bytes]:
        """Encodes many RawEvents whose fields ``constants`` have the same values (those of one request): the
        function returned takes the values of the ``variable`` fields (in the schema's order, which is checked
        here) and returns the message, as ``encode_record`` would. A field named in neither takes its schema
        default (so an optional field added to RawEvent's schema needs no change here); a field without a default
        must be named. The constants are encoded once, here."""
        remaining = tuple(name for name in self._fields if name not in constants)
        defaulted = {name: self._defaults[name] for name in remaining
                     if name not in variable and name in self._defaults}
        expected = tuple(name for name in remaining if name not in defaulted)
        if expected != variable:
            raise SchemaEncodingError(f"RawEvent's other fields are {expected}, not {variable}")
        constants = {**defaulted, **constants}
        names = tuple(name for name in self._fields if name in constants)
        bind = self._binders.get(names)
        if bind is None:  # one per choice of constant fields: a handful, for the process's life
            bind = self._binders[names] = bind_encoder(self.reader_schema, names, self._header)
        return bind(*[constants[name] for name in names])

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
        return [RawEvent(**record) for record in batch.decode(message)["events"]]


class LearningFactCodec(AvroCodec):
    """Avro codec of the learning facts."""

    def __init__(self, schema_ids: dict[int, int] | None = None) -> None:
        super().__init__("learning_fact", schema_ids)

    def encode_record(self, fact: LearningFact) -> bytes:
        return self.encode_attributes(fact)

    def decode_record(self, message: bytes) -> LearningFact:
        return LearningFact(**self.decode(message))
