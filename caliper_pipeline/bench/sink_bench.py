"""``run_bench``: produce N encoded facts to a fresh topic on the real broker (in blocks, as the streams worker
publishes them: ``streams.publishing.Blocks`` over runs of ``BLOCK_EVENTS`` facts), load them with ``SinkLoader``
and report rows/s end to end, plus the rates of the insert alone (ClickHouse decoding an Avro container, the
loader's path; and the Python path: fastavro decoding, Arrow conversion, Arrow insert)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.avro.codec import LearningFactCodec
from schemas.blocks import fact_block_codec
from schemas.kafka import KafkaSettings, crc32_partitioner, partition_key
from schemas.kafka_lz4 import use_kafka_lz4_frames
from schemas.record_batches import OutboundRecord
from schemas.records import LearningFact, fact_id_for
from sinks.avro_container import group_by_writer
from sinks.batches import facts_target
from sinks.clickhouse import connect
from sinks.loader import SinkLoader
from sinks.migrations import Layout, apply_migrations
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.tables import FACT_INPUT_TABLE, facts_to_arrow
from sinks.writer import INSERT_SETTINGS
from streams.publishing import Blocks
from streams.settings import StreamsSettings

BASE_TIME_MS = 1_700_006_400_000
BLOCK_EVENTS = 500  # facts per produce step (the worker's default batch_max_events)
PYTHON_PATH_SAMPLE = 20_000  # rows the Python-path rates are measured on (it is ~10x slower)


def bench_fact(number: int, run: str) -> LearningFact:
    event_id = f"{run}-{number}"
    return LearningFact(
        fact_id=fact_id_for("bench", event_id), fact_index=0, content_hash=f"{number:032x}", tenant="bench",
        client_id="bench-client", source="hub", event_id=event_id, event_type="GradeEvent",
        profile="GradingProfile", action="Graded", event_time_ms=BASE_TIME_MS + number,
        send_time_ms=BASE_TIME_MS + number, received_time_ms=BASE_TIME_MS + number + 3,
        student_id=f"student-{number % 5000}", course_id=f"course-{number % 40}", subject_name="Math",
        bncc_code="EF05MA01", xp_earned=float(number % 7), total_questions=5.0, correct_questions=3.0,
        seconds_active=30.0, score_given=3.0, max_score=5.0, score_ratio=0.6, attempts=1)


def as_blocks(topic: str, partitions: int, singles: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The facts' messages as the streams worker publishes them: blocks of each run of ``BLOCK_EVENTS`` facts."""
    blocks = Blocks({topic: fact_block_codec(LearningFactCodec())}, StreamsSettings().block_max_bytes)
    messages: list[tuple[bytes, bytes]] = []
    for start in range(0, len(singles), BLOCK_EVENTS):
        records = [OutboundRecord(topic, key, value) for key, value in singles[start:start + BLOCK_EVENTS]]
        messages += [(record.key or b"", record.value) for record in blocks.assemble(records, {topic: partitions})]
    return messages


async def _produce(kafka: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, kafka.partitions, kafka.replication_factor)])
    finally:
        await admin.close()
    use_kafka_lz4_frames()
    producer = AIOKafkaProducer(acks="all", linger_ms=20, max_batch_size=1 << 20, compression_type="lz4",
                                partitioner=crc32_partitioner, **kafka.client_options())
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run_bench(kafka: KafkaSettings, clickhouse: ClickHouseSettings, rows: int) -> dict[str, Any]:
    """Load ``rows`` facts through Kafka into ClickHouse; rates in rows per second."""
    run = uuid.uuid4().hex[:8]
    codec = LearningFactCodec()
    facts = [bench_fact(i, run) for i in range(rows)]
    topic = f"{kafka.topic_prefix}bench.{run}"
    singles = [(partition_key(f.tenant, f.student_id), codec.encode_record(f)) for f in facts]
    messages = as_blocks(topic, kafka.partitions, singles)
    started = time.perf_counter()
    await _produce(kafka, topic, messages)
    produce_seconds = time.perf_counter() - started

    target = await asyncio.to_thread(connect, clickhouse, create_database=True)
    try:
        await asyncio.to_thread(apply_migrations, target, Layout(clickhouse.database, clickhouse.cluster))
        loaded = await _load(kafka, target, topic, rows, run)
        # the group's join (the broker holds a new group's first rebalance for a few seconds) is not the sink's
        assigned_seconds, load_seconds = loaded.assigned_seconds, loaded.total_seconds

        values = [value for _, value in messages]
        started = time.perf_counter()
        (group,), _ = group_by_writer(range(len(values)), values, facts_target(codec).read)
        container = group.container()
        container_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.to_thread(target.insert_avro, FACT_INPUT_TABLE, container,
                                {**INSERT_SETTINGS, "insert_deduplication_token": f"bench:{run}:avro-insert-only"})
        avro_insert_seconds = time.perf_counter() - started

        sample = [value for _, value in singles[:PYTHON_PATH_SAMPLE]]
        started = time.perf_counter()
        decoded = [codec.decode(value) for value in sample]
        decode_seconds = time.perf_counter() - started
        started = time.perf_counter()
        block = facts_to_arrow(decoded)
        arrow_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.to_thread(target.insert_arrow, FACT_INPUT_TABLE, block,
                                {**INSERT_SETTINGS, "insert_deduplication_token": f"bench:{run}:arrow-insert-only"})
        arrow_insert_seconds = time.perf_counter() - started
    finally:
        await asyncio.to_thread(target.close)
    return {
        "rows": rows,
        "messages": len(messages),
        "produce_rows_per_s": round(rows / produce_seconds),
        "end_to_end_rows_per_s": round(rows / assigned_seconds),
        "end_to_end_seconds": round(assigned_seconds, 2),
        "with_group_join_rows_per_s": round(rows / load_seconds),
        "group_join_seconds": round(load_seconds - assigned_seconds, 2),
        "container_rows_per_s": round(rows / container_seconds),
        "insert_only_rows_per_s": round(rows / avro_insert_seconds),
        "python_decode_rows_per_s": round(len(sample) / decode_seconds),
        "python_to_arrow_rows_per_s": round(len(sample) / arrow_seconds),
        "python_arrow_insert_only_rows_per_s": round(len(sample) / arrow_insert_seconds),
        "batches": loaded.batches,
    }


