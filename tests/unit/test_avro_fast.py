"""The compiled Avro coders (``schemas.avro_fast``) write and read exactly what fastavro writes and reads.

For generated learning facts and raw events (every field type: unicode and long strings, int64 extremes, None in
every optional field, maps, odd floats) the compiled encoder's bytes equal fastavro's; the compiled decoder reads
every message as fastavro does; values the compiled code does not take (an int in a double field, a bool in a
long field, a missing key) and malformed messages (truncated, not UTF-8, a bad union index) give what fastavro
gives: the same bytes, the same record or a SchemaEncodingError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import typing
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.avro_fast import FastPathMiss, compile_decoder, compile_encoder, read_varint, zigzag_varint
from schemas.avro_gen import catalog_versions
from schemas.codec import AvroCodec, LearningFactCodec, RawEventCodec
from schemas.errors import SchemaEncodingError
from schemas.records import LearningFact, RawEvent

FACTS, RAWS = LearningFactCodec(), RawEventCodec()
texts = st.one_of(st.text(max_size=80), st.text(max_size=300), st.sampled_from(["", "x", "é", "😀" * 40]))
longs = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-200, 200), st.integers(0, 2**45))
doubles = st.floats(allow_nan=True, allow_infinity=True, width=64)


def strategy_of(annotation: Any) -> st.SearchStrategy[Any]:
    if annotation is str:
        return texts
    if annotation is int:
        return longs
    if annotation is float:
        return doubles
    if annotation is bool:
        return st.booleans()
    if annotation is bytes:
        return st.binary(max_size=300)
    if typing.get_origin(annotation) is dict:
        return st.dictionaries(st.text(max_size=12), doubles, max_size=4)
    members = [member for member in typing.get_args(annotation) if member is not type(None)]
    return st.none() | strategy_of(members[0])


def records_of(record_class: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(record_class)
    return st.builds(record_class, **{f.name: strategy_of(hints[f.name]) for f in dataclasses.fields(record_class)})


def fastavro_bytes(codec: AvroCodec, record: dict[str, Any]) -> bytes:
    return codec._encode_with_fastavro(record)


def fastavro_record(codec: AvroCodec, message: bytes) -> dict[str, Any]:
    writer, start = codec.writer_schema_of(message)
    return typing.cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(message[start:]), writer, writer))


def same(left: Any, right: Any) -> bool:
    """Equality that takes NaN as equal to NaN (a NaN field round-trips as NaN)."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return True
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return bool(left == right)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(records_of(LearningFact))
def test_a_fact_is_written_byte_for_byte_as_fastavro_writes_it(fact: LearningFact) -> None:
    message = FACTS.encode_record(fact)
    assert message == fastavro_bytes(FACTS, fact.to_record()) == FACTS.encode(fact.to_record())
    assert same(FACTS.decode(message), fastavro_record(FACTS, message))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(records_of(RawEvent))
def test_a_raw_event_is_written_and_read_as_fastavro_does(event: RawEvent) -> None:
    message = RAWS.encode_record(event)
    assert message == fastavro_bytes(RAWS, dataclasses.asdict(event))
    assert RAWS.decode_record(message) == event
    assert RAWS.decode(message) == fastavro_record(RAWS, message)


@pytest.mark.parametrize(("field", "value"), [
    ("xp_earned", 3), ("score_given", 7), ("attempts", True), ("event_time_ms", 2**63), ("tenant", None),
    ("finished", 1), ("seconds_by_sub_type", {"a": 1}), ("tenant", "\ud800"), ("score_ratio", "0.5"),
])
def test_a_value_the_compiled_encoder_does_not_take_goes_through_fastavro(field: str, value: Any) -> None:
    fact = LearningFact(fact_id="f", fact_index=0, content_hash="h", tenant="t", client_id="c", source="hub",
                        event_id="e", event_type="GradeEvent", profile="p", action="a", event_time_ms=1,
                        send_time_ms=None, received_time_ms=2)
    setattr(fact, field, value)
    try:
        expected: bytes | type[Exception] = fastavro_bytes(FACTS, fact.to_record())
    except SchemaEncodingError:
        expected = SchemaEncodingError
    if expected is SchemaEncodingError:
        with pytest.raises(SchemaEncodingError):
            FACTS.encode_record(fact)
        with pytest.raises(SchemaEncodingError):
            FACTS.encode(fact.to_record())
    else:
        assert FACTS.encode_record(fact) == expected == FACTS.encode(fact.to_record())


def test_a_dict_missing_a_field_takes_its_default_through_fastavro() -> None:
    record = dataclasses.asdict(RawEvent(tenant="t", client_id="c", source="hub", event_id="e", event_type="x",
                                         profile="p", student_id="s", sensor="", send_time_ms=0,
                                         received_time_ms=1, envelope_index=0, payload=b"{}"))
    del record["tenant_timezone"]
    assert RAWS.encode(record) == fastavro_bytes(RAWS, record)
    assert RAWS.decode_record(RAWS.encode(record)).tenant_timezone == "UTC"


