"""The one Avro writer/reader (``schemas.avro.coder``) against fastavro, the reference.

For generated records of every catalog version (and of records nesting arrays of records, maps and unions) the
compiled encoder writes fastavro's bytes and the compiled decoder reads what fastavro reads, resolving any older
writer version to the newest; the bound writer of the gateway (``RawEventCodec.writer_for``) writes what
``encode_record`` writes; values that do not fit and messages that do not decode raise ``SchemaEncodingError``
naming the field.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caliper_pipeline.senders.samples import (
    envelope,
    generic_caliper_event,
    timeback_activity_event,
    timeback_time_spent_event,
)
from gateway.ingest import encoded_envelope_events
from gateway.tokens import Caller
from schemas.avro.codec import SINGLE_OBJECT_MARKER, AvroCodec, LearningFactCodec, RawEventCodec
from schemas.avro.coder import bind_encoder, compile_encoder, read_varint, zigzag_varint
from schemas.avro.decoder import compile_decoder
from schemas.avro.generate import RECORDS, catalog_versions
from schemas.errors import PipelineError, SchemaEncodingError
from schemas.records import RAW_EVENT_FIELDS, LearningFact, RawEvent

FACTS, RAWS = LearningFactCodec(), RawEventCodec()
texts = st.one_of(st.text(max_size=80), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
                  st.sampled_from(["", "x", "é", "😀" * 40]))
longs = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-200, 200), st.integers(0, 2**45),
                  st.sampled_from([0, 1, -1, 63, 64, -64, -65, 2**63 - 1, -(2**63)]))
doubles = st.floats(allow_nan=True, allow_infinity=True, width=64)
SLOW = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def strategy_of(avro_type: Any) -> st.SearchStrategy[Any]:
    """Values of an Avro type, for a parsed schema."""
    if isinstance(avro_type, list):
        return st.one_of(*[strategy_of(branch) for branch in avro_type])
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "map":
            return st.dictionaries(texts, strategy_of(avro_type["values"]), max_size=4)
        if kind == "array":
            return st.lists(strategy_of(avro_type["items"]), max_size=4)
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: strategy_of(f["type"]) for f in avro_type["fields"]})
        return strategy_of(kind)
    if avro_type == "test.Item":  # NESTED's second reference to its item record
        return strategy_of(ITEM)
    return {"string": texts, "long": longs, "double": doubles, "boolean": st.booleans(), "null": st.none(),
            "bytes": st.binary(max_size=300), "int": st.integers(-(2**31), 2**31 - 1),
            "float": st.floats(width=32, allow_nan=False)}[avro_type]


def fastavro_body(schema: Any, record: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def fastavro_read(body: bytes, writer: Any, reader: Any = None) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(body), writer, reader if reader is not None else writer)


def same(left: Any, right: Any) -> bool:
    """Equality that takes NaN as equal to NaN (a NaN field round-trips as NaN)."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return True
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


# --- every catalog version, and records nesting arrays of records --------------------------------------------

CATALOG = [(name, number, fastavro.parse_schema(schema)) for name in sorted(RECORDS)
           for number, schema in catalog_versions(name)]
ITEM = {"type": "record", "name": "Item", "fields": [
    {"name": "id", "type": "string"}, {"name": "score", "type": ["null", "double"], "default": None},
    {"name": "weights", "type": {"type": "map", "values": "double"}}, {"name": "raw", "type": "bytes"}]}
