"""Avro Object Container Files joined from Kafka message bodies, for ClickHouse to decode.

A message is ``header + body``: the header names the writer schema (``C3 01`` + CRC-64-AVRO fingerprint, or the
Confluent ``00`` + registry id). The body is one record in Avro binary, or, for a block record
(``schemas.blocks``: ``LearningFactBlock``, ``RawArchiveBlock``), one array block of records (count, their bodies,
``0``). A container file of one writer schema is its header (magic, ``avro.schema``, ``avro.codec`` = ``null``,
sync marker) followed by blocks of records, so building one is joining bytes: no record is decoded in Python.

Every message gets a container block of its own: a single record is a block of count 1, a block record's array
becomes a block of its count (its byte size, the records' bodies as they are, the sync marker). A reader decodes
each block from a stream bounded by the block's size and skips what the records left unread, exactly as
``fastavro.schemaless_reader`` does with one message; so a body that is too short fails, and no message can shift
the next one. Messages are grouped by the writer schema of their RECORDS (a block's item schema), so single
records and blocks of the same version share one container.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.avro.coder import zigzag_varint  # an Avro long (the one definition of its encoding)

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


def container_of(schema_json: str, bodies: Sequence[bytes], counts: Sequence[int] | None = None) -> bytes:
    """An Object Container File of ``schema_json`` with one block per entry of ``bodies`` (Avro binary records,
    ``counts[i]`` of them in ``bodies[i]``; one each without ``counts``). An entry of no records adds no block."""
    sync = sync_marker_for(schema_json)
    block_starts: dict[tuple[int, int], bytes] = {}  # (records, size) -> "that many records, that many bytes"
    parts = [container_header(schema_json, sync)]
    append = parts.append
    for index, body in enumerate(bodies):
        count = 1 if counts is None else counts[index]
        if not count:
            continue
        start = block_starts.get((count, len(body)))
        if start is None:
            start = block_starts[(count, len(body))] = zigzag_varint(count) + zigzag_varint(len(body))
        append(start)
        append(body)
        append(sync)
    return b"".join(parts)


Reading = tuple[str, int, bytes]  # the records' writer schema (canonical form), how many, their bodies joined


@dataclass(slots=True)
class WriterGroup(Generic[Key]):
    """The messages of a batch whose records have one writer schema: their keys, record counts and bodies."""

    schema_json: str  # the writer schema's parsing canonical form: what its fingerprint is computed from
    offsets: list[Key] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # records in each message (1 for a single record)
    bodies: list[bytes] = field(default_factory=list)  # each message's records' bodies (headers stripped)
    originals: list[bytes] = field(default_factory=list)  # each message as it was on the topic

    def container(self) -> bytes:
        return container_of(self.schema_json, self.bodies, self.counts)


def group_by_writer(
    offsets: Sequence[Key], values: Sequence[bytes | None], read: Callable[[bytes], Reading],
) -> tuple[list[WriterGroup[Key]], list[tuple[Key, bytes, str]]]:
    """Split messages by the writer schema of their records, without decoding them.

    ``read(message) -> (records' writer schema, count, bodies)`` raises for a message it cannot read; such messages
    come back as ``(offset, raw bytes, error)``.
    """
    groups: dict[str, WriterGroup[Key]] = {}
    unreadable: list[tuple[Key, bytes, str]] = []
    for offset, value in zip(offsets, values, strict=True):
        if value is None:
            value = b""
        try:
            schema_json, count, bodies = read(value)
        except Exception as error:  # the reason is stored with the reject
            unreadable.append((offset, value, str(error) or type(error).__name__))
            continue
        group = groups.get(schema_json)
        if group is None:
            group = groups[schema_json] = WriterGroup(schema_json)
        group.offsets.append(offset)
        group.counts.append(count)
        group.bodies.append(bodies)
        group.originals.append(value)
    return list(groups.values()), unreadable
