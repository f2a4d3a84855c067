"""Facts in blocks: one facts-topic record holds many facts' Avro bodies as they were encoded (``schemas.blocks``),
the sink appends a block to an Avro container as one block of its records (nothing decoded), blocks and single
facts of older writers load together, exactly once, and a block ClickHouse refuses is isolated like a single fact
(the real engine, embedded chDB)."""

from __future__ import annotations

import base64
import io
import typing

import fastavro
import orjson
import pytest
from fastavro.schema import parse_schema
from sink_fixtures import make_fact, scalar

from schemas.avro.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, crc64_fingerprint
from schemas.avro.generate import catalog_versions
from schemas.blocks import fact_block_codec
from schemas.errors import SchemaEncodingError
from schemas.kafka import Topics, crc32_partitioner, partition_key
from schemas.reasons import ReasonCode
from schemas.record_batches import OutboundRecord
from sinks.batches import BatchSink, facts_target
from sinks.clickhouse import ClickHouse
from sinks.failed import failed_at_load_rows
from sinks.tables import RejectedMessage, fact_records
from streams.publishing import Blocks

CODEC = LearningFactCodec()
BLOCKS = fact_block_codec(CODEC)
TARGET = facts_target(CODEC, BLOCKS)
KEY = b"blocks-student-key"


def older_message(version_schema: dict[str, typing.Any], record: dict[str, typing.Any]) -> bytes:
    """``record`` as a writer of ``version_schema`` (an older LearningFact) publishes it."""
    parsed = parse_schema(version_schema)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return SINGLE_OBJECT_MARKER + crc64_fingerprint(parsed) + body.getvalue()


@pytest.mark.parametrize("version", [number for number, _ in catalog_versions("learning_fact")])
def test_a_block_of_any_learning_fact_version_round_trips(version: int) -> None:
    schema = dict(catalog_versions("learning_fact"))[version]
    records = fact_records([make_fact(i, student_id=f"s{i}", attempts=i) for i in range(5)])
    messages = [older_message(schema, record) for record in records]
    block = BLOCKS.join(messages)
    # Python reads it back as it reads the single messages (resolved to the newest version)
    assert BLOCKS.decode_items(block) == [CODEC.decode(message) for message in messages]
    # the sink's container: one block of 5 records of that version, read by fastavro's container reader
    item_schema, count, bodies = TARGET.read(block)
    assert count == 5 and bodies == b"".join(message[10:] for message in messages)
    (group,), unreadable = TARGET.prepare([("facts", 0, 7)], [block])
    assert unreadable == [] and group.rows(0, 1) == 5
    read = fastavro.reader(io.BytesIO(group.body(0, 1)))
    assert list(read) == [fastavro.schemaless_reader(io.BytesIO(m[10:]), parse_schema(schema)) for m in messages]
    assert orjson.loads(read.metadata["avro.schema"]) == orjson.loads(item_schema)


def test_items_of_two_writers_cannot_share_a_block_and_an_empty_list_has_none() -> None:
    older = older_message(catalog_versions("learning_fact")[0][1], fact_records([make_fact(1)])[0])
    with pytest.raises(SchemaEncodingError, match="two writers"):
        BLOCKS.join([CODEC.encode_record(make_fact(1)), older])
    with pytest.raises(SchemaEncodingError):
        BLOCKS.join([])


def test_a_block_that_is_not_one_array_block_is_unreadable() -> None:
    block = BLOCKS.join([CODEC.encode_record(make_fact(i)) for i in range(3)])
    for broken in (block[:-1] + b"\x02", block[:10], block[:10] + b"\x06"):
        with pytest.raises(SchemaEncodingError):
            BLOCKS.items_of(broken)


def test_blocks_keep_each_partitions_order_and_cap_their_size() -> None:
    topics = Topics()
    facts = [make_fact(i, student_id=f"s{i % 7}") for i in range(60)]
    records = [OutboundRecord(topics.facts, partition_key(f.tenant, f.student_id), CODEC.encode_record(f))
               for f in facts]
    notice = OutboundRecord(topics.conflicts, b"k", b"{}")
    blocks = Blocks({topics.facts: BLOCKS}, max_bytes=4 * len(records[0].value))
    out = blocks.assemble([*records, notice], {topics.facts: 6})
    assert out[0] == notice  # other records pass as they are
    by_partition: dict[int, list[str]] = {}
    for record in out[1:]:
        partition = crc32_partitioner(record.key, list(range(6)), list(range(6)))
        items = BLOCKS.decode_items(record.value)
        assert 1 <= len(items) <= 4
        assert {crc32_partitioner(partition_key(i["tenant"], i["student_id"]), list(range(6)), []) for i in items} == {
            partition}  # the block's key maps to its items' partition
        by_partition.setdefault(partition, []).extend(item["event_id"] for item in items)
    for partition, event_ids in by_partition.items():
        expected = [f.event_id for f, r in zip(facts, records, strict=True)
                    if crc32_partitioner(r.key, list(range(6)), []) == partition]
        assert event_ids == expected
    assert sum(len(ids) for ids in by_partition.values()) == 60


