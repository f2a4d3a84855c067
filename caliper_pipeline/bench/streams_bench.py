"""Throughput of the streams worker: pure normalize+encode, and end to end through a real broker.

``run_bench(kafka, events)`` builds ``events`` raw events of every source (Timeback activity and time-spent,
hub grades, generic Caliper), measures the worker's decode -> normalize -> Avro-encode path without Kafka, then
publishes them to fresh topics (a unique prefix, deleted afterwards) on the broker of ``kafka``, runs one
worker in-process and times the facts arriving on the facts topic (in blocks; the worker also publishes each
event's raw-archive row, which the path without Kafka builds too).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr

from gateway.publisher import EncodedEvent, raw_batch_records
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.blocks import fact_block_codec
from schemas.caliper import CALIPER_CONTEXT_V1P2
from schemas.kafka import KafkaSettings, Source, crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings
from schemas.records import RawEvent
from streams.metrics import StreamsMetrics
from streams.processor import EventProcessor
from streams.settings import StreamsSettings
from streams.worker import build_app

CONTEXT = CALIPER_CONTEXT_V1P2
ONEROSTER = "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2"
BNCC_CODES = ("EF05MA01", "EF15LP01", "EF69AR31", "EM13LGG101", "EI03EO01")
BENCH_SETTINGS = StreamsSettings(app_id="caliper-streams-bench", worker_version="bench")
BENCH_PRIVACY = PrivacySettings(email_hash_key=SecretStr("bench-key"), student_key=SecretStr("bench-student-key"))


def _timeback(index: int, time_spent: bool) -> dict[str, Any]:
    student = f"student-{index % 500}"
    if time_spent:
        generated = {"id": f"https://bench.example/c/{index}", "type": "TimebackTimeSpentMetricsCollection",
                     "items": [{"type": "active", "value": 240 + index % 60, "subType": "reading",
                                "startDate": "2024-04-24T14:00:00Z", "endDate": "2024-04-24T14:05:00Z"},
                               {"type": "waste", "value": "12"}]}
    else:
        generated = {"id": f"https://bench.example/c/{index}", "type": "TimebackActivityMetricsCollection",
                     "items": [{"type": "xpEarned", "value": index % 120}, {"type": "totalQuestions", "value": 10},
                               {"type": "correctQuestions", "value": 7}]}
    return {
        "@context": CONTEXT, "id": f"urn:uuid:{uuid.UUID(int=index)}", "eventTime": "2024-04-24T14:12:00.000Z",
        "profile": "TimebackProfile", "type": "TimeSpentEvent" if time_spent else "ActivityEvent",
        "action": "SpentTime" if time_spent else "Completed",
        "actor": {"id": f"{ONEROSTER}/users/{student}", "type": "TimebackUser", "email": f"{student}@example.edu"},
        "object": {"id": f"{ONEROSTER}/courses/component-resources/res-1", "type": "TimebackActivityContext",
                   "subject": "Reading", "app": {"name": "PowerPath UI"}, "activity": {"name": "Answered quiz"},
                   "course": {"id": f"{ONEROSTER}/courses/course-g3", "name": "Reading G3"}},
        "generated": generated,
    }


def _hub(index: int) -> dict[str, Any]:
    return {
        "@context": CONTEXT, "id": f"urn:uuid:{uuid.UUID(int=index)}", "type": "GradeEvent",
        "profile": "GradingProfile", "actor": {"type": "SoftwareApplication", "host": "https://edtech.example.com.br"},
        "action": "Graded",
        "object": {"type": "Attempt", "assignee": {"id": f"urn:uuid:{uuid.UUID(int=index % 500)}", "type": "Person"},
                   "assignable": {"id": f"activity-{index % 40}", "type": "Activity",
                                  "skillCode": BNCC_CODES[index % len(BNCC_CODES)],
                                  "extension": {"name": "Frações", "bookLevel": "3"},
                                  "isPartOf": {"id": 6, "name": "Matemática", "type": "Subject"},
                                  "frequency_assigned": 1},
                   "dateCreated": "2022-07-19T19:40:00.000Z", "startedAtTime": "2022-07-19T19:30:00.000Z",
                   "endedAtTime": "2022-07-19T19:36:00.000Z", "lastTime": "2022-07-19T19:36:12.117",
                   "totalTime": 372, "percentReading": 25.91, "completionType": "SUCCESSFULL", "finished": "True"},
        "edApp": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
        "generated": {"type": "Score", "maxScore": 10, "scoreGiven": index % 11, "proficiencyLevel": "Adequado",
                      "trys": 1},
    }


def _caliper(index: int) -> dict[str, Any]:
    return {
        "@context": CONTEXT, "id": f"urn:uuid:{uuid.UUID(int=index)}", "type": "ViewEvent",
        "profile": "ReadingProfile", "action": "Viewed", "eventTime": "2023-08-15T14:12:00.000Z",
        "actor": {"id": f"https://example.edu/users/{index % 500}", "type": "Person"},
        "object": {"id": f"https://example.edu/books/{index % 30}", "type": "Document", "name": "Chapter 1"},
        "edApp": {"id": "https://example.edu", "type": "SoftwareApplication"},
        "session": {"id": f"https://example.edu/sessions/{index % 900}", "type": "Session"},
    }


def _student_of(payload: dict[str, Any]) -> str:
    if payload["type"] == "GradeEvent":
        return str(payload["object"]["assignee"]["id"])
    return str(payload["actor"]["id"])


def sample_raw_events(count: int, tenant: str = "bench") -> list[RawEvent]:
    """``count`` raw events cycling through the sources: Timeback (two kinds), hub, generic Caliper."""
    events = []
    for index in range(count):
        kind = index % 4
        source = (Source.TIMEBACK, Source.TIMEBACK, Source.HUB, Source.CALIPER)[kind]
        payload = (_timeback(index, False) if kind == 0 else _timeback(index, True) if kind == 1
                   else _hub(index) if kind == 2 else _caliper(index))
        events.append(RawEvent(
            tenant=tenant, client_id="bench-client", source=source.value, event_id=payload["id"],
            event_type=payload["type"], profile=payload["profile"], student_id=_student_of(payload),
            sensor="https://bench.example",
            send_time_ms=1_700_000_000_000, received_time_ms=1_700_000_000_100, envelope_index=0,
            payload=orjson.dumps(payload)))
    return events


RawMessage = tuple[str, bytes, bytes]  # topic, key, value


REQUEST_EVENTS = 100  # events of one request: the gateway writes a batch record per (request, raw topic, partition)


def raw_messages(kafka: KafkaSettings, raws: list[RawEvent]) -> list[RawMessage]:
    """The raw events as the gateway publishes them (``gateway.publisher.raw_batch_records``): every
    ``REQUEST_EVENTS`` events taken as one request, a ``RawEventBatch`` per (raw topic, partition) of it, keyed
    ``tenant|student`` of its first event."""
    codec = RawEventCodec()
    topics = {source: kafka.topics.raw(source) for source in Source}
    every = list(range(kafka.partitions))
    partitions = {source: (every, every) for source in Source}
    messages: list[RawMessage] = []
    for start in range(0, len(raws), REQUEST_EVENTS):
        events = [EncodedEvent(Source(raw.source), partition_key(raw.tenant, raw.student_id), codec.encode_record(raw))
                  for raw in raws[start:start + REQUEST_EVENTS]]
        messages += [(record.topic, record.key or b"", record.value)
                     for record in raw_batch_records(events, codec, topics, partitions, 1_000_000)]
    return messages


def bench_without_kafka(messages: list[RawMessage], topics_of: KafkaSettings) -> dict[str, Any]:
    """Decode + normalize + Avro-encode every message in this process (what one worker does per message)."""
    processor = EventProcessor(BENCH_SETTINGS, topics_of.topics, BENCH_PRIVACY, StreamsMetrics())
    started, cpu_started = time.perf_counter(), time.process_time()
    facts = dead = 0
    for offset, (topic, key, value) in enumerate(messages):
        for result in processor.process_message(topic, 0, offset, key, value):
            facts += len(result.facts)
            dead += bool(result.dead_letter_reason)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # per CPU second: what one core does, whatever else the (shared) machine runs meanwhile
    return {"facts": facts, "dead_letters": dead, "seconds": round(elapsed, 3), "cpu_seconds": round(cpu, 3),
            "facts_per_second": round(facts / elapsed, 1) if elapsed else None,
            "facts_per_cpu_second": round(facts / cpu, 1) if cpu else None}


async def _create_topics(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication_factor)
                                   for name in kafka.topics.all_topics()])
    finally:
        await admin.close()


async def _delete_topics(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.delete_topics(kafka.topics.all_topics())
    finally:
        await admin.close()


async def publish_raw(kafka: KafkaSettings, messages: list[RawMessage]) -> None:
    producer = AIOKafkaProducer(acks="all", linger_ms=5, partitioner=crc32_partitioner, **kafka.client_options())
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


FACT_BLOCKS = fact_block_codec(LearningFactCodec())


def facts_in_block(value: bytes) -> int:
    """How many facts a facts-topic block holds (read from its header and count, nothing decoded)."""
    return FACT_BLOCKS.items_of(value)[1]


Runner = tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]  # start, stop


async def time_output(kafka: KafkaSettings, topic: str, expected: int, runner: Runner,
                      timeout_s: float = 300.0, count: Callable[[bytes], int] | None = None) -> dict[str, Any]:
    """Start ``runner``, count the records arriving on ``topic`` until ``expected`` (``count``: how many records a
    message holds, one each without it), stop it: records/s from the first message to the last (steady), and
    including the start (the group's join)."""
    reader = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                              **kafka.client_options())
    await reader.start()
    start, stop = runner
    started = time.perf_counter()
    first = last = None
    cpu_first = cpu_last = 0.0
    seen = 0
    try:
        await start()
        while seen < expected and time.perf_counter() - started < timeout_s:
            batches = await reader.getmany(timeout_ms=200, max_records=10_000)
            arrived = sum(len(batch) if count is None else sum(count(m.value or b"") for m in batch)
                          for batch in batches.values())
            if arrived:
                now, cpu_now = time.perf_counter(), time.process_time()
                if first is None:
                    first, cpu_first = now, cpu_now
                last, cpu_last, seen = now, cpu_now, seen + arrived
    finally:
        await reader.stop()
        await stop()
    total = time.perf_counter() - started
    steady = (last - first) if first is not None and last is not None else 0.0
    return {"messages": seen, "expected": expected, "seconds_including_join": round(total, 2),
            "per_second_steady": round(seen / steady) if steady > 0 else None,
            "per_second_including_join": round(seen / total) if total else None,
            # this process's CPU (the runner and the counting reader, not the broker) from the first message to
            # the last: per CPU second stays comparable when the shared machine is busy
            "cpu_seconds_steady": round(cpu_last - cpu_first, 3),
            "per_cpu_second_steady": round(seen / (cpu_last - cpu_first)) if cpu_last > cpu_first else None}