NESTED = fastavro.parse_schema({"type": "record", "name": "Block", "namespace": "test", "fields": [
    {"name": "tenant", "type": "string"}, {"name": "items", "type": {"type": "array", "items": ITEM}},
    {"name": "tags", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
    {"name": "flag", "type": ["boolean", "null"]}, {"name": "count", "type": "int"},
    {"name": "ratio", "type": "float"}, {"name": "maybe", "type": ["null", "Item"], "default": None}]})
SCHEMAS = [pytest.param(schema, id=f"{name}-v{number}") for name, number, schema in CATALOG]
SCHEMAS.append(pytest.param(NESTED, id="nested-arrays-of-records"))


_CODERS: dict[int, Any] = {}


def coders(schema: Any) -> Any:
    """The encoder (prefix ``H``) and decoder of a schema, compiled once for all the examples."""
    if id(schema) not in _CODERS:
        _CODERS[id(schema)] = compile_encoder(schema, attributes=False, prefix=b"H"), compile_decoder(schema)
    return _CODERS[id(schema)]


@pytest.mark.parametrize("schema", SCHEMAS)
@SLOW
@given(data=st.data())
def test_every_schema_is_written_and_read_as_fastavro_does(schema: Any, data: st.DataObject) -> None:
    record = data.draw(strategy_of(schema))
    expected = fastavro_body(schema, record)
    encode, decode = coders(schema)
    assert encode(record) == b"H" + expected
    decoded = decode(b"H" + expected, 1)
    assert same(decoded, fastavro_read(expected, schema)) and same(decoded, record)


@pytest.mark.parametrize("name", sorted(RECORDS))
@SLOW
@given(data=st.data())
def test_every_older_version_is_resolved_to_the_newest_as_fastavro_resolves_it(name: str,
                                                                               data: st.DataObject) -> None:
    versions = [schema for record, _, schema in CATALOG if record == name]
    writer = data.draw(st.sampled_from(versions))
    body = fastavro_body(writer, data.draw(strategy_of(writer)))
    key = id(writer) + 1  # the resolving decoder, beside the writer's own coders
    if key not in _CODERS:
        _CODERS[key] = compile_decoder(writer, versions[-1])
    assert same(_CODERS[key](body, 0), fastavro_read(body, writer, versions[-1]))


@SLOW
@given(st.builds(LearningFact, **{f.name: strategy_of(t["type"]) for f, t in zip(
    dataclasses.fields(LearningFact), FACTS.reader_schema["fields"], strict=True)}))
def test_a_fact_dataclass_is_written_as_its_dict_and_read_back(fact: LearningFact) -> None:
    message = FACTS.encode_record(fact)
    assert message == FACTS.encode(fact.to_record()) == FACTS._header + fastavro_body(FACTS.reader_schema,
                                                                                        fact.to_record())
    assert same(dataclasses.asdict(FACTS.decode_record(message)), dataclasses.asdict(fact))


@st.composite
def raw_events(draw: st.DrawFn) -> RawEvent:
    values = {field["name"]: draw(strategy_of(field["type"])) for field in RAWS.reader_schema["fields"]}
    return RawEvent(**values)


@given(raw_events(), st.sets(st.sampled_from(RAW_EVENT_FIELDS)))
def test_a_bound_writer_writes_what_encode_record_writes(event: RawEvent, constant: set[str]) -> None:
    variable = tuple(name for name in RAWS._fields if name not in constant)
    write = RAWS.writer_for(variable, **{name: getattr(event, name) for name in constant})
    message = write(*(getattr(event, name) for name in variable))
    assert message == RAWS.encode_record(event) == RAWS._header + fastavro_body(RAWS.reader_schema,
                                                                                dataclasses.asdict(event))
    assert RAWS.decode_record(message) == event


def test_a_bound_writer_checks_the_order_of_the_other_fields_and_takes_defaults() -> None:
    event = RawEvent("t", "c", "timeback", "e", "T", "P", "s", "x", 1, 2, 3, b"{}")  # tenant_timezone: UTC
    with pytest.raises(SchemaEncodingError):
        RAWS.writer_for(("event_id", "source"), tenant="t")
    variable = tuple(name for name in RAWS._fields if name not in ("tenant", "tenant_timezone", "job_id",
                                                                   "extensions_policy"))
    write = RAWS.writer_for(variable, tenant="t")
    assert write(*(getattr(event, name) for name in variable)) == RAWS.encode_record(event)
    with pytest.raises(SchemaEncodingError):  # a field without a default must be named
        RAWS.writer_for(tuple(name for name in variable if name != "sensor"), tenant="t")


def test_the_gateway_encodes_an_envelope_as_its_raw_events() -> None:
    rng = random.Random(7)
    items = [timeback_activity_event(f"s{i}", xp=rng.random() * 100) for i in range(20)]
    items += [timeback_time_spent_event("ñandú-ü"), generic_caliper_event(), {"id": "https://x.example/e",
                                                                             "type": "Person", "name": "日本"}]
    payload = envelope(*items)
    caller = Caller("app-1", "school-a", frozenset(), None, "America/Sao_Paulo")
    encoded = encoded_envelope_events(payload, caller, 1_764_519_183_052, RAWS)
    decoded = [RAWS.decode_record(item.value) for item in encoded]
    assert [item.value for item in encoded] == [RAWS.encode_record(raw) for raw in decoded]  # fastavro's bytes
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


def test_a_dict_missing_a_field_takes_its_default() -> None:
    record = dataclasses.asdict(RawEvent("t", "c", "hub", "e", "x", "p", "s", "", 0, 1, 0, b"{}"))
    del record["tenant_timezone"]
    assert RAWS.encode(record) == RAWS._header + fastavro_body(RAWS.reader_schema, record)
    assert RAWS.decode_record(RAWS.encode(record)).tenant_timezone == "UTC"


# --- values that do not fit, messages that do not decode: SchemaEncodingError naming the field ----------------

def _fact(**changes: Any) -> LearningFact:
    fact = LearningFact(fact_id="f", fact_index=0, content_hash="h", tenant="t", client_id="c", source="hub",
                        event_id="e", event_type="GradeEvent", profile="p", action="a", event_time_ms=1,
                        send_time_ms=None, received_time_ms=2)
    for name, value in changes.items():
        setattr(fact, name, value)
    return fact


@pytest.mark.parametrize(("field", "value"), [
    ("tenant", "\ud800"), ("event_time_ms", 2**63), ("event_time_ms", -(2**63) - 1), ("tenant", 3),
    ("tenant", None), ("fact_index", True), ("finished", 1), ("score_ratio", "0.5"), ("xp_earned", 10**400),
    ("seconds_by_sub_type", {"a": "1"}), ("seconds_by_sub_type", [1.0]), ("send_time_ms", 1.5)])
def test_a_value_that_does_not_fit_names_its_field(field: str, value: Any) -> None:
    fact = _fact(**{field: value})
    for encode in (FACTS.encode_record, lambda f: FACTS.encode(f.to_record())):
        with pytest.raises(SchemaEncodingError) as raised:
            encode(fact)
        assert raised.value.field.startswith(field) and raised.value.record == "LearningFact"
        assert field in str(raised.value) and isinstance(raised.value, PipelineError)


def test_a_field_of_an_array_of_records_is_named_with_its_path() -> None:
    encode = compile_encoder(NESTED, attributes=False)
    record = {"tenant": "t", "items": [{"id": "a", "score": None, "weights": {}, "raw": b""},
                                       {"id": "b\udcff", "score": 1.0, "weights": {}, "raw": b""}],
              "tags": {}, "flag": None, "count": 1, "ratio": 0.5, "maybe": None}
    with pytest.raises(SchemaEncodingError, match=r"items\[\]\.id.*UTF-8") as raised:
        encode(record)
    assert raised.value.field == "items[].id"
    record["items"][1]["id"] = "b"
    record["ratio"] = 1e300  # beyond a float
    with pytest.raises(SchemaEncodingError, match="ratio: float too large"):
        encode(record)
    record["ratio"] = 0.5
    record["count"] = 2**31
    with pytest.raises(SchemaEncodingError, match="count"):
        encode(record)
    del record["tenant"]
    with pytest.raises(SchemaEncodingError, match="tenant: missing"):
        encode(record)
    with pytest.raises(SchemaEncodingError, match="tenant"):  # a bound writer's constant, at bind time
        bind_encoder(RAWS.reader_schema, ("tenant",))(5)


def test_subclasses_and_ints_in_double_fields_are_written_as_fastavro_writes_them() -> None:
    """An ``int`` subclass or a ``str`` subclass equal to a cached value, an int in a double field: the exact type
    is checked before the cache, the value converted on the slower branch."""

    class Count(int):
        pass

    class Name(str):
        pass

    encode = compile_encoder(FACTS.reader_schema, attributes=True)
    base = _fact(tenant="tenant-a", event_time_ms=1_700_000_000_123)
    encode(base)  # caches "tenant-a" and 1_700_000_000_123
    for field, value in (("event_time_ms", Count(1_700_000_000_123)), ("tenant", Name("tenant-a")),
                         ("xp_earned", 3), ("score_given", 7)):
        changed = dataclasses.replace(base, **{field: value})
        assert encode(changed) == fastavro_body(FACTS.reader_schema, changed.to_record())


POOLS: dict[str, list[Any]] = {  # few values each, so that most fields repeat a value an encoder has cached
    "string": ["", "tenant-a", "é" * 40, "x" * 300, "😀", "GradeEvent"],
    "long": [0, 63, 64, -1, -64, -65, 1_700_000_000_123, 2**63 - 1, -(2**63), 300],
    "double": [0.0, -0.0, 1.5, math.inf, -7.25], "boolean": [True, False]}


@pytest.mark.parametrize("cache_entries", [4096, 3])
def test_values_repeated_across_records_are_written_as_fastavro_writes_them(cache_entries: int) -> None:
    """The encoders keep the encodings of strings and longs they wrote: records repeating values, with a cache
    large enough for all and with one cleared every few values, give fastavro's bytes."""
    by_attribute = compile_encoder(FACTS.reader_schema, attributes=True, cache_entries=cache_entries)
    by_key = compile_encoder(FACTS.reader_schema, attributes=False, cache_entries=cache_entries)
    chooser = random.Random(13)
    for _ in range(400):
        values: dict[str, Any] = {}
        for field in FACTS.reader_schema["fields"]:
            kind = field["type"]
            if isinstance(kind, dict):
                values[field["name"]] = chooser.choice([{}, {"reading": 1.5, "é": 0.0}])
            elif isinstance(kind, list) and chooser.random() < 0.3:
                values[field["name"]] = None
            else:
                values[field["name"]] = chooser.choice(POOLS[kind[1] if isinstance(kind, list) else kind])
        fact = LearningFact(**values)
        expected = fastavro_body(FACTS.reader_schema, fact.to_record())
        assert by_attribute(fact) == expected == by_key(fact.to_record())


@given(raw_events(), st.data())
def test_a_damaged_message_is_refused_or_read_as_fastavro_reads_it(event: RawEvent, data: st.DataObject) -> None:
    message = RAWS.encode_record(event)
    cut = data.draw(st.integers(10, len(message)))
    damaged = message[:cut]
    if data.draw(st.booleans()) and len(damaged) > 10:
        position = data.draw(st.integers(10, len(damaged) - 1))
        damaged = damaged[:position] + bytes([data.draw(st.integers(0, 255))]) + damaged[position + 1:]
    try:
        expected: Any = fastavro_read(damaged[10:], RAWS.reader_schema)
    except Exception:  # whatever fastavro raises, the codec refuses too
        expected = SchemaEncodingError
    if expected is SchemaEncodingError:
        with pytest.raises(SchemaEncodingError):
            RAWS.decode(damaged)
    else:  # a varint beyond 64 bits fastavro reads: refused here (never another exception)
        try:
            assert RAWS.decode(damaged) == expected
        except SchemaEncodingError as error:
            assert "64 bits" in str(error) or "longer than any long" in str(error)


@pytest.mark.parametrize(("avro_type", "body", "says"), [
    ("boolean", b"\x02", "boolean byte"), (["null", "long"], b"\x04\x02", "branch index"),
    ("string", b"\x03", "ends inside"), ("string", b"\x04\xff\xfe", "not UTF-8"),
    ("long", b"\xff" * 11, "longer than any long"), ("long", b"\xc2\x80\xc2\x80\xf0\x90\x80\x80\x80\x02", "64 bits"),
    ({"type": "array", "items": "long"}, b"\x7e", "ends inside"), ("double", b"\x00" * 7, "ends inside")])
def test_a_message_avro_does_not_define_is_refused_naming_the_field(avro_type: Any, body: bytes, says: str) -> None:
    decode = compile_decoder({"type": "record", "name": "One", "fields": [{"name": "v", "type": avro_type}]})
    with pytest.raises(SchemaEncodingError, match=says) as raised:
        decode(body, 0)
    assert raised.value.field == "v"


@pytest.mark.parametrize("number", [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63)])
def test_varints_are_avro_longs(number: int) -> None:
    written = fastavro_body({"type": "long"}, number)
    assert zigzag_varint(number) == written
    assert read_varint(written + b"rest", 0) == (number, len(written))
    with pytest.raises(SchemaEncodingError):
        zigzag_varint(2**63)