def test_a_window_of_single_facts_and_blocks_loads_every_fact_exactly_once(target: ClickHouse) -> None:
    singles = [CODEC.encode_record(make_fact(i)) for i in range(0, 10)]
    block_a = BLOCKS.join([CODEC.encode_record(make_fact(i)) for i in range(10, 30)])
    old_schema = catalog_versions("learning_fact")[-2][1]
    old_block = BLOCKS.join([older_message(old_schema, record)
                             for record in fact_records([make_fact(i) for i in range(30, 35)])])
    block_b = BLOCKS.join([CODEC.encode_record(make_fact(i, tenant="school-b")) for i in range(35, 50)])
    sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=60, default_target=TARGET)
    messages = [*singles[:5], block_a, old_block, *singles[5:]]
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 0, offset)
    sink.add(block_b, "facts", 1, 0)
    (window,) = sink.take_due(now=1e12)
    result = sink.write(window)
    assert (result.rows, result.rejected) == (50, 0)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 50  # not FINAL: no duplicate
    assert scalar(target, "SELECT uniqExact(event_id) FROM learning.learning_facts") == 50
    assert scalar(target, "SELECT countIf(tenant = 'school-b') FROM learning.learning_facts") == 15
    # the same window written again (a retry after a crash) inserts nothing twice
    for offset, message in enumerate(messages):
        sink.add(message, "facts", 0, offset)
    sink.add(block_b, "facts", 1, 0)
    for again in sink.take_due(now=1e12):
        sink.write(again)
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 50


def test_a_block_clickhouse_refuses_is_isolated_and_described_per_tenant(target: ClickHouse) -> None:
    good = BLOCKS.join([CODEC.encode_record(make_fact(i)) for i in range(0, 4)])
    facts = [make_fact(4, student_id="ana"), make_fact(5, student_id="bia"), make_fact(6, tenant="school-b")]
    refused = BLOCKS.join([CODEC.encode_record(fact) for fact in facts])
    corrupt = refused[:-30] + b"\x00"  # a known writer, records that run out
    sink = BatchSink(target, "g", batch_rows=1000, batch_seconds=60, default_target=TARGET, student_key=KEY)
    for offset, message in enumerate([good, corrupt, CODEC.encode_record(make_fact(9))]):
        sink.add(message, "facts", 2, offset)
    (window,) = sink.take_due(now=1e12)
    result = sink.write(window)
    assert (result.rows, result.rejected) == (5, 1)
    _, rejects = target.query_rows("SELECT offset, raw_base64 FROM learning.sink_rejects")
    assert rejects == [(1, base64.b64encode(corrupt).decode())]
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 5
    # a block that does not decode says nothing of its facts: one failed row with the message as it was
    _, failed = target.query_rows("SELECT tenant, offset, original_base64 FROM learning.failed_events FINAL")
    assert failed == [("", 1, base64.b64encode(corrupt).decode())]


def test_a_refused_block_that_decodes_has_one_failed_row_per_tenant() -> None:
    facts = [make_fact(4, student_id="ana"), make_fact(5, student_id="bia"), make_fact(6, tenant="school-b")]
    block = BLOCKS.join([CODEC.encode_record(fact) for fact in facts])
    refused = RejectedMessage("facts", 2, 1, "refused", block, ReasonCode.CLICKHOUSE_REFUSED)
    rows = failed_at_load_rows([refused], TARGET.describe, KEY)
    assert [row["tenant"] for row in rows] == ["school-a", "school-b"]
    assert [len(row["student_keys"]) for row in rows] == [2, 1]
    originals = [base64.b64decode(row["original_base64"]) for row in rows]
    assert [[item["event_id"] for item in BLOCKS.decode_items(o)] for o in originals] == [
        ["event-4", "event-5"], ["event-6"]]  # what replay sends back: a block of the tenant's facts
