"""Raw batch records: the gateway's ``RawEventBatch`` per (request, raw topic, partition), read by every reader of
a raw topic alongside lone ``RawEvent`` records (``RawEventCodec.decode_events``), and processed event by event by
the worker (a failing event is its own dead letter; the batch's other events become facts)."""

from __future__ import annotations

import asyncio
import io
import json
import zlib
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema
from pydantic import SecretStr
from test_streams_agent import TOPICS, USER, harness, raw_message, timeback_payload  # noqa: F401

from gateway.publisher import EncodedEvent, raw_batch_records
from gateway.transactions import TransactionalPublisher
from schemas.avro.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, RawEventCodec, crc64_fingerprint
from schemas.avro.coder import zigzag_varint
from schemas.avro.generate import catalog_versions
from schemas.errors import SchemaEncodingError
from schemas.kafka import Source, partition_key
from schemas.privacy import PrivacySettings
from schemas.record_batches import OutboundRecord
from schemas.records import RAW_EVENT_FIELDS, RawEvent
from schemas.side_topics import DeadLetter
from streams.processor import EventProcessor
from streams.settings import StreamsSettings

CODEC = RawEventCodec()
PARTITIONS = [0, 1, 2, 3, 4, 5]
TOPIC_OF = {source: f"unit.raw.{source.value}" for source in Source}


def event(index: int, student: str = "s", **changes: Any) -> RawEvent:
    return replace(RawEvent(
        tenant="school", client_id="app", source="caliper", event_id=f"urn:uuid:{index}", event_type="ViewEvent",
        profile="ReadingProfile", student_id=student, sensor="https://sensor.example", send_time_ms=1,
        received_time_ms=2, envelope_index=index, payload=b'{"n": %d, "text": "\xc3\xa9"}' % index,
        tenant_timezone="America/Sao_Paulo", job_id="job-1", extensions_policy=""), **changes)


def fastavro_batch(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parse_schema(schema), {"events": records})
    return buffer.getvalue()


# -- the record ----------------------------------------------------------------------------------------------------

def test_a_batch_record_is_what_fastavro_writes_and_reads_back_in_order() -> None:
    events = [event(i, student=f"s{i % 3}") for i in range(70)]  # 70 items: a two-byte count
    message = CODEC.encode_events(events)
    [(_, schema)] = catalog_versions("raw_event_batch")
    assert message[:2] == SINGLE_OBJECT_MARKER and message[2:10] == crc64_fingerprint(parse_schema(schema))
    assert message[10:] == fastavro_batch(schema, [{n: getattr(e, n) for n in RAW_EVENT_FIELDS} for e in events])
    assert CODEC.decode_events(message) == events
    assert CODEC.decode_events(CODEC.encode_batch([])) == []


def test_a_lone_raw_event_of_every_catalog_version_still_reads_and_travels_in_a_batch() -> None:
    """Records written before batches stay on the raw topics: each released RawEvent version reads as one event
    (the fields it lacks take their defaults), and the events read from them go into a batch unchanged."""
    read: list[RawEvent] = []
    for _, schema in catalog_versions("raw_event"):
        fields = {field["name"] for field in schema["fields"]}
        record = {name: value for name, value in vars_of(event(len(read))).items() if name in fields}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parse_schema(schema), record)
        message = SINGLE_OBJECT_MARKER + crc64_fingerprint(parse_schema(schema)) + buffer.getvalue()
        [decoded] = CODEC.decode_events(message)
        assert {name: getattr(decoded, name) for name in record} == record
        read.append(decoded)
    assert len(read) == len(catalog_versions("raw_event")) >= 4
    assert CODEC.decode_events(CODEC.encode_events(read)) == read


def vars_of(raw: RawEvent) -> dict[str, Any]:
    return {name: getattr(raw, name) for name in RAW_EVENT_FIELDS}


def test_a_batch_in_several_array_blocks_reads_like_one() -> None:
    """Avro lets a writer split an array into blocks, a negative count followed by the block's size; another
    client's writer may: the batch reads the same."""
    events = [event(i) for i in range(5)]
    items = [CODEC.encode_record(e)[10:] for e in events]
    first, second = b"".join(items[:2]), b"".join(items[2:])
    blocks = zigzag_varint(-2) + zigzag_varint(len(first)) + first + zigzag_varint(3) + second + b"\x00"
    message = CODEC.batch_codec.header + blocks
    assert CODEC.decode_events(message) == events
    assert fastavro.schemaless_reader(io.BytesIO(blocks), CODEC.batch_codec.reader_schema)["events"] == [  # type: ignore
        vars_of(e) for e in events]