def test_unknown_writers_and_garbage_are_refused() -> None:
    codec = AvroCodec("learning_fact")
    with pytest.raises(SchemaEncodingError):
        codec.decode(SINGLE_OBJECT_MARKER + b"\x00" * 8 + b"body")
    with pytest.raises(SchemaEncodingError):
        codec.decode(b"{not avro}")
    with pytest.raises(SchemaEncodingError, match="fact_id"):
        codec.encode({"fact_id": 3})


def test_schemas_are_compiled_on_first_use() -> None:
    codec = LearningFactCodec()
    assert not codec._encoders and not codec._decoders
    codec.decode_record(codec.encode_record(_fact()))
    assert list(codec._encoders) == [True] and len(codec._decoders) == 1


def test_what_the_coder_cannot_handle_is_refused_when_compiled() -> None:
    recursive = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    with pytest.raises(SchemaEncodingError, match="recursive"):
        compile_encoder(recursive, attributes=False)
    with pytest.raises(SchemaEncodingError, match="not supported"):
        compile_decoder({"type": "record", "name": "E", "fields": [
            {"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A"]}}]})


def _spliced(field: str, first: Any, second: Any, replacement: bytes) -> bytes:
    """A fact message whose ``field`` (one byte, where facts with ``first`` and ``second`` differ) is replaced."""
    one, other = FACTS.encode_record(_fact(**{field: first})), FACTS.encode_record(_fact(**{field: second}))
    [position] = [index for index, (a, b) in enumerate(zip(one, other, strict=True)) if a != b]
    return one[:position] + replacement + one[position + 1:]


