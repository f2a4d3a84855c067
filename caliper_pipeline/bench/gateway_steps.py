"""``caliper-pipeline bench gateway-steps``: the CPU cost of each step the gateway takes per event, without HTTP
or Kafka, each optimized step next to what it replaced (the figures behind the comments of ``gateway`` and
``schemas`` that say why a step is written the way it is).

Measured on a 100-event Timeback envelope with ``time.process_time`` (CPU time of this process, so that other
processes on the machine disturb the figures less), best of several rounds.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import fastavro
import orjson
from aiokafka import codec as kafka_codec
from aiokafka.producer.message_accumulator import BatchBuilder

from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from gateway.ingest import encoded_envelope_events
from gateway.publisher import LZ4_LEVEL, raw_batch_records
from gateway.tokens import Caller
from schemas.avro.codec import RawEventCodec
from schemas.caliper import check_envelope
from schemas.caliper.envelope import _walk_envelope
from schemas.caliper.scalars import Walk
from schemas.kafka import KafkaSettings, Source
from schemas.kafka_lz4 import kafka_lz4_encode, use_kafka_lz4_frames
from schemas.limits import DEFAULT_LIMITS, depth_problem
from schemas.record_batches import OutboundRecord
from schemas.records import RAW_EVENT_FIELDS

EVENTS = 100
_COMPRESSION = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # aiokafka's attribute codes


def _per_event_us(step: Callable[[], object], rounds: int = 7, seconds: float = 0.3) -> float:
    """CPU microseconds per event of ``step`` (which handles ``EVENTS`` events), best of ``rounds``."""
    step()
    repeat = 1
    while True:  # calibrate: enough repeats to last ``seconds / rounds``
        started = time.process_time()
        for _ in range(repeat):
            step()
        if time.process_time() - started > seconds / rounds or repeat > 10_000:
            break
        repeat *= 2
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            step()
        best = min(best, (time.process_time() - started) / repeat)
    return best / EVENTS * 1e6


def _batch(compression: str, values: list[tuple[bytes, bytes]], lz4_level: int = 9) -> Callable[[], object]:
    def build() -> bytes:
        use_kafka_lz4_frames(lz4_level)
        batch = BatchBuilder(512 * 1024, _COMPRESSION[compression], is_transactional=True)
        for key, value in values:
            batch.append(timestamp=None, key=key, value=value)
        batch._set_producer_state(1, 0, 0)
        return batch._build()

    return build


def run_gateway_steps_bench() -> dict[str, Any]:
    payload = envelope(*[timeback_activity_event(f"student-{i}", xp=i) for i in range(EVENTS)])
    body = orjson.dumps(payload)
    parsed = orjson.loads(body)
    caller = Caller("bench-client", "school-a", frozenset(), None, "America/Sao_Paulo")
    codec = RawEventCodec()
    raw_events = [codec.decode_record(item.value)
                  for item in encoded_envelope_events(parsed, caller, 1_764_519_183_052, codec)]

    def engine() -> None:
        _walk_envelope(parsed, Walk(DEFAULT_LIMITS, False))

    def fastavro_encode() -> None:
        for event in raw_events:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, codec.reader_schema, {n: getattr(event, n) for n in RAW_EVENT_FIELDS})

    encoded = encoded_envelope_events(parsed, caller, 1, codec)
    every = list(range(KafkaSettings().partitions))
    partitions = {source: (every, every) for source in Source}
    topics = {source: KafkaSettings().topics.raw(source) for source in Source}

    def batch_records() -> list[OutboundRecord]:
        return raw_batch_records(encoded, codec, topics, partitions, 1_000_000)

    # what the gateway hands the producer: a batch record per partition of the request
    messages = [(record.key or b"", record.value) for record in batch_records()]
    joined = b"".join(value for _, value in messages)
    steps: dict[str, Callable[[], object]] = {
        "parse JSON (orjson)": lambda: orjson.loads(body),
        "nesting depth check": lambda: depth_problem(parsed, DEFAULT_LIMITS),
        "validate: the engine alone (before)": engine,
        "validate: check_envelope (fast path)": lambda: check_envelope(parsed),
        "raw events: fastavro encode alone": fastavro_encode,
        "raw events: encoded_envelope_events (flat writer)": lambda: encoded_envelope_events(parsed, caller, 1, codec),
        f"raw batch records, {len(every)} partitions (raw_batch_records)": batch_records,
        "record batch, lz4 level 9 (the Java producer's)": _batch("lz4", messages),
        f"record batch, lz4 level {LZ4_LEVEL} (the gateway's)": _batch("lz4", messages, LZ4_LEVEL),
        "record batch, zstd (level 3)": _batch("zstd", messages),
        "record batch, gzip (level 9)": _batch("gzip", messages),
        "record batch, none": _batch("none", messages),
        "lz4 level 9 alone": lambda: kafka_lz4_encode(joined),
        f"lz4 level {LZ4_LEVEL} alone": lambda: kafka_lz4_encode(joined, level=LZ4_LEVEL),
        f"lz4 level {LZ4_LEVEL} alone, aiokafka's frames (cramjam)": lambda: kafka_codec.lz4_encode(joined,
                                                                                                 level=LZ4_LEVEL),
        "zstd level 3 alone": lambda: kafka_codec.zstd_encode(joined),
    }
    figures = {name: _per_event_us(step) for name, step in steps.items()}
    sizes = {level: len(_batch("lz4", messages, level)()) for level in (9, LZ4_LEVEL)}  # type: ignore[arg-type]
    sizes_by_codec = {name: len(_batch(name, messages)()) for name in ("zstd", "gzip", "none")}  # type: ignore[arg-type]
    use_kafka_lz4_frames(LZ4_LEVEL)  # leave the gateway's level in place
    print(f"gateway steps, CPU microseconds per event ({EVENTS}-event Timeback envelope, {len(body):,} bytes):")
    for name, micros in figures.items():
        print(f"  {name:<52} {micros:7.2f} us")
    print(f"  lz4 batch bytes: level 9 {sizes[9]:,}, level {LZ4_LEVEL} {sizes[LZ4_LEVEL]:,} "
          f"(records {len(joined):,} bytes); " + ", ".join(f"{k} {v:,}" for k, v in sizes_by_codec.items()))
    return {"us_per_event": figures, "envelope_bytes": len(body), "lz4_batch_bytes": sizes,
            "batch_bytes": sizes_by_codec}