@given(records_of(RawEvent), st.data())
def test_a_damaged_message_reads_as_fastavro_reads_it(event: RawEvent, data: st.DataObject) -> None:
    message = bytearray(RAWS.encode_record(event))
    cut = data.draw(st.integers(10, len(message)))
    damaged = bytes(message[:cut])
    if data.draw(st.booleans()) and len(damaged) > 10:
        position = data.draw(st.integers(10, len(damaged) - 1))
        damaged = damaged[:position] + bytes([data.draw(st.integers(0, 255))]) + damaged[position + 1:]
    try:
        expected: Any = fastavro_record(RAWS, damaged)
    except Exception:  # whatever fastavro raises, the codec must refuse too
        expected = SchemaEncodingError
    if expected is SchemaEncodingError:
        with pytest.raises(SchemaEncodingError):
            RAWS.decode(damaged)
    else:
        assert RAWS.decode(damaged) == expected


@pytest.mark.parametrize("number", [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63)])
def test_varints_are_avro_longs(number: int) -> None:
    written = io.BytesIO()
    fastavro.schemaless_writer(written, {"type": "long"}, number)
    assert zigzag_varint(number) == written.getvalue()
    assert read_varint(written.getvalue() + b"rest", 0) == (number, len(written.getvalue()))


def test_out_of_range_longs_and_overlong_varints_are_left_to_fastavro() -> None:
    with pytest.raises(FastPathMiss):
        zigzag_varint(2**63)
    with pytest.raises(FastPathMiss):
        read_varint(b"\xff" * 11, 0)
    # ten groups holding more than 64 bits (hypothesis found it: the compiled decoder read a long above 2**63 - 1
    # where fastavro reads 289910833185): beyond an int64, fastavro decides
    with pytest.raises(FastPathMiss):
        read_varint(b"\xc2\x80\xc2\x80\xf0\x90\x80\x80\x80\x02", 0)
    with pytest.raises(FastPathMiss):
        read_varint(b"\x80" * 9 + b"\x7f", 0)
    assert read_varint(b"\xfe" + b"\xff" * 8 + b"\x01", 0) == (2**63 - 1, 10)  # the largest long still reads


def test_only_flat_schemas_are_compiled() -> None:
    nested = {"type": "record", "name": "N", "fields": [{"name": "inner", "type": {"type": "array", "items": "long"}}]}
    assert compile_encoder(nested, attributes=False) is None and compile_decoder(nested) is None
    for name in ("learning_fact", "raw_event"):
        newest = catalog_versions(name)[-1][1]
        assert compile_encoder(newest, attributes=True) is not None
    assert compile_decoder(catalog_versions("raw_event")[-1][1]) is not None
    assert compile_decoder(catalog_versions("learning_fact")[-1][1]) is None  # a map: fastavro reads facts


ARRAY_OF_STRINGS = {"type": "record", "name": "Keys", "fields": [
    {"name": "t", "type": "string"}, {"name": "keys", "type": {"type": "array", "items": "string"}}]}


@given(texts, st.lists(texts, max_size=5), st.integers(1, 3))
def test_an_array_of_strings_is_written_as_fastavro_writes_it(tenant: str, keys: list[str], rounds: int) -> None:
    """An archive row's student keys: the compiled encoder writes the array (its cache reused across records)
    byte for byte as fastavro does; reading it stays fastavro's."""
    encode = compile_encoder(ARRAY_OF_STRINGS, attributes=False)
    assert encode is not None and compile_decoder(ARRAY_OF_STRINGS) is None
    record = {"t": tenant, "keys": keys}
    written = io.BytesIO()
    fastavro.schemaless_writer(written, fastavro.parse_schema(ARRAY_OF_STRINGS), record)
    for _ in range(rounds):
        assert encode(record) == written.getvalue()
    with pytest.raises(FastPathMiss):
        encode({"t": tenant, "keys": (*keys, "x")})  # not a list: fastavro decides
    assert compile_encoder(catalog_versions("raw_archive_row")[-1][1], attributes=True) is not None


# every type the decoder compiles (the raw event has no double, boolean or union; a fact has a map)
EVERY_TYPE = {"type": "record", "name": "EveryType", "fields": [
    {"name": "s", "type": "string"}, {"name": "l", "type": "long"}, {"name": "d", "type": "double"},
    {"name": "b", "type": "boolean"}, {"name": "raw", "type": "bytes"}, {"name": "i", "type": "int"},
    {"name": "os", "type": ["null", "string"]}, {"name": "ol", "type": ["null", "long"]},
    {"name": "od", "type": ["null", "double"]}, {"name": "ob", "type": ["null", "boolean"]}]}
every_type = st.fixed_dictionaries({
    "s": texts, "l": longs, "d": doubles, "b": st.booleans(), "raw": st.binary(max_size=80),
    "i": st.integers(-(2**31), 2**31 - 1), "os": st.none() | texts, "ol": st.none() | longs,
    "od": st.none() | doubles, "ob": st.none() | st.booleans()})


