"""Avro Object Container Files joined from Kafka message bodies, for ClickHouse to decode.

A facts message is ``header + body``: the header names the writer schema (``C3 01`` + CRC-64-AVRO fingerprint,
or the Confluent ``00`` + registry id), the body is the record in Avro binary. A container file of one writer
schema is its header (magic, ``avro.schema``, ``avro.codec`` = ``null``, sync marker) followed by blocks of
bodies, so building one is joining bytes: no record is decoded in Python.

Every body gets a block of its own (count 1, its byte size, the body, the sync marker). A reader decodes each
block from a stream bounded by the block's size and skips what the record left unread, exactly as
``fastavro.schemaless_reader`` does with one message; so a body that is too short fails, a body with trailing
bytes decodes the same in ClickHouse as in Python, and no body can shift the next one. One block holding all
the bodies would save ~20 bytes a record, but one bad body would misalign every later record of the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastavro.schema import to_parsing_canonical_form

from schemas.avro_coder import zigzag_varint  # an Avro long (the one definition of its encoding)

CONTAINER_MAGIC = b"Obj\x01"
Key = TypeVar("Key")  # what names a message: its offset, or (topic, partition, offset) across partitions


def _avro_bytes(data: bytes) -> bytes:
    return zigzag_varint(len(data)) + data


def container_header(schema_json: str, sync_marker: bytes) -> bytes:
    """Magic, the metadata map (``avro.schema``, ``avro.codec``) and the sync marker."""
    entries = [(b"avro.codec", b"null"), (b"avro.schema", schema_json.encode())]
    metadata = zigzag_varint(len(entries)) + b"".join(_avro_bytes(k) + _avro_bytes(v) for k, v in entries)
    return CONTAINER_MAGIC + metadata + b"\x00" + sync_marker


def sync_marker_for(schema_json: str) -> bytes:
    """A deterministic 16-byte sync marker: the same writer schema always gives the same container bytes."""
    return hashlib.blake2b(schema_json.encode(), digest_size=16, person=b"avro-sync").digest()


def container_of(schema_json: str, bodies: Iterable[bytes]) -> bytes:
    """An Object Container File holding ``bodies`` (Avro binary records of ``schema_json``), one per block."""
    sync = sync_marker_for(schema_json)
    block_starts: dict[int, bytes] = {}  # body size -> "one record, that many bytes"
    parts = [container_header(schema_json, sync)]
    append = parts.append
    for body in bodies:
        start = block_starts.get(len(body))
        if start is None:
            start = block_starts[len(body)] = b"\x02" + zigzag_varint(len(body))  # \x02: the long 1
        append(start)
        append(body)
        append(sync)
    return b"".join(parts)


@dataclass(slots=True)
class WriterGroup(Generic[Key]):
    """The messages of a batch written with one writer schema: their keys and bodies (headers stripped)."""

    writer_schema: Any  # the fastavro-parsed writer schema
    offsets: list[Key] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)  # each message's header (what precedes its body)

    def schema_json(self) -> str:
        """The writer schema's parsing canonical form: what its fingerprint is computed from."""
        return str(to_parsing_canonical_form(self.writer_schema))

    def container(self) -> bytes:
        return container_of(self.schema_json(), self.bodies)


def group_by_writer(
    offsets: Sequence[Key], values: Sequence[bytes | None], writer_schema_of: Any,
) -> tuple[list[WriterGroup[Key]], list[tuple[Key, bytes, str]]]:
    """Split messages by the writer schema their header names, without decoding them.

    ``writer_schema_of(message) -> (parsed writer schema, body start)`` raises for an unknown header; such
    messages come back as ``(offset, raw bytes, error)``.
    """
    groups: dict[int, WriterGroup[Key]] = {}
    unreadable: list[tuple[Key, bytes, str]] = []
    last_header: bytes = b""
    last_group: WriterGroup[Key] | None = None
    last_start = 0
    for offset, value in zip(offsets, values, strict=True):
        if value is None:
            value = b""
        if last_group is not None and value.startswith(last_header):  # the usual case: the previous writer
            last_group.offsets.append(offset)
            last_group.bodies.append(value[last_start:])
            last_group.headers.append(last_header)
            continue
        try:
            writer, start = writer_schema_of(value)
        except Exception as error:  # the reason is stored with the reject
            unreadable.append((offset, value, str(error) or type(error).__name__))
            continue
        group = groups.get(id(writer))
        if group is None:
            group = groups[id(writer)] = WriterGroup(writer)
        group.offsets.append(offset)
        group.bodies.append(value[start:])
        group.headers.append(value[:start])
        last_header, last_group, last_start = value[:start], group, start
    return list(groups.values()), unreadable