@dataclass(frozen=True)
class Loaded:
    assigned_seconds: float  # from the moment the group gave the loader its partitions
    total_seconds: float  # including the group's join
    batches: int


async def _load(kafka: KafkaSettings, target: Any, topic: str, rows: int, run: str) -> Loaded:
    """Load ``rows`` facts of ``topic`` with a SinkLoader of its own group."""
    loader = SinkLoader(SinkSettings(group_id=f"bench-{run}-{topic}"), kafka, target,
                        targets={topic: facts_target()})
    started = time.perf_counter()
    task = asyncio.create_task(loader.run())
    try:
        while loader.rows_written < rows:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        return Loaded(time.monotonic() - (loader.assigned_at or time.monotonic()), time.perf_counter() - started,
                      int(loader.metrics.batches._value.get()))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run_heavy_query_bench(kafka: KafkaSettings, clickhouse: ClickHouseSettings, rows: int,
                                query_seconds: float = 60.0) -> dict[str, Any]:
    """The load rate alone, then while an analyst query runs for ``query_seconds`` (through the sink's analyst
    query pool, as ``POST /sql`` runs it): loading must not wait behind a query."""
    from sinks.analysts import OPERATOR
    from sinks.queries import AnalystQueries
    from sinks.settings import QueryLimits

    run = uuid.uuid4().hex[:8]
    codec = LearningFactCodec()
    topics = [f"{kafka.topic_prefix}bench.{run}.{name}" for name in ("alone", "with-query")]
    for index, topic in enumerate(topics):
        facts = [bench_fact(index * rows + i, run) for i in range(rows)]
        await _produce(kafka, topic, as_blocks(topic, kafka.partitions, [
            (partition_key(f.tenant, f.student_id), codec.encode_record(f)) for f in facts]))
    target = await asyncio.to_thread(connect, clickhouse, create_database=True)
    queries = AnalystQueries(clickhouse, QueryLimits(max_execution_seconds=query_seconds))
    try:
        await asyncio.to_thread(apply_migrations, target, Layout(clickhouse.database, clickhouse.cluster))
        alone = (await _load(kafka, target, topics[0], rows, run)).assigned_seconds
        heavy = asyncio.create_task(queries.run(
            "SELECT count() FROM numbers(1e13) WHERE sipHash64(number) % 1000003 = 1", "TabSeparated",
            analyst=OPERATOR))
        await asyncio.sleep(1.0)  # the query is running
        with_query = (await _load(kafka, target, topics[1], rows, run)).assigned_seconds
        query_still_running = not heavy.done()
        heavy.cancel()
        await asyncio.gather(heavy, return_exceptions=True)
    finally:
        await asyncio.to_thread(queries.close)
        await asyncio.to_thread(target.close)
    return {
        "rows": rows,
        "load_rows_per_s_alone": round(rows / alone),
        "load_rows_per_s_during_heavy_query": round(rows / with_query),
        "ratio": round(alone / with_query, 2),
        "query_still_running_when_the_load_ended": query_still_running,
        "query_seconds_limit": query_seconds,
    }