async def bench_with_kafka(kafka: KafkaSettings, messages: list[RawMessage], expected_facts: int,
                           timeout_s: float = 300.0) -> dict[str, Any]:
    """Publish the raw messages, run one worker in-process and time the facts arriving."""
    await publish_raw(kafka, messages)
    app = build_app(BENCH_SETTINGS.model_copy(update={"app_id": f"bench-{uuid.uuid4().hex[:8]}"}), kafka,
                    BENCH_PRIVACY)
    timed = await time_output(kafka, kafka.topics.facts, expected_facts, (app.start, app.stop), timeout_s,
                              count=facts_in_block)
    return {"facts": timed["messages"], "seconds_including_join": timed["seconds_including_join"],
            "facts_per_second_including_join": timed["per_second_including_join"],
            "facts_per_second_steady": timed["per_second_steady"],
            "cpu_seconds_steady": timed["cpu_seconds_steady"],
            "facts_per_cpu_second_steady": timed["per_cpu_second_steady"]}


def run_bench(kafka: KafkaSettings, events: int) -> dict[str, Any]:
    """Facts per second of one worker, without Kafka and through the broker of ``kafka`` (fresh topics)."""
    fresh = kafka.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:10]}."})
    messages = raw_messages(fresh, sample_raw_events(events))
    report: dict[str, Any] = {"events": events, "workers": 1,
                              "without_kafka": bench_without_kafka(messages, fresh)}

    async def through_kafka() -> dict[str, Any]:
        await _create_topics(fresh)
        try:
            return await bench_with_kafka(fresh, messages, report["without_kafka"]["facts"])
        finally:
            await _delete_topics(fresh)

    report["with_kafka"] = asyncio.run(through_kafka())
    return report
