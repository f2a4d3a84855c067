"""Every topic the pipeline writes reads in the clients others consume it with: Apache Kafka's Java consumer and
librdkafka (confluent-kafka), both ``read_committed``, see the same records, and every record decodes with the
published schemas (Avro from ``schemas/avro/catalog`` by the fingerprint each record carries: the raw topics'
``RawEventBatch`` records, a dead letter's lone ``RawEvent``, the facts; JSON side topics through their
definitions) into what was sent.

The records are written by the pipeline's own producers, as processes (``pipeline`` fixture): the gateway (raw
events of the three sources and their job records in transactions, a rejected request), the streams worker (facts
and raw-archive rows in blocks, a dead letter, a conflict notice). Their lz4 batches must also carry the frame
descriptor Kafka's own producers write (``schemas.kafka_lz4``): the Java client and librdkafka read aiokafka's own
frames too, but Go consumers on pierrec/lz4 < v4.1.22 (sarama <= 1.43, franz-go <= 1.18.0) do not, so the batches
on the broker are checked too.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from kafka_interop import (
    SeenRecord,
    java_tools_available,
    read_with_java,
    read_with_librdkafka,
    record_batches,
)
from pipeline_harness import LocalPipeline, publish_as_a_laxer_gateway

from caliper_pipeline.bench.gateway_bench import access_token
from caliper_pipeline.client.receipts import wait_for_jobs
from caliper_pipeline.local.broker import KafkaDistribution
from caliper_pipeline.senders.samples import envelope, generic_caliper_event, hub_grade_event, timeback_activity_event
from gateway.clients import ClientRegistry
from schemas.avro.generate import CATALOG_DIR
from schemas.jobs import JobRecord
from schemas.kafka import Source
from schemas.kafka_lz4 import KAFKA_LZ4_BD, KAFKA_LZ4_FLG
from schemas.side_topics import ConflictNotice, DeadLetter, RejectedRequest

pytestmark = [pytest.mark.integration, pytest.mark.stack]

LZ4_MAGIC = bytes.fromhex("04224d18")
SINGLE_OBJECT_MARKER = b"\xc3\x01"  # Avro single-object encoding: marker, 8-byte CRC-64-AVRO fingerprint, body


def avro_writers(record: str) -> dict[bytes, Any]:
    """The published writer schemas of ``record``, by the fingerprint a single-object-encoded message carries."""
    writers = {}
    for path in sorted((CATALOG_DIR / record).glob("v*.avsc")):
        parsed = fastavro.parse_schema(json.loads(path.read_text()))
        writers[bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))] = parsed
    return writers


def avro_decode(writers: dict[bytes, Any], value: bytes) -> dict[str, Any]:
    assert value[:2] == SINGLE_OBJECT_MARKER, value[:10]
    writer = writers[value[2:10]]  # KeyError: a fingerprint no published schema has
    return dict(fastavro.schemaless_reader(io.BytesIO(value[10:]), writer))  # type: ignore[call-arg,arg-type]


def block_items(writers: dict[bytes, Any], value: bytes) -> list[dict[str, Any]]:
    """The records of a block message (``LearningFactBlock``, ``RawArchiveBlock``): its one array field."""
    block = avro_decode(writers, value)
    [items] = block.values()
    return list(items)


def post(url: str, token: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def facts_cover(pipeline: LocalPipeline, event_ids: set[str], timeout: float = 60.0) -> list[SeenRecord]:
    """librdkafka's view of every topic once the facts topic holds a fact of each of ``event_ids``."""
    topics, facts = pipeline.kafka.topics.all_topics(), pipeline.kafka.topics.facts
    writers = avro_writers("learning_fact_block")
    deadline = time.monotonic() + timeout
    while True:
        seen = read_with_librdkafka(pipeline.kafka.bootstrap_servers, topics)
        covered = {fact["event_id"] for r in seen if r.topic == facts for fact in block_items(writers, r.value or b"")}
        if event_ids <= covered or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def test_every_topic_reads_alike_in_the_java_client_and_librdkafka_and_decodes_to_what_was_sent(
        pipeline: LocalPipeline, kafka_distribution: KafkaDistribution, tmp_path: Path) -> None:
    if not java_tools_available():
        pytest.skip("java and javac are needed to read the topics with Kafka's Java client")
    topics = pipeline.kafka.topics
    token = access_token(pipeline.gateway_url, pipeline.client_id, pipeline.client_secret)
    tenant = ClientRegistry(pipeline.clients_file).get(pipeline.client_id).tenant  # type: ignore[union-attr]
    timeback = [timeback_activity_event(f"s{i}", xp=i) for i in range(40)]
    caliper = [generic_caliper_event(f"u{i}") for i in range(20)]
    status, first = post(f"{pipeline.gateway_url}/caliper/event", token, envelope(*timeback, *caliper))
    assert status == 200, first
    # the same event id again with other content: the worker writes a conflict notice
    again = timeback_activity_event("s0", xp=999, event_id=timeback[0]["id"])
    status, second = post(f"{pipeline.gateway_url}/caliper/event", token, envelope(again))
    assert status == 200, second
    hub = hub_grade_event()
    status, answer = post(f"{pipeline.gateway_url}/hub/v1/events", token, hub)
    assert status == 200, answer
    refused_status, refused = post(f"{pipeline.gateway_url}/caliper/event", token,
                           envelope({"id": "urn:uuid:not-an-event", "type": "NoSuchEvent"}))
    assert 400 <= refused_status < 500, refused
    # an event this worker cannot normalize (published past the gateway's checks): a dead letter
    broken = {"id": "urn:uuid:7d0f0b1e-0000-4000-8000-00000000b0b1", "type": "ActivityEvent",
              "profile": "TimebackProfile", "eventTime": "2026-01-01T10:00:00Z"}
    dead_job = publish_as_a_laxer_gateway(pipeline, tenant, pipeline.client_id, [broken])
    summary = asyncio.run(wait_for_jobs(pipeline.gateway_url, token, [first["jobId"], second["jobId"], dead_job],
                                        timeout=120))
    assert not summary.pending_jobs, summary.statuses
    sent = {Source.TIMEBACK: [e["id"] for e in [*timeback, again, broken]],
            Source.CALIPER: [e["id"] for e in caliper], Source.HUB: [hub["id"]]}
    valid_ids = {e["id"] for e in [*timeback, *caliper, hub]}

    librdkafka = facts_cover(pipeline, valid_ids)
    java = read_with_java(kafka_distribution, tmp_path, pipeline.kafka.bootstrap_servers, topics.all_topics())
    assert java == librdkafka  # the same records, keys, values and headers at the same positions
    by_topic: dict[str, list[SeenRecord]] = {name: [] for name in topics.all_topics()}
    for record in java:
        by_topic[record.topic].append(record)
    assert all(by_topic.values()), {name: len(records) for name, records in by_topic.items()}

    raw_writers, batch_writers = avro_writers("raw_event"), avro_writers("raw_event_batch")
    for source, event_ids in sent.items():
        records = by_topic[topics.raw(source)]
        # the gateway writes RawEventBatch records only, one per request and partition: fewer records than events
        assert all((r.value or b"")[2:10] in batch_writers for r in records)
        raw = [event for r in records for event in avro_decode(batch_writers, r.value or b"")["events"]]
        assert len(records) <= len(raw) and (source is not Source.TIMEBACK or len(records) < len(raw))
        assert Counter(e["event_id"] for e in raw) == Counter(event_ids)
        assert {(e["tenant"], e["source"]) for e in raw} == {(tenant, source.value)}
    fact_writers = avro_writers("learning_fact_block")
    facts = [fact for r in by_topic[topics.facts] for fact in block_items(fact_writers, r.value or b"")]
    assert {fact["event_id"] for fact in facts} == valid_ids and {fact["tenant"] for fact in facts} == {tenant}
    assert len(by_topic[topics.facts]) < len(facts)  # blocks: many facts a record
    # the raw archive's rows: one per raw event the worker decoded (the broken one too), in blocks
    archive_writers = avro_writers("raw_archive_block")
    rows = [row for r in by_topic[topics.archive] for row in block_items(archive_writers, r.value or b"")]
    assert Counter(row["event_id"] for row in rows) == Counter(
        event_id.lower() for event_ids in sent.values() for event_id in event_ids)
    assert all(row["tenant"] == tenant and row["student_keys"] is not None for row in rows)
    jobs = [JobRecord.from_json(r.value or b"") for r in by_topic[topics.jobs]]
    assert {first["jobId"], second["jobId"], dead_job} < {job.job_id for job in jobs}
    assert [job.event_ids for job in jobs if job.endpoint == "hub"] == [(hub["id"],)]
    [rejected] = [RejectedRequest.from_json(r.value or b"") for r in by_topic[topics.rejected]]
    assert (rejected.tenant, rejected.status) == (tenant, refused_status) and "NoSuchEvent" in rejected.body
    [dead] = [DeadLetter.from_json(r.value or b"") for r in by_topic[topics.dead_letters]]
    # the event alone (a lone RawEvent record), though it came in a batch record
    assert avro_decode(raw_writers, dead.original)["event_id"] == broken["id"] and dead.batch_index == 0
    [conflict] = [ConflictNotice.from_json(r.value or b"") for r in by_topic[topics.conflicts]]
    assert (conflict.event_id, conflict.tenant) == (timeback[0]["id"], tenant)

    # the batches as stored: every lz4 one is a frame with the descriptor of Kafka's own producers
    batches = [b for b in asyncio.run(record_batches(pipeline.kafka.bootstrap_servers, topics.all_topics()))
               if not b.control]
    lz4 = [b for b in batches if b.codec == "lz4"]
    assert {b.topic for b in lz4} >= {topics.raw(source) for source in Source}  # the gateway's compression
    descriptors = Counter((b.topic, b.records_start[:6]) for b in lz4)
    assert set(descriptors) == {(b.topic, LZ4_MAGIC + bytes([KAFKA_LZ4_FLG, KAFKA_LZ4_BD])) for b in lz4}, descriptors
