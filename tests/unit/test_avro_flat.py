"""``schemas.avro_flat`` writes byte for byte what fastavro writes, and the gateway's encoded events are the
messages that encoding each event's ``RawEvent`` gives."""

from __future__ import annotations

import io
import random
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from caliper_pipeline.samples import envelope, generic_caliper_event, timeback_activity_event, timeback_time_spent_event
from gateway.ingest import encoded_envelope_events
from gateway.tokens import Caller
from schemas.avro_flat import FlatRecordWriter
from schemas.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, RawEventCodec
from schemas.errors import SchemaEncodingError
from schemas.records import RAW_EVENT_FIELDS, RawEvent

CODEC = RawEventCodec()
LONGS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 63, 64, -64, -65, 2**63 - 1, -(2**63)]))
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


def fastavro_body(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, CODEC.reader_schema, record)
    return buffer.getvalue()


@st.composite
def raw_events(draw: st.DrawFn) -> RawEvent:
    longs = {name: draw(LONGS) for name in ("send_time_ms", "received_time_ms", "envelope_index")}
    texts = {name: draw(TEXT) for name in RAW_EVENT_FIELDS if name not in longs and name != "payload"}
    return RawEvent(**longs, **texts, payload=draw(st.binary(max_size=2000)))  # type: ignore[arg-type]


@given(raw_events())
def test_the_flat_writer_writes_what_fastavro_writes(event: RawEvent) -> None:
    record = {name: getattr(event, name) for name in RAW_EVENT_FIELDS}
    assert CODEC.encode_record(event) == SINGLE_OBJECT_MARKER + CODEC.fingerprint + fastavro_body(record)
    assert CODEC.decode_record(CODEC.encode_record(event)) == event


@given(raw_events(), st.sets(st.sampled_from(RAW_EVENT_FIELDS)))
def test_a_bound_writer_writes_what_encode_record_writes(event: RawEvent, constant: set[str]) -> None:
    variable = tuple(name for name in RAW_EVENT_FIELDS if name not in constant)
    write = CODEC.writer_for(variable, **{name: getattr(event, name) for name in constant})
    assert write(*(getattr(event, name) for name in variable)) == CODEC.encode_record(event)


def test_a_bound_writer_checks_the_order_of_the_other_fields() -> None:
    with pytest.raises(SchemaEncodingError):
        CODEC.writer_for(("event_id", "source"), tenant="t")


@pytest.mark.parametrize("field, value", [("tenant", 1), ("payload", "text"), ("send_time_ms", 2**63),
                                          ("envelope_index", True), ("profile", None)])
def test_a_value_of_the_wrong_type_is_refused(field: str, value: Any) -> None:
    event = RawEvent("t", "c", "timeback", "e", "T", "P", "s", "x", 1, 2, 3, b"{}")
    setattr(event, field, value)
    with pytest.raises(SchemaEncodingError):
        CODEC.encode_record(event)


def test_a_schema_that_is_not_flat_is_left_to_fastavro() -> None:
    assert FlatRecordWriter.of(LearningFactCodec().reader_schema) is None  # unions, a map


def test_the_gateway_encodes_an_envelope_as_its_raw_events() -> None:
    rng = random.Random(7)
    items = [timeback_activity_event(f"s{i}", xp=rng.random() * 100) for i in range(20)]
    items += [timeback_time_spent_event("ñandú-ü"), generic_caliper_event(), {"id": "https://x.example/e",
                                                                             "type": "Person", "name": "日本"}]
    payload = envelope(*items)
    caller = Caller("app-1", "school-a", frozenset(), None, "America/Sao_Paulo")
    encoded = encoded_envelope_events(payload, caller, 1_764_519_183_052, CODEC)
    decoded = [CODEC.decode_record(item.value) for item in encoded]
    assert [item.value for item in encoded] == [CODEC.encode_record(raw) for raw in decoded]  # fastavro's bytes
    assert [(raw.tenant, raw.client_id, raw.tenant_timezone, raw.received_time_ms, raw.envelope_index)
            for raw in decoded] == [("school-a", "app-1", "America/Sao_Paulo", 1_764_519_183_052, index)
                                    for index in range(len(items))]
    assert [orjson.loads(raw.payload) for raw in decoded] == items
    assert [raw.event_id for raw in decoded] == [item["id"] for item in items]


