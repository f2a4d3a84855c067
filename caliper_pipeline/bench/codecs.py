"""``bench codecs``: the gateway's publishing CPU per event for each record-batch compression, on the real broker.

For each of none, lz4 (the Java producer's frames, at the gateway's level: ``schemas.kafka_lz4``), lz4 as aiokafka
frames it (cramjam: what the gateway wrote before), zstd (level 3) and gzip: a gateway ``EventPublisher`` with that
compression (transactional producers, acks=all, topics of its own) publishes ``count`` raw events, 100-event
envelopes (one Timeback envelope, encoded once), ``concurrency`` at a time. It reports this process's CPU time per
event (``time.process_time``: the encoding is done once beforehand, so this is Kafka client + compression), the
wall time, and the bytes of one envelope's record batch. No HTTP: the gateway's request handling costs the same
whatever the codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiokafka.codec
import orjson
from aiokafka.producer.message_accumulator import BatchBuilder
from pydantic import SecretStr

from caliper_pipeline.bench.stages import bench_kafka
from caliper_pipeline.ops.topics import ensure_topics
from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from caliper_pipeline.settings import Settings
from gateway.ingest import encoded_envelope_events
from gateway.publisher import LZ4_LEVEL, EncodedEvent, EventPublisher, raw_batch_records
from gateway.settings import GatewaySettings
from gateway.tokens import Caller
from schemas.avro.codec import RawEventCodec
from schemas.kafka import KafkaSettings, Source
from schemas.kafka_lz4 import BATCH_BUILDER_MODULES, use_kafka_lz4_frames

ENVELOPE_EVENTS = 100
CODES = {"none": 0, "gzip": 1, "lz4": 3, "zstd": 4}  # a batch's attribute codes (aiokafka's BatchBuilder)
# name shown -> (compression_type, lz4 frames: the Java producer's or aiokafka's own)
VARIANTS = {"none": ("none", True), "lz4": ("lz4", True), "lz4, aiokafka's frames": ("lz4", False),
            "zstd": ("zstd", True), "gzip": ("gzip", True)}


def _aiokafka_lz4_frames() -> None:
    """aiokafka's own lz4 encoder (cramjam) at the gateway's level in the batch builders, in place of
    ``use_kafka_lz4_frames`` (which ``EventPublisher.start`` applies)."""
    encode = functools.partial(aiokafka.codec.lz4_encode, level=LZ4_LEVEL)
    for name in BATCH_BUILDER_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name).lz4_encode = encode  # type: ignore[attr-defined]


def _batch_bytes(compression: str, events: list[EncodedEvent]) -> int:
    """Bytes of the request's raw records (its batch records, ``raw_batch_records``) in one record batch."""
    every = list(range(KafkaSettings().partitions))
    records = raw_batch_records(events, RawEventCodec(), {source: str(source) for source in Source},
                                {source: (every, every) for source in Source}, 1_000_000)
    batch = BatchBuilder(512 * 1024, CODES[compression], is_transactional=True)
    for record in records:
        batch.append(timestamp=None, key=record.key, value=record.value)
    batch._set_producer_state(1, 0, 0)
    return len(batch._build())


async def _publish_all(kafka: KafkaSettings, compression: str, kafka_frames: bool, events: list[EncodedEvent],
                       envelopes: int, concurrency: int) -> tuple[float, float, int]:
    gateway = GatewaySettings(jwt_secret=SecretStr(secrets.token_urlsafe(32)), compression=None if compression == "none"
                              else compression, transactional_id=f"bench-codecs-{secrets.token_hex(4)}")
    publisher = EventPublisher(kafka, gateway)
    await publisher.start()
    if not kafka_frames:
        _aiokafka_lz4_frames()
    try:
        batch_bytes = _batch_bytes(compression, events)
        await publisher.publish(events)  # warm: metadata, the producers' first transaction
        remaining = envelopes

        async def sender() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await publisher.publish(events)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return time.process_time() - cpu, time.perf_counter() - wall, batch_bytes
    finally:
        await publisher.stop()


def run_codecs_bench(settings: Settings, count: int, concurrency: int = 8) -> dict[str, Any]:
    body = orjson.loads(orjson.dumps(envelope(*[timeback_activity_event(f"student-{i}", xp=i)
                                                for i in range(ENVELOPE_EVENTS)])))
    caller = Caller("bench-client", "school-a", frozenset(), None, "America/Sao_Paulo")
    events = encoded_envelope_events(body, caller, 1_764_519_183_052, RawEventCodec())
    envelopes = max(1, count // ENVELOPE_EVENTS)
    figures: dict[str, Any] = {}
    with bench_kafka(settings, Path(tempfile.mkdtemp(prefix="bench-codecs-"))) as kafka:
        for name, (compression, kafka_frames) in VARIANTS.items():
            topics_of_run = kafka.model_copy(update={"topic_prefix": f"bench-codecs-{secrets.token_hex(3)}."})
            asyncio.run(ensure_topics(topics_of_run))
            cpu, wall, batch_bytes = asyncio.run(_publish_all(topics_of_run, compression, kafka_frames, events,
                                                              envelopes, concurrency))
            published = envelopes * ENVELOPE_EVENTS
            figures[name] = {"cpu_us_per_event": round(cpu / published * 1e6, 2),
                             "events_per_second": round(published / wall), "batch_bytes": batch_bytes}
            print(f"  {name:<24} {figures[name]['cpu_us_per_event']:7.2f} us CPU/event "
                  f"{figures[name]['events_per_second']:>9,} events/s  100-event batch "
                  f"{figures[name]['batch_bytes']:,} bytes", flush=True)
    use_kafka_lz4_frames(LZ4_LEVEL)
    return {"events": envelopes * ENVELOPE_EVENTS, "concurrency": concurrency, "codecs": figures}