@pytest.mark.parametrize(("field", "first", "second", "replacement"), [
    ("finished", True, False, b"\x02"),  # a boolean byte that is neither 0 nor 1 (fastavro reads it as true)
    ("event_time_ms", 1, 2, b"\x80" * 9 + b"\x7f"),  # a varint beyond 64 bits (fastavro reads a larger int)
])
def test_a_fact_message_avro_does_not_define_is_refused(field: str, first: Any, second: Any,
                                                        replacement: bytes) -> None:
    with pytest.raises(SchemaEncodingError, match=field):
        FACTS.decode_record(_spliced(field, first, second, replacement))


def test_a_boolean_in_a_long_field_is_refused() -> None:
    """``True`` is an int to Python, not a long to Avro: it is not written as 1."""
    with pytest.raises(SchemaEncodingError, match="fact_index"):
        FACTS.encode_record(_fact(fact_index=True))


@pytest.mark.parametrize(("field", "value"), [("event_time_ms", 2**63 + 12345), ("event_time_ms", "cpf-123.456.789-00"),
                                              ("tenant", 98765), ("envelope_index", 2**31 * 2**40 + 12345)])
def test_an_error_names_the_field_never_the_value(field: str, value: Any) -> None:
    """Its message becomes a failed event's reason, which must not carry what was sent."""
    with pytest.raises(SchemaEncodingError) as raised:
        FACTS.encode_record(_fact(**{field: value}))
    assert field in str(raised.value) and str(value) not in str(raised.value) and "12345" not in str(raised.value)


OLD_ITEM = {**ITEM, "fields": [field for field in ITEM["fields"] if field["name"] != "score"]}


@SLOW
@given(st.data())
def test_an_array_of_an_older_record_is_resolved_as_fastavro_resolves_it(data: st.DataObject) -> None:
    """A block of items written before the item record gained a field (``score``, default null) reads with the
    default in every item, nested in an array and in an optional field."""
    writer = fastavro.parse_schema({"type": "record", "name": "Block", "namespace": "test", "fields": [
        {"name": "items", "type": {"type": "array", "items": OLD_ITEM}},
        {"name": "maybe", "type": ["null", "Item"], "default": None}]})
    reader = fastavro.parse_schema({"type": "record", "name": "Block", "namespace": "test", "fields": [
        {"name": "items", "type": {"type": "array", "items": ITEM}},
        {"name": "maybe", "type": ["null", "Item"], "default": None}]})
    record = data.draw(st.fixed_dictionaries({"items": st.lists(strategy_of(OLD_ITEM), max_size=3),
                                              "maybe": st.none() | strategy_of(OLD_ITEM)}))
    body = fastavro_body(writer, record)
    assert same(compile_decoder(writer, reader)(body, 0), fastavro_read(body, writer, reader))