@pytest.mark.parametrize("cut", [11, 40, -1])
def test_a_truncated_or_garbled_batch_is_refused_with_a_schema_error(cut: int) -> None:
    message = CODEC.encode_events([event(1), event(2)])
    with pytest.raises(SchemaEncodingError):
        CODEC.decode_events(message[:cut])
    with pytest.raises(SchemaEncodingError):
        CODEC.decode_events(b"\x00\x01 not avro")


def test_the_registry_wire_format_names_the_batch_by_its_own_ids() -> None:
    codec = RawEventCodec(schema_ids={41: 1, 42: 2, 43: 3, 44: 4}, batch_schema_ids={50: 1})
    events = [event(1), event(2)]
    message = codec.encode_events(events)
    assert message[:5] == b"\x00\x00\x00\x00\x32" and codec.decode_events(message) == events
    assert codec.decode_events(codec.encode_record(events[0])) == events[:1]  # a lone one: id 44


# -- the gateway's records ---------------------------------------------------------------------------------------

def encoded(raw: RawEvent) -> EncodedEvent:
    return EncodedEvent(Source(raw.source), partition_key(raw.tenant, raw.student_id), CODEC.encode_record(raw))


def partition_of(key: bytes | None) -> int:
    assert key is not None
    return PARTITIONS[zlib.crc32(key) % len(PARTITIONS)]


def test_one_request_makes_one_record_per_topic_and_partition_keyed_to_land_with_its_events() -> None:
    raws = [event(i, student=f"student-{i % 17}", source=("caliper", "timeback")[i % 2]) for i in range(200)]
    records = raw_batch_records([encoded(r) for r in raws], CODEC, TOPIC_OF,
                                {source: (PARTITIONS, PARTITIONS) for source in Source}, 1_000_000)
    expected = {(TOPIC_OF[Source(r.source)], partition_of(partition_key(r.tenant, r.student_id))) for r in raws}
    assert sorted((r.topic, partition_of(r.key)) for r in records) == sorted(expected)  # one record each
    for record in records:
        events = CODEC.decode_events(record.value)
        assert {partition_of(partition_key(e.tenant, e.student_id)) for e in events} == {partition_of(record.key)}
        assert [e.envelope_index for e in events] == sorted(e.envelope_index for e in events)  # request order
        assert record.key == partition_key(events[0].tenant, events[0].student_id)
    assert sorted(e.envelope_index for r in records for e in CODEC.decode_events(r.value)) == list(range(200))


def test_a_partition_whose_events_exceed_a_kafka_message_gets_several_records_in_order() -> None:
    raws = [event(i, payload=b'{"pad": "%s"}' % (b"x" * 3000)) for i in range(10)]  # one student: one partition
    limit = 10_000
    records = raw_batch_records([encoded(r) for r in raws], CODEC, TOPIC_OF,
                                {source: (PARTITIONS, PARTITIONS) for source in Source}, limit)
    assert len(records) == 4
    assert all(len(r.value) + len(r.key or b"") <= limit for r in records)
    assert [e for r in records for e in CODEC.decode_events(r.value)] == raws


# -- the worker ------------------------------------------------------------------------------------------------------

PRIVACY = PrivacySettings(email_hash_key=SecretStr("k"), student_key=SecretStr("s"))


def timeback_event(index: int, payload: bytes) -> RawEvent:
    return RawEvent(tenant="tenant-a", client_id="client-1", source="timeback", event_id=f"urn:uuid:{index}",
                    event_type="ActivityEvent", profile="TimebackProfile", student_id=USER, sensor="s",
                    send_time_ms=1, received_time_ms=2, envelope_index=index, payload=payload, job_id="job-1")


def test_one_bad_event_of_a_batch_is_its_own_dead_letter_and_the_others_become_facts() -> None:
    processor = EventProcessor(StreamsSettings(worker_version="9.9.9"), TOPICS, PRIVACY)
    bad = timeback_event(1, b'{"id": "urn:uuid:1", "type": "ActivityEvent", "profile": "TimebackProfile"}')
    batch = [timeback_event(0, timeback_payload("urn:uuid:0")), bad,
             timeback_event(2, timeback_payload("urn:uuid:2", xp=7))]
    results = processor.process_message("unit.raw.timeback", 4, 77, b"tenant-a|" + USER.encode(),
                                        CODEC.encode_events(batch))
    assert [bool(r.dead_letter_reason) for r in results] == [False, True, False]
    facts = [LearningFactCodec().decode_record(r.value) for result in results for r in result.records
             if r.topic == TOPICS.facts]
    assert [(f.event_id, f.envelope_index) for f in facts] == [("urn:uuid:0", 0), ("urn:uuid:2", 2)]
    [record] = [r for r in results[1].records if r.topic == TOPICS.dead_letters]
    assert [r.topic for r in results[1].records] == [TOPICS.dead_letters, TOPICS.archive]  # archived all the same
    letter = DeadLetter.from_json(record.value)
    assert (record.topic, record.key) == (TOPICS.dead_letters, partition_key("tenant-a", USER))
    assert (letter.topic, letter.partition, letter.offset, letter.batch_index) == ("unit.raw.timeback", 4, 77, 1)
    assert (letter.event_id, letter.envelope_index, letter.job_id) == ("urn:uuid:1", 1, "job-1")
    # the event alone, as a lone RawEvent record: a replay puts back that event only, and every reader takes it
    assert letter.original == CODEC.encode_record(bad) and CODEC.decode_events(letter.original) == [bad]


