"""Avro: the catalog matches the records, every version resolves against its neighbours, messages name
their writer schema (single-object encoding; Confluent wire format with registry ids)."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas.avro.codec import SINGLE_OBJECT_MARKER, LearningFactCodec, RawEventCodec, crc64_fingerprint
from schemas.avro.generate import RECORDS, avro_schema_for, catalog_versions
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
    assert versions, f"no released version of {name}: run python -m schemas.avro.generate --write"
    assert versions[-1][1] == avro_schema_for(RECORDS[name]), (
        f"{name} changed without a new catalog version: run python -m schemas.avro.generate --write")


PREDECESSORS = Path(__file__).resolve().parents[2] / "fixtures" / "avro"  # see its README.md

_SAMPLES: dict[str, Any] = {"string": "s", "long": 7, "double": 2.5, "boolean": True, "bytes": b"\x00b"}


def _sample_datum(schema: dict[str, Any]) -> dict[str, Any]:
    """A record of ``schema`` whose every value differs from its field's default (so a default read in place of
    the written value, or a value of another type, is noticed)."""
    return {field["name"]: _sample_value(field["type"], field["name"], index)
            for index, field in enumerate(schema["fields"])}


def _sample_value(kind: Any, name: str, index: int) -> Any:
    if isinstance(kind, list):  # an optional value: write the value, not null
        [kind] = [member for member in kind if member != "null"]
    if isinstance(kind, dict) and kind["type"] == "map":  # a map: one entry of its value type
        return {f"key-{name}": _SAMPLES[kind["values"]]}
    if isinstance(kind, dict) and kind["type"] == "array":  # an array: two items of its item type
        return [_sample_value(kind["items"], name, index), _sample_value(kind["items"], name, index + 1)]
    if isinstance(kind, dict) and kind["type"] == "record":  # a nested record (a batch's events)
        return _sample_datum(kind)
    value = _SAMPLES[kind]
    return f"{value}-{name}" if kind == "string" else (value + index if kind in ("long", "double") else value)


def _as_read(value: Any, reader: Any) -> Any:
    """What ``value`` (written with a compatible schema) reads as with the ``reader`` type: a nested record's
    fields the writer lacked take their defaults, the fields it had keep their values."""
    if isinstance(reader, list):
        [reader] = [member for member in reader if member != "null"]
    if isinstance(reader, dict) and reader["type"] == "record":
        return {field["name"]: _as_read(value[field["name"]], field["type"]) if field["name"] in value
                else field["default"] for field in reader["fields"]}
    if isinstance(reader, dict) and reader["type"] == "array":
        return [_as_read(item, reader["items"]) for item in value]
    return value


def lineage(name: str, versions: list[tuple[int, dict[str, Any]]],
            predecessors: Path = PREDECESSORS) -> list[tuple[str, dict[str, Any]]]:
    """The versions of a record to compare, oldest first: a fixture ``v0`` if there is one, then the catalog's.
    Fails loudly when that leaves a single version: there would be nothing to compare."""
    fixture = predecessors / name / "v0.avsc"
    found = [("fixture v0", json.loads(fixture.read_text()))] if fixture.exists() else []
    found += [(f"v{number}", schema) for number, schema in versions]
    if len(found) < 2:
        pytest.fail(f"{name} has a single version ({', '.join(label for label, _ in found)}) and nothing to "
                    f"compare it with: release a v2 or add a predecessor {fixture} (see {predecessors}/README.md)")
    return found


def check_resolution(writer: dict[str, Any], reader: dict[str, Any]) -> None:
    """Data written with ``writer`` reads with ``reader``: every field both have keeps its value, a field only the
    reader has gets its default (Avro schema resolution; raises when it cannot resolve)."""
    datum = _sample_datum(writer)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parse_schema(writer), datum)
    buffer.seek(0)
    read = fastavro.schemaless_reader(buffer, parse_schema(writer), parse_schema(reader))
    assert isinstance(read, dict)
    for field in reader["fields"]:
        expected = _as_read(datum[field["name"]], field["type"]) if field["name"] in datum else field["default"]
        assert read[field["name"]] == expected, field["name"]
    assert set(read) == {field["name"] for field in reader["fields"]}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_version_reads_the_previous_and_is_read_by_it(name: str) -> None:
    versions = lineage(name, catalog_versions(name))
    for (older_label, older), (newer_label, newer) in itertools.pairwise(versions):
        for writer, reader, direction in ((older, newer, f"{newer_label} reads {older_label}"),
                                          (newer, older, f"{older_label} reads {newer_label}")):
            try:
                check_resolution(writer, reader)
            except (fastavro.read.SchemaResolutionError, AssertionError) as error:
                pytest.fail(f"{name}: {direction} failed: {error!r}")


def test_learning_fact_has_a_real_pair_of_released_versions() -> None:
    assert [label for label, _ in lineage("learning_fact", catalog_versions("learning_fact"))][:2] == ["v1", "v2"]


def test_a_record_with_one_version_and_no_predecessor_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="single version"):
        lineage("raw_event", catalog_versions("raw_event")[:1], predecessors=tmp_path)


@pytest.mark.parametrize("break_it", [
    lambda fields: [*fields, {"name": "brand_new", "type": "string"}],  # a new field without default
    lambda fields: [{**f, "type": "long"} if f["name"] == "tenant" else f for f in fields],  # a type change
    lambda fields: [f for f in fields if f["name"] != "event_id"],  # a field without default dropped
], ids=["field-without-default", "type-change", "required-field-dropped"])
def test_the_evolution_check_fails_on_an_incompatible_version(break_it: Any) -> None:
    """Negative control: the same check, on a newer version made incompatible on purpose, fails."""
    released = catalog_versions("learning_fact")[-1][1]
    broken = {**released, "fields": break_it(released["fields"])}
    failures = 0
    for writer, reader in ((released, broken), (broken, released)):
        try:
            check_resolution(writer, reader)
        except fastavro.read.SchemaResolutionError:
            failures += 1
    assert failures >= 1


def test_a_value_avro_resolves_but_changes_is_noticed() -> None:
    """Negative control for the value comparison: Avro promotes a string to bytes without complaint, but the
    reader then gets bytes where the code expects text; the check compares values and fails."""
    released = catalog_versions("learning_fact")[-1][1]
    promoted = {**released, "fields": [{**f, "type": "bytes"} if f["name"] == "tenant" else f
                                       for f in released["fields"]]}
    with pytest.raises(AssertionError, match="tenant"):
        check_resolution(released, promoted)


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
