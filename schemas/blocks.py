"""Blocks: many records of one kind in one Kafka message, joined from their Avro bodies without re-encoding them.

A block record (``LearningFactBlock { facts: array<LearningFact> }``, ``RawArchiveBlock { rows:
array<RawArchiveRow> }``) is written like any record (single-object header naming the block's writer schema, or
the Confluent ``00`` + registry id), and its body is one Avro array block: the item count, the items' bodies one
after the other, and the ``0`` that ends an array. An item message is ``item header + body``; ``BlockCodec.join``
strips each header and joins the bodies under the block's header, so a block holds exactly the bytes its items
were encoded into.

The block's writer schema names the item's (the array's ``items``), so a reader of a block knows which version of
the item it holds: ``BlockCodec.items_of`` returns that item writer schema, the count and the items' bytes without
decoding a single item (the sink appends them to an Avro container block as they are). The newest block version
embeds the newest item version (``schemas.avro.generate`` generates both from the dataclasses); a block of any older
item version is read too (its block schema derived from the block's newest with the item's version in place).

A block message holds its array in ONE Avro block (a positive count, the items, ``0``), as this module, fastavro
and the Java library write a non-empty array; ``items_of`` refuses any other shape it can tell apart.
"""

from __future__ import annotations

import copy
from typing import Any

from fastavro.schema import parse_schema, to_parsing_canonical_form

from schemas.avro.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER, AvroCodec, crc64_fingerprint
from schemas.avro.coder import read_varint, zigzag_varint
from schemas.avro.generate import catalog_versions
from schemas.errors import SchemaEncodingError
from schemas.records import RawArchiveRow

ARRAY_END = b"\x00"


def with_items(block_schema: dict[str, Any], item_schema: dict[str, Any]) -> dict[str, Any]:
    """``block_schema`` (a record whose one field is an array) holding ``item_schema``'s records."""
    derived = copy.deepcopy(block_schema)
    derived["fields"][0]["type"]["items"] = copy.deepcopy(item_schema)
    return derived


class BlockCodec(AvroCodec):
    """Codec of a block record (``block_name``) of ``item``'s records: joins item messages into a block message
    (``join``) and reads a block message's items without decoding them (``items_of``)."""

    def __init__(self, block_name: str, item: AvroCodec, schema_ids: dict[int, int] | None = None) -> None:
        super().__init__(block_name, schema_ids)
        self.item = item
        newest = catalog_versions(block_name)[-1][1]
        self.field = str(newest["fields"][0]["name"])
        # an item message's header -> the header of a block of its version: the newest item's -> this codec's
        # (single-object or registry id); every released item version's single-object header -> its derived block's
        self._block_headers: dict[bytes, bytes] = {}
        for _, item_schema in catalog_versions(item.record_name):  # blocks of every released item version
            derived = parse_schema(with_items(newest, item_schema))
            fingerprint = crc64_fingerprint(derived)
            self._writers_by_fingerprint.setdefault(fingerprint, derived)
            item_header = SINGLE_OBJECT_MARKER + crc64_fingerprint(parse_schema(item_schema))
            self._block_headers[item_header] = SINGLE_OBJECT_MARKER + fingerprint
        self._block_headers[item._header] = self._header
        self._item_schemas: dict[int, str] = {}  # id(parsed block writer) -> the item writer's canonical form

    def join(self, messages: list[bytes]) -> bytes:
        """The block message of item messages of one writer (the item codec's current header, or the single-object
        header of any released item version): the headers are stripped, the bodies joined as they are, under the
        header of the block of that item version. An empty list has no block (SchemaEncodingError)."""
        if not messages:
            raise SchemaEncodingError(f"a {self.record_name} needs at least one {self.item.record_name}")
        first = messages[0]
        size = 5 if first[:1] == CONFLUENT_MAGIC else 10
        item_header = first[:size]
        block_header = self._block_headers.get(item_header)
        if block_header is None:
            raise SchemaEncodingError(f"no {self.record_name} holds {self.item.record_name}s of the writer "
                                      f"{item_header.hex()}")
        bodies = []
        for message in messages:
            if message[:size] != item_header:
                raise SchemaEncodingError(f"{self.item.record_name} messages of two writers cannot share a block")
            bodies.append(memoryview(message)[size:])
        return b"".join((block_header, zigzag_varint(len(bodies)), *bodies, ARRAY_END))

    def item_schema_of(self, writer: Any) -> str:
        """The canonical form of the item writer schema a parsed block writer schema holds."""
        found = self._item_schemas.get(id(writer))
        if found is None:
            items = writer["fields"][0]["type"]["items"]
            found = self._item_schemas[id(writer)] = str(to_parsing_canonical_form(items))
        return found

    def items_of(self, message: bytes) -> tuple[str, int, bytes]:
        """(the item writer schema's canonical form, how many items, their bodies joined) of a block message."""
        writer, start = self.writer_schema_of(message)
        try:
            count, position = read_varint(message, start)
            if count == 0:  # an empty array: its count is its end
                if position != len(message):
                    raise SchemaEncodingError(f"{self.record_name} body is not one array block")
                return self.item_schema_of(writer), 0, b""
            if count < 0:  # a block with its byte size: the items are exactly that many bytes
                size, position = read_varint(message, position)
                count, end = -count, position + size
            else:
                end = len(message) - 1
            if message[end:] != ARRAY_END or end <= position:
                raise SchemaEncodingError(f"{self.record_name} body is not one array block")
        except IndexError as error:
            raise SchemaEncodingError(f"{self.record_name} body is not one array block") from error
        return self.item_schema_of(writer), count, message[position:end]

    def decode_items(self, message: bytes) -> list[dict[str, Any]]:
        """Every item of a block message, decoded (resolved to the newest item version)."""
        items = self.decode(message)[self.field]
        if not isinstance(items, list):
            raise SchemaEncodingError(f"{self.record_name} message did not decode to a block")
        return items


class RawArchiveRowCodec(AvroCodec):
    """Avro codec of one raw-archive row (the archive topic's item; ``schemas.archive_rows`` builds the rows)."""

    def __init__(self, schema_ids: dict[int, int] | None = None) -> None:
        super().__init__("raw_archive_row", schema_ids)

    def encode_record(self, row: RawArchiveRow) -> bytes:
        return self.encode_attributes(row)


def fact_block_codec(facts: AvroCodec, schema_ids: dict[int, int] | None = None) -> BlockCodec:
    """The facts topic's block codec (``LearningFactBlock``) over the facts' codec."""
    return BlockCodec("learning_fact_block", facts, schema_ids)


def archive_block_codec(rows: AvroCodec, schema_ids: dict[int, int] | None = None) -> BlockCodec:
    """The archive topic's block codec (``RawArchiveBlock``) over the rows' codec."""
    return BlockCodec("raw_archive_block", rows, schema_ids)
