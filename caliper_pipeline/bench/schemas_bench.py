"""Encode + decode throughput of a typical learning fact, and the CPU per event of the codec calls each stage makes
(``caliper-pipeline bench schemas``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.records import LearningFact, RawEvent, fact_id_for
from schemas.version import PIPELINE_VERSION


def typical_fact() -> LearningFact:
    return LearningFact(
        fact_id=fact_id_for("school-a", "urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594"), fact_index=0,
        content_hash="5f2b8c0e9d3a4b1c8e7f6a5b4c3d2e1f", tenant="school-a", client_id="school-a-7f3c",
        source="timeback",
        event_id="urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594", event_type="ActivityEvent",
        profile="TimebackProfile", action="Completed", event_time_ms=1_713_967_920_000,
        send_time_ms=1_713_967_921_000, received_time_ms=1_713_967_921_250, sensor="https://alpharead.alpha.school",
        student_id="https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/8d1c",
        student_email_hash="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        actor_type="TimebackUser", object_id="https://api.alpha-1edtech.ai/courses/component-resources/r1",
        object_type="TimebackActivityContext", activity_name="Answered quiz", course_name="Reading G3",
        course_id="https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/courses/c1", app_name="PowerPath UI",
        subject_name="Reading", xp_earned=100.0, total_questions=10.0, correct_questions=8.0, mastered_units=1.0,
        normalizer_version=f"caliper-streams/{PIPELINE_VERSION}", extensions_json='{"generated":{"id":"https://your-app-url.com/1"}}',
    )


def distinct_records(count: int) -> list[dict[str, object]]:
    """``count`` copies of the typical fact, each with its own ids, times and student: the compiled encoder caches
    the encodings of repeated strings and longs (``schemas.avro.coder``), so encoding one record over and over
    would measure the cache, not what a worker pays for facts whose ids are all new."""
    template = typical_fact().to_record()
    records = []
    for number in range(count):
        record = dict(template)
        event_id = f"urn:uuid:{number:08x}-f8ed-4c18-bb3a-dfe51b2cc594"
        record.update(fact_id=fact_id_for("school-a", event_id), event_id=event_id,
                      content_hash=f"{number:032x}", student_id=f"{template['student_id']}-{number}",
                      event_time_ms=1_713_967_920_000 + number, send_time_ms=1_713_967_921_000 + number,
                      received_time_ms=1_713_967_921_250 + number)
        records.append(record)
    return records


def run_codec_bench(count: int = 100_000) -> dict[str, Any]:
    codec = LearningFactCodec()
    records = distinct_records(count)
    started = time.perf_counter()
    messages = [codec.encode(record) for record in records]
    encode_seconds = time.perf_counter() - started
    message = messages[0]
    record = records[0]
    started = time.perf_counter()
    for each in messages:
        codec.decode(each)
    decode_seconds = time.perf_counter() - started
    figures: dict[str, Any] = {
        "facts": count, "message_bytes": len(message),
        "encode_per_s": count / encode_seconds, "decode_per_s": count / decode_seconds,
        "encode_plus_decode_per_s": count / (encode_seconds + decode_seconds),
    }
    print(f"learning fact ({len(message)} bytes, {len(record)} fields): encode {figures['encode_per_s']:,.0f}/s, "
          f"decode {figures['decode_per_s']:,.0f}/s, encode+decode {figures['encode_plus_decode_per_s']:,.0f}/s "
          "per core (target >= 40,000 encode+decode/s)")
    figures["cpu_us_per_event"] = stage_paths(records[:count // 10 or 1])
    return figures


def _cpu_us(step: Callable[[], object], items: int, repeat: int = 5) -> float:
    """CPU microseconds per item of ``step`` (the least of ``repeat`` runs: the others were interrupted)."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return round(min(times) / items * 1e6, 2)


def stage_paths(records: list[dict[str, object]], request_events: int = 10) -> dict[str, float]:
    """The codec calls of each stage, CPU per event: the gateway's bound writer (``writer_for``, once per request
    of ``request_events`` events), the worker's decode of a raw event and encode of a fact."""
    raw_codec, fact_codec = RawEventCodec(), LearningFactCodec()
    facts = [LearningFact(**record) for record in records]  # type: ignore[arg-type]
    raws = [RawEvent(tenant="school-a", client_id="school-a-7f3c", source="timeback", event_id=str(record["event_id"]),
                     event_type="ActivityEvent", profile="TimebackProfile", student_id=str(record["student_id"]),
                     sensor="https://alpharead.alpha.school", send_time_ms=1_713_967_921_000,
                     received_time_ms=1_713_967_921_250, envelope_index=index % request_events,
                     payload=b'{"id": "%d", "type": "ActivityEvent"}' % index + b" " * 900)
            for index, record in enumerate(records)]
    shared = ("tenant", "client_id", "sensor", "send_time_ms", "received_time_ms", "tenant_timezone", "job_id",
              "extensions_policy")
    variable = tuple(name for name in raw_codec._fields if name not in shared)
    rows = [tuple(getattr(raw, name) for name in variable) for raw in raws]

    def gateway() -> None:
        for start in range(0, len(raws), request_events):
            write = raw_codec.writer_for(variable, **{name: getattr(raws[start], name) for name in shared})
            for row in rows[start:start + request_events]:
                write(*row)

    messages = [raw_codec.encode_record(raw) for raw in raws]
    figures = {"gateway: raw event writer_for + write": _cpu_us(gateway, len(raws)),
               "worker: raw event decode_record": _cpu_us(lambda: [raw_codec.decode_record(m) for m in messages],
                                                          len(raws)),
               "worker: fact encode_record": _cpu_us(lambda: [fact_codec.encode_record(f) for f in facts], len(facts))}
    for name, micros in figures.items():
        print(f"  {name:<40} {micros:6.2f} us CPU/event")
    return figures
