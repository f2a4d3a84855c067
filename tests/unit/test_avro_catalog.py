"""Avro: the catalog matches the records, every version resolves against its neighbours, messages name
their writer schema (single-object encoding; Confluent wire format with registry ids)."""

from __future__ import annotations

import io
import itertools
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas.avro_gen import RECORDS, avro_schema_for, catalog_versions
from schemas.codec import SINGLE_OBJECT_MARKER, AvroCodec, LearningFactCodec, RawEventCodec, crc64_fingerprint
from schemas.errors import SchemaEncodingError
from schemas.records import LearningFact, RawEvent, fact_id_for


def _sample_fact(**overrides: Any) -> LearningFact:
    values: dict[str, Any] = dict(
        fact_id=fact_id_for("t1", "urn:uuid:1"), fact_index=0, content_hash="c0ffee", tenant="t1", client_id="app",
        source="timeback", event_id="urn:uuid:1", event_type="ActivityEvent", profile="TimebackProfile",
        action="Completed", event_time_ms=1_713_967_920_000, send_time_ms=1_713_967_921_000,
        received_time_ms=1_713_967_922_000, student_id="s1", xp_earned=100.0, score_given=8.5, finished=True)
    values.update(overrides)
    return LearningFact(**values)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_newest_catalog_version_is_generated_from_the_record(name: str) -> None:
    versions = catalog_versions(name)
    assert versions, f"no released version of {name}: run python -m schemas.avro_gen --write"
    assert versions[-1][1] == avro_schema_for(RECORDS[name]), (
        f"{name} changed without a new catalog version: run python -m schemas.avro_gen --write")


def _default_datum(schema: dict[str, Any]) -> dict[str, Any]:
    datum: dict[str, Any] = {}
    for field in schema["fields"]:
        kind = field["type"]
        if "default" in field:
            datum[field["name"]] = field["default"]
        else:
            datum[field["name"]] = {"string": "x", "long": 1, "double": 1.0, "boolean": True, "bytes": b"x"}[kind]
    return datum


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_version_reads_the_previous_and_is_read_by_it(name: str) -> None:
    versions = [schema for _, schema in catalog_versions(name)]
    for older, newer in itertools.pairwise(versions):
        for writer, reader in ((older, newer), (newer, older)):
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, parse_schema(writer), _default_datum(writer))
            buffer.seek(0)
            fastavro.schemaless_reader(buffer, parse_schema(writer), parse_schema(reader))


def test_a_field_without_default_breaks_backward_resolution() -> None:
    """The evolution check can fail: a new required field cannot read old data."""
    old = catalog_versions("learning_fact")[-1][1]
    new = {**old, "fields": [*old["fields"], {"name": "brand_new", "type": "string"}]}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parse_schema(old), _default_datum(old))
    buffer.seek(0)
    with pytest.raises(fastavro.read.SchemaResolutionError):
        fastavro.schemaless_reader(buffer, parse_schema(old), parse_schema(new))


def test_fact_round_trip_with_single_object_header() -> None:
    codec = LearningFactCodec()
    fact = _sample_fact()
    message = codec.encode_record(fact)
    assert message[:2] == SINGLE_OBJECT_MARKER
    assert message[2:10] == crc64_fingerprint(codec.reader_schema)
    assert codec.decode_record(message) == fact


def test_crc64_fingerprint_matches_the_avro_specification() -> None:
    # Avro spec test vector: fingerprint of "null" is -5,8...: 0x63dd24e7cc258f8a, stored little-endian
    assert crc64_fingerprint(parse_schema("null")) == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_raw_event_round_trip_keeps_payload_bytes() -> None:
    codec = RawEventCodec()
    event = RawEvent(tenant="t", client_id="c", source="hub", event_id="urn:uuid:2", event_type="GradeEvent",
                     profile="GradingProfile", student_id="urn:uuid:3", sensor="", send_time_ms=0,
                     received_time_ms=5, envelope_index=0, payload=b'{"id": "urn:uuid:2", "extra": [1, 2]}')
    assert codec.decode_record(codec.encode_record(event)) == event


def test_confluent_wire_format_uses_registry_ids() -> None:
    codec = LearningFactCodec(schema_ids={41: codec_version()})
    message = codec.encode_record(_sample_fact())
    assert message[:5] == b"\x00\x00\x00\x00\x29"
    assert codec.decode_record(message).tenant == "t1"


def codec_version() -> int:
    return catalog_versions("learning_fact")[-1][0]


def test_unknown_writer_and_garbage_are_refused() -> None:
    codec = AvroCodec("learning_fact")
    with pytest.raises(SchemaEncodingError):
        codec.decode(SINGLE_OBJECT_MARKER + b"\x00" * 8 + b"body")
    with pytest.raises(SchemaEncodingError):
        codec.decode(b"{not avro}")
    with pytest.raises(SchemaEncodingError):
        codec.encode({"fact_id": 3})
