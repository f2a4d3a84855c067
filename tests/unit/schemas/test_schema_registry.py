"""With a schema registry configured, codecs register the catalog and write the Confluent wire format.

The registry here is a minimal in-process implementation of the two REST calls used (the Confluent Schema
Registry itself is a JVM service that is not installable from this machine's registries)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from caliper_pipeline.bench.schemas_bench import typical_fact
from schemas.avro.generate import catalog_versions
from schemas.avro.registry import (
    SchemaRegistryClient,
    SchemaRegistryError,
    learning_fact_codec,
    raw_event_codec,
    registry_ids,
    subject_of,
)
from schemas.kafka import KafkaSettings
from schemas.records import RawEvent


class _Registry(BaseHTTPRequestHandler):
    ids: dict[str, int] = {}
    subjects: dict[str, list[int]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions" or body.get("schemaType") != "AVRO":
            self.send_response(404)
            self.end_headers()
            return
        canonical = json.dumps(json.loads(body["schema"]), sort_keys=True)
        schema_id = self.ids.setdefault(canonical, 100 + len(self.ids))
        self.subjects.setdefault(parts[1], []).append(schema_id)
        answer = json.dumps({"id": schema_id}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _Registry.ids, _Registry.subjects = {}, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_every_catalog_version_is_registered_under_the_record_subject(registry_url: str) -> None:
    client = SchemaRegistryClient(registry_url)
    ids = registry_ids(client, "learning_fact")
    assert sorted(ids.values()) == [version for version, _ in catalog_versions("learning_fact")]
    assert set(_Registry.subjects) == {subject_of("learning_fact")} == {"org.caliperpipeline.LearningFact"}
    assert registry_ids(client, "learning_fact") == ids  # registering again gives the same ids


def test_codecs_write_the_confluent_wire_format_and_read_it_back(registry_url: str) -> None:
    kafka = KafkaSettings(schema_registry_url=registry_url)
    writer, reader = learning_fact_codec(kafka), learning_fact_codec(kafka)
    message = writer.encode_record(typical_fact())
    assert message[0] == 0 and int.from_bytes(message[1:5], "big") in _Registry.ids.values()
    assert reader.decode_record(message) == typical_fact()
    _, body_start = reader.writer_schema_of(message)  # what the sink's container path uses
    assert body_start == 5
    assert raw_event_codec(kafka).encode({"tenant": "t", "client_id": "c", "source": "hub", "event_id": "e",
                                          "event_type": "GradeEvent", "profile": "GradingProfile",
                                          "student_id": "s", "sensor": "", "send_time_ms": 0,
                                          "received_time_ms": 1, "envelope_index": 0, "payload": b"{}"})[0] == 0


def test_the_raw_codec_registers_the_batch_record_and_writes_and_reads_it_with_registry_ids(
        registry_url: str) -> None:
    kafka = KafkaSettings(schema_registry_url=registry_url)
    writer, reader = raw_event_codec(kafka), raw_event_codec(kafka)
    assert {subject_of("raw_event"), subject_of("raw_event_batch")} <= set(_Registry.subjects)
    event = RawEvent(tenant="t", client_id="c", source="hub", event_id="e", event_type="GradeEvent",
                     profile="GradingProfile", student_id="s", sensor="", send_time_ms=0, received_time_ms=1,
                     envelope_index=0, payload=b"{}")
    batch = writer.encode_events([event, event])
    assert batch[0] == 0 and int.from_bytes(batch[1:5], "big") in _Registry.ids.values()
    assert batch[1:5] != writer.encode_record(event)[1:5]  # the batch's own schema id
    assert reader.decode_events(batch) == [event, event]


def test_without_a_registry_the_single_object_encoding_is_used() -> None:
    assert learning_fact_codec(KafkaSettings()).encode_record(typical_fact())[:2] == b"\xc3\x01"


def test_an_unreachable_registry_is_a_clear_error() -> None:
    from caliper_pipeline.local.broker import free_port

    with pytest.raises(SchemaRegistryError, match="not reachable"):
        learning_fact_codec(KafkaSettings(schema_registry_url=f"http://127.0.0.1:{free_port()}"))