def test_a_lone_raw_event_record_is_processed_as_before() -> None:
    processor = EventProcessor(StreamsSettings(), TOPICS, PRIVACY)
    broken = raw_message(b'{"id": "urn:uuid:1", "type": "ActivityEvent", "profile": "TimebackProfile"}')
    [good] = processor.process_message("unit.raw.timeback", 0, 1, b"k", raw_message(timeback_payload()))
    [dead] = processor.process_message("unit.raw.timeback", 0, 2, b"k", broken)
    assert len(good.facts) == 1 and not good.dead_letter_reason
    letter = DeadLetter.from_json(dead.records[0].value)
    assert (letter.original, letter.batch_index, dead.records[0].key) == (broken, None, b"k")  # byte for byte


def test_an_undecodable_batch_is_one_dead_letter_of_the_whole_message() -> None:
    processor = EventProcessor(StreamsSettings(), TOPICS, PRIVACY)
    message = CODEC.encode_events([timeback_event(0, timeback_payload())])[:-3]
    [dead] = processor.process_message("unit.raw.timeback", 0, 5, b"k", message)
    letter = DeadLetter.from_json(dead.records[0].value)
    assert (letter.original, letter.batch_index, letter.event_id) == (message, None, "")


async def test_the_worker_agent_yields_a_result_per_event_of_a_batch_record(harness: Any) -> None:  # noqa: F811
    app, publisher, _ = harness
    agent = next(iter(app.agents.values()))
    batch = [timeback_event(i, timeback_payload(f"urn:uuid:{i}", xp=i)) for i in range(3)]
    async with agent.test_context() as tested:
        put = await tested.put(CODEC.encode_events(batch), key=b"k")
        results = tested.results[put.message.offset]
    assert [len(r.facts) for r in results] == [1, 1, 1]
    assert sorted(LearningFactCodec().decode_record(r.value).xp_earned for r in publisher.on(TOPICS.facts)) == [
        0.0, 1.0, 2.0]


def test_the_released_batch_schema_is_the_generated_one_with_raw_event_items() -> None:
    [(_, schema)] = catalog_versions("raw_event_batch")
    assert schema["fields"][0]["type"] == {"type": "array", "items": catalog_versions("raw_event")[-1][1]}
    assert json.loads(json.dumps(schema)) == schema


# -- the gateway's transactions count events ---------------------------------------------------------------------

class CountingProducer:
    """A transactional producer whose sends are acknowledged at once; counts the records of each transaction."""

    def __init__(self, transactional_id: str) -> None:
        self.transactions: list[int] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def begin_transaction(self) -> None:
        self.transactions.append(0)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    @property
    def client(self) -> Any:
        return SimpleNamespace(cluster=SimpleNamespace(available_partitions_for_topic=lambda topic: {0}))

    def create_batch(self) -> Any:
        def append(**record: Any) -> object:
            self.transactions[-1] += 1
            return object()
        return SimpleNamespace(append=append)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def commit_transaction(self) -> None:
        pass


async def test_a_transaction_group_counts_the_events_a_request_carries_not_its_records() -> None:
    """A batch record carries many events: a group limited to 100 records would let 100 requests of 100 events
    each (10,000 events) into one transaction; the gateway's requests count their events."""
    producers: list[CountingProducer] = []

    def make(transactional_id: str) -> Any:
        producers.append(CountingProducer(transactional_id))
        return producers[-1]

    publisher = TransactionalPublisher(make, "weights", producers=1, max_group_records=100)
    await publisher.start()
    try:
        await asyncio.gather(*(publisher.publish([OutboundRecord("raw", b"k", b"batch")], 5, weight=60)
                               for _ in range(4)))
        await asyncio.gather(*(publisher.publish([OutboundRecord("raw", b"k", b"lone")], 5) for _ in range(4)))
    finally:
        await publisher.stop()
    assert producers[0].transactions == [1, 1, 1, 1, 4]  # 60 events each: one request per group; then 4 records
