"""``caliper-pipeline bench ceilings``: every stage next to its bare baseline, on one broker, in one run.

The machine is shared and noisy, so a stage's figure means little alone; its ratio to a baseline measured minutes
apart on the same broker says how close the stage runs to what its framework allows:

- **gateway**: ``bench gateway``'s own measurement (``caliper_pipeline.bench.gateway_bench``): single-event requests
  against the bare aiohttp -> aiokafka forwarder (``bare_forwarder``);
- **streams**: our worker (``streams.worker.build_app``) against a bare faust agent with the same app settings and
  batching that forwards each raw message's bytes unchanged, and against a plain aiokafka loop (getmany -> send
  -> await the acks -> commit). All three produce the same way, whole record batches per partition
  (``streams.publishing``): the baselines differ from the worker only in what it does per event. Each reads the
  same raw topics, published once, with a group of its own, and is timed by the messages arriving on its output
  topic (from the first to the last: a group's join is excluded);
- **sink**: our loader (``SinkLoader``: recorded offset ranges, deduplicated inserts, commits) against consume +
  Arrow insert: a plain aiokafka loop inserting each fetched range as a slice of an Arrow table built beforehand
  from the same facts (no decoding: the ceiling of fetching and inserting) and committing.

Ratios are ours / bare, so 1.0 means the stage costs nothing above its baseline.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from caliper_pipeline.bench import sink_bench, streams_bench
from caliper_pipeline.bench.stages import bench_kafka
from caliper_pipeline.bench.streams_bench import Runner, time_output
from caliper_pipeline.settings import Settings
from schemas.avro.codec import LearningFactCodec
from schemas.kafka import KafkaSettings, crc32_partitioner
from schemas.record_batches import OutboundRecord
from sinks.clickhouse import connect
from sinks.migrations import Layout, apply_migrations
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.tables import FACT_INPUT_TABLE, fact_records, facts_to_arrow
from sinks.writer import INSERT_SETTINGS
from streams.publishing import Blocks, KafkaPublisher, send_in_batches
from streams.worker import build_app, new_app

STAGES = ("gateway", "streams", "sink")


async def _create(kafka: KafkaSettings, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication_factor) for name in topics])
    finally:
        await admin.close()


async def _delete(kafka: KafkaSettings, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


# --- streams ------------------------------------------------------------------------------------------------


def bare_faust_app(kafka: KafkaSettings, output: str) -> faust.App:
    """The worker's app settings and batching, with an agent that forwards each raw message's bytes unchanged."""
    settings = streams_bench.BENCH_SETTINGS.model_copy(update={"app_id": f"bench-bare-{uuid.uuid4().hex[:8]}"})
    app = new_app(settings, kafka)
    raw_topic = app.topic(*kafka.topics.raw_topics, key_serializer="raw", value_serializer="raw")

    publish = KafkaPublisher(app, Blocks({}, settings.block_max_bytes))  # no block topic: records as they are

    @app.agent(raw_topic, name="bare_pass_through", concurrency=1)
    async def pass_through(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
        batches = cast(faust.Stream, stream).take_events(settings.batch_max_events, within=settings.batch_within_s)
        async for events in batches:
            await publish([OutboundRecord(output, event.message.key, event.message.value or b"") for event in events])
            yield len(events)

    return app


def faust_runner(app: faust.App) -> Runner:
    return app.start, app.stop


def aiokafka_loop_runner(kafka: KafkaSettings, output: str, batch: int) -> Runner:
    """getmany -> send the records (record batches per partition) -> await the acks -> commit, until stopped."""
    consumer = AIOKafkaConsumer(*kafka.topics.raw_topics, group_id=f"bench-loop-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed", **kafka.client_options())
    producer = AIOKafkaProducer(acks="all", partitioner=crc32_partitioner, **kafka.client_options())
    task: asyncio.Task[None] | None = None

    async def loop() -> None:
        while True:
            fetched = await consumer.getmany(timeout_ms=100, max_records=batch)
            if not fetched:
                continue
            records = [OutboundRecord(output, message.key, message.value or b"")
                       for messages in fetched.values() for message in messages]
            await asyncio.gather(*await send_in_batches(producer, records, crc32_partitioner))
            await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in fetched.items() if messages})

    async def start() -> None:
        nonlocal task
        await producer.start()
        await consumer.start()
        task = asyncio.create_task(loop())

    async def stop() -> None:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()

    return start, stop


async def streams_ceilings(kafka: KafkaSettings, events: int) -> dict[str, Any]:
    fresh = kafka.model_copy(update={"topic_prefix": f"ceil-{uuid.uuid4().hex[:10]}."})
    messages = streams_bench.raw_messages(fresh, streams_bench.sample_raw_events(events))
    facts = streams_bench.bench_without_kafka(messages, fresh)["facts"]
    outputs = {"faust": f"{fresh.topic_prefix}bare-faust", "loop": f"{fresh.topic_prefix}bare-loop"}
    topics = [*fresh.topics.all_topics(), *outputs.values()]
    await _create(fresh, topics)
    try:
        await streams_bench.publish_raw(fresh, messages)
        loop = await time_output(fresh, outputs["loop"], events, aiokafka_loop_runner(
            fresh, outputs["loop"], streams_bench.BENCH_SETTINGS.batch_max_events))
        bare = await time_output(fresh, outputs["faust"], events, faust_runner(bare_faust_app(fresh, outputs["faust"])))
        worker = build_app(streams_bench.BENCH_SETTINGS.model_copy(
            update={"app_id": f"bench-{uuid.uuid4().hex[:8]}"}), fresh, streams_bench.BENCH_PRIVACY)
        ours = await time_output(fresh, fresh.topics.facts, facts, faust_runner(worker),
                                 count=streams_bench.facts_in_block)
    finally:
        await _delete(fresh, topics)
    # facts per raw event is ~1 here; the ratios compare raw events handled per second
    ours_events = ours["per_second_steady"] * events / facts if ours["per_second_steady"] and facts else None
    return {"events": events, "facts": facts, "ours": ours, "bare_faust": bare, "aiokafka_loop": loop,
            "ours_events_per_s": round(ours_events) if ours_events else None,
            "ratio_to_bare_faust": _ratio(ours_events, bare["per_second_steady"]),
            "ratio_to_aiokafka_loop": _ratio(ours_events, loop["per_second_steady"])}


# --- sink ---------------------------------------------------------------------------------------------------


class _Assigned(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.at: float | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.at = self.at or time.monotonic()


async def bare_sink_rate(kafka: KafkaSettings, target: Any, topic: str, block: Any, rows: int,
                         batch_rows: int) -> float:
    """Rows/s of a plain loop, from assignment: getmany (up to ``batch_rows``) -> one Arrow insert of that many
    rows (a slice of ``block``, built beforehand: no decoding) -> commit."""
    consumer = AIOKafkaConsumer(group_id=f"bench-bare-sink-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
                                **kafka.client_options())
    assigned = _Assigned()
    consumer.subscribe([topic], listener=assigned)
    await consumer.start()
    loaded = 0
    try:
        while loaded < rows:
            fetched = await consumer.getmany(timeout_ms=100, max_records=batch_rows)
            count = min(sum(len(messages) for messages in fetched.values()), rows - loaded)
            if not count:
                continue
            token = f"ceiling:{topic}:{loaded}"
            await asyncio.to_thread(target.insert_arrow, FACT_INPUT_TABLE, block.slice(loaded, count),
                                    {**INSERT_SETTINGS, "insert_deduplication_token": token})
            await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in fetched.items() if messages})
            loaded += count
        return rows / (time.monotonic() - (assigned.at or time.monotonic()))
    finally:
        await consumer.stop()


async def sink_ceilings(kafka: KafkaSettings, clickhouse: ClickHouseSettings, rows: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    codec = LearningFactCodec()
    facts = [sink_bench.bench_fact(i, run) for i in range(rows)]
    topic = f"{kafka.topic_prefix}ceil.{run}"
    await sink_bench._produce(kafka, topic, [(f.student_id.encode(), codec.encode_record(f)) for f in facts])
    block = facts_to_arrow(fact_records(facts))
    target = await asyncio.to_thread(connect, clickhouse, create_database=True)
    try:
        await asyncio.to_thread(apply_migrations, target, Layout(clickhouse.database, clickhouse.cluster))
        bare = await bare_sink_rate(kafka, target, topic, block, rows, SinkSettings().batch_rows)
        loaded = await sink_bench._load(kafka, target, topic, rows, run)
        ours = rows / loaded.assigned_seconds
    finally:
        await asyncio.to_thread(target.close)
        await _delete(kafka, [topic])
    return {"rows": rows, "ours_rows_per_s": round(ours), "bare_rows_per_s": round(bare),
            "ratio_to_bare": _ratio(ours, bare), "batches": loaded.batches}


# --- the run ------------------------------------------------------------------------------------------------


def _ratio(ours: float | None, bare: float | None) -> float | None:
    return round(ours / bare, 2) if ours and bare else None


def run_ceilings_bench(settings: Settings, *, events: int, rows: int, seconds: float, concurrency: int,
                       stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """The chosen stages and their baselines on one broker; the figures, and a table printed as they come."""
    work = Path(tempfile.mkdtemp(prefix="bench-ceilings-"))
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with bench_kafka(settings, work) as kafka:
        if "gateway" in stages:
            from caliper_pipeline.bench.gateway_bench import measure_gateway

            report["gateway"] = measure_gateway(
                kafka.model_copy(update={"topic_prefix": f"ceilgw{int(time.time())}."}), work, seconds, concurrency)
        if "streams" in stages:
            report["streams"] = asyncio.run(streams_ceilings(kafka, events))
        if "sink" in stages:
            clickhouse = settings.clickhouse
            if clickhouse.embedded:  # never the stack's own chDB directory: a running sink holds its lock
                clickhouse = clickhouse.model_copy(update={"data_path": work / "chdb"})
            report["sink"] = asyncio.run(sink_ceilings(kafka, clickhouse, rows))
    report["table"] = table_rows(report)
    print(format_table(report["table"]), flush=True)
    return report


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """``stage | ours | bare ceiling | ratio`` lines of the stages measured."""
    lines: list[list[str]] = []
    gateway = report.get("gateway")
    if gateway:
        lines.append(["gateway, 1-event requests", f"{gateway.get('single_rps', 0):,.0f} req/s "
                      f"(p99 {gateway.get('single_p99_ms', 0):.1f} ms)", f"bare forwarder "
                      f"{gateway.get('bare_rps', 0):,.0f} req/s", f"{gateway.get('ratio_to_bare', 0):.2f}"])
    streams = report.get("streams")
    if streams:
        lines.append(["streams worker", f"{streams['ours_events_per_s'] or 0:,} events/s",
                      f"bare faust {streams['bare_faust']['per_second_steady'] or 0:,}/s",
                      f"{streams['ratio_to_bare_faust']}"])
        lines.append(["streams worker", f"{streams['ours_events_per_s'] or 0:,} events/s",
                      f"aiokafka loop {streams['aiokafka_loop']['per_second_steady'] or 0:,}/s",
                      f"{streams['ratio_to_aiokafka_loop']}"])
    sink = report.get("sink")
    if sink:
        lines.append(["sink, broker -> chDB", f"{sink['ours_rows_per_s']:,} rows/s",
                      f"consume + Arrow insert {sink['bare_rows_per_s']:,} rows/s", f"{sink['ratio_to_bare']}"])
    return lines


def format_table(lines: list[list[str]]) -> str:
    header = ["stage", "ours", "bare ceiling, same run", "ratio"]
    rows = [header, ["---"] * 4, *lines]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)