def test_with_a_schema_registry_the_messages_carry_the_registry_header() -> None:
    codec = RawEventCodec(schema_ids={41: 1, 42: 2, 43: 3, 44: 4})
    event = RawEvent("t", "c", "timeback", "e", "T", "P", "s", "x", 1, 2, 3, b"{}", "UTC")
    message = codec.encode_record(event)
    assert message[:5] == b"\x00\x00\x00\x00\x2c" and codec.decode_record(message) == event
    variable = tuple(name for name in RAW_EVENT_FIELDS if name != "tenant")
    assert codec.writer_for(variable, tenant="t")(*(getattr(event, n) for n in variable)) == message


# A flat schema may gain optional fields (a union of "null" and a primitive, default null: how RawEvent would gain
# an optional ``job_id``): the flat writer follows them, byte for byte as fastavro.
OPTIONAL_SCHEMA = fastavro.parse_schema({"type": "record", "name": "WithOptionals", "fields": [
    {"name": "tenant", "type": "string"},
    {"name": "job_id", "type": ["null", "string"], "default": None},
    {"name": "count", "type": ["null", "long"], "default": None},
    {"name": "flag", "type": ["boolean", "null"], "default": False},
    {"name": "blob", "type": ["null", "bytes"], "default": None},
    {"name": "score", "type": ["null", "double"], "default": None},
    {"name": "zone", "type": "string", "default": "UTC"},
]})


@given(st.fixed_dictionaries({
    "tenant": TEXT, "job_id": st.none() | TEXT, "count": st.none() | LONGS, "flag": st.none() | st.booleans(),
    "blob": st.none() | st.binary(max_size=50),
    "score": st.none() | st.floats(allow_nan=False), "zone": TEXT}))
def test_optional_fields_are_written_as_fastavro_writes_them(record: dict[str, Any]) -> None:
    writer = FlatRecordWriter.of(OPTIONAL_SCHEMA)
    assert writer is not None and writer.defaults == {"job_id": None, "count": None, "flag": False, "blob": None,
                                                      "score": None, "zone": "UTC"}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, OPTIONAL_SCHEMA, record)
    assert writer.write([record[name] for name in writer.field_names]) == buffer.getvalue()
    bound = writer.bind(b"H", tenant=record["tenant"], job_id=record["job_id"])
    assert bound(*(record[name] for name in writer.field_names[2:])) == b"H" + buffer.getvalue()


def test_a_union_that_is_not_an_optional_primitive_is_left_to_fastavro() -> None:
    for avro_type in (["null", "string", "long"], ["string", "long"], ["null", {"type": "map", "values": "string"}]):
        schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "f", "type": avro_type}]})
        assert FlatRecordWriter.of(schema) is None


def test_a_field_named_nowhere_takes_its_schema_default() -> None:
    """So an optional field added to RawEvent's schema needs no change to the gateway's ``writer_for`` call."""
    event = RawEvent("t", "c", "timeback", "e", "T", "P", "s", "x", 1, 2, 3, b"{}")  # tenant_timezone: UTC
    variable = tuple(name for name in RAW_EVENT_FIELDS if name not in ("tenant", "tenant_timezone"))
    write = CODEC.writer_for(variable, tenant="t")
    assert write(*(getattr(event, name) for name in variable)) == CODEC.encode_record(event)
    with pytest.raises(SchemaEncodingError):  # a field without a default must be named
        CODEC.writer_for(tuple(name for name in variable if name != "sensor"), tenant="t")