@given(every_type, st.data())
def test_every_compiled_type_reads_and_writes_as_fastavro(record: dict[str, Any], data: st.DataObject) -> None:
    encode, decode = compile_encoder(EVERY_TYPE, attributes=False), compile_decoder(EVERY_TYPE)
    assert encode is not None and decode is not None
    written = io.BytesIO()
    fastavro.schemaless_writer(written, fastavro.parse_schema(EVERY_TYPE), record)
    message = written.getvalue()
    assert encode(record) == message
    assert same(decode(message, 0), record)
    position = data.draw(st.integers(0, len(message) - 1))  # one byte changed, and the message cut after it
    damaged = message[:position] + bytes([data.draw(st.integers(0, 255))]) + message[position + 1:]
    damaged = damaged[:data.draw(st.integers(position, len(damaged)))]
    try:
        expected: Any = fastavro.schemaless_reader(io.BytesIO(damaged), fastavro.parse_schema(EVERY_TYPE), None)
    except Exception:  # fastavro refuses it: the compiled decoder must not read it either
        expected = FastPathMiss
    if expected is FastPathMiss:
        with pytest.raises(FastPathMiss):
            decode(damaged, 0)
    else:
        with contextlib.suppress(FastPathMiss):  # giving up is always allowed: fastavro then reads it
            assert same(decode(damaged, 0), expected)


@pytest.mark.parametrize(("avro_type", "message"), [("boolean", b"\x02"), (["null", "long"], b"\x04\x02"),
                                                   ("string", b"\x03"), ("string", b"\x04\xff\xfe")])
def test_what_avro_does_not_define_is_left_to_fastavro(avro_type: Any, message: bytes) -> None:
    """A boolean byte other than 0/1 (fastavro reads 2 as true), a union index out of range, a negative length,
    bytes that are not UTF-8: the compiled decoder gives up."""
    decode = compile_decoder({"type": "record", "name": "One", "fields": [{"name": "v", "type": avro_type}]})
    assert decode is not None
    with pytest.raises(FastPathMiss):
        decode(message, 0)


POOLS: dict[Any, list[Any]] = {  # few values each, so that most fields repeat a value an encoder has cached
    str: ["", "tenant-a", "é" * 40, "x" * 300, "😀", "GradeEvent"],
    int: [0, 63, 64, -1, -64, -65, 1_700_000_000_123, 2**63 - 1, -(2**63), 300],
    float: [0.0, -0.0, 1.5, math.inf, -7.25],
    bool: [True, False],
}


def pooled_fact(draw: Any) -> LearningFact:
    hints = typing.get_type_hints(LearningFact)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(LearningFact):
        annotation = hints[field.name]
        if typing.get_origin(annotation) is dict:
            values[field.name] = draw([{}, {"reading": 1.5, "é": 0.0}])
            continue
        members = [m for m in typing.get_args(annotation) if m is not type(None)]  # X | None -> X
        kind = members[0] if members else annotation
        if annotation is not kind and draw([True, False, False]):
            values[field.name] = None
        else:
            values[field.name] = draw(POOLS[kind])
    return LearningFact(**values)


@pytest.mark.parametrize("cache_entries", [4096, 3])
def test_values_repeated_across_records_are_written_as_fastavro_writes_them(cache_entries: int) -> None:
    """The compiled encoders keep the encodings of strings and longs they wrote (``_EncodingCache``): records
    repeating values, with a cache large enough for all and with one cleared every few values, give fastavro's
    bytes."""
    import random

    schema = catalog_versions("learning_fact")[-1][1]
    by_attribute = compile_encoder(schema, attributes=True, cache_entries=cache_entries)
    by_key = compile_encoder(schema, attributes=False, cache_entries=cache_entries)
    assert by_attribute is not None and by_key is not None
    chooser = random.Random(13)
    for _ in range(400):
        fact = pooled_fact(chooser.choice)
        expected = fastavro_bytes(FACTS, fact.to_record())[len(FACTS._header):]
        assert by_attribute(fact) == expected == by_key(fact.to_record())


def test_a_cached_value_of_another_type_is_left_to_fastavro() -> None:
    """An ``int`` subclass (or ``bool``) equal to a cached long, a ``str`` subclass equal to a cached string: the
    exact type is checked before the cache, so they take fastavro's path as before."""

    class Count(int):
        pass

    class Name(str):
        pass

    schema = catalog_versions("learning_fact")[-1][1]
    encoder = compile_encoder(schema, attributes=True)
    assert encoder is not None
    fact = LearningFact(fact_id="f", fact_index=0, content_hash="h", tenant="tenant-a", client_id="c",
                        source="hub", event_id="e", event_type="GradeEvent", profile="p", action="a",
                        event_time_ms=1_700_000_000_123, send_time_ms=None, received_time_ms=1)
    encoder(fact)  # caches "tenant-a", 1_700_000_000_123 and 1
    for field, value in (("event_time_ms", Count(1_700_000_000_123)), ("tenant", Name("tenant-a")),
                         ("received_time_ms", True)):
        changed = dataclasses.replace(fact, **{field: value})
        with pytest.raises(FastPathMiss):
            encoder(changed)
        assert FACTS.encode_record(changed) == fastavro_bytes(FACTS, changed.to_record())
