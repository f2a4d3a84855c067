"""``caliper-pipeline bench renormalize --count N``: ``renormalize`` on N archived events, and what came before.

On a broker (the configured one, or a fresh local one) with topics of its own and an embedded ClickHouse of its own:
a sink process (``caliper-pipeline sink`` with the student key, so the raw topics go to the raw archive) runs;
N raw events of every source (``bench.streams.sample_raw_events``, received now) are published to the raw topics
(as the gateway publishes them: batch records) and archived; then ``renormalize`` (in this process, as the CLI runs
it) reads them back through the sink, normalizes them and publishes their facts, which the sink loads. Figures: the
archive's load rate, renormalize's duration and rate (its own summary), the CPU it took per event (this process
with renormalize's child processes, and the sink serving the archive), and how long until every re-derived fact
was loaded.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from caliper_pipeline.bench.e2e import cpu_report
from caliper_pipeline.bench.gateway_bench import cpu_seconds
from caliper_pipeline.bench.streams_bench import (
    BENCH_PRIVACY,
    _create_topics,
    publish_raw,
    raw_messages,
    sample_raw_events,
)
from caliper_pipeline.client.sink_client import SinkClient, SinkClientError
from caliper_pipeline.local.broker import free_port
from caliper_pipeline.local.processes import ChildProcess
from caliper_pipeline.ops.renormalize import renormalize
from caliper_pipeline.settings import Settings
from schemas.kafka import KafkaSettings
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.tables import FACT_TABLE
from streams.settings import StreamsSettings

_ARCHIVED = re.compile(r'^sink_rows_inserted_total\{table="raw_events"\} ([0-9.e+]+)$', re.MULTILINE)


async def _until(condition: Any, timeout: float) -> float:
    started = time.perf_counter()
    while not await asyncio.to_thread(condition):
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the bench did not finish in time")
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


def _with_children() -> float:
    """CPU seconds of this process and of its children that ended (renormalize's processes, waited for when it
    returns): ``/proc/self/stat``'s utime, stime, cutime and cstime."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _sink_process(kafka: KafkaSettings, data_path: Path, sink: SinkSettings, work: Path) -> ChildProcess:
    env = {f"CALIPER_KAFKA__{name.upper()}": str(value)
           for name, value in kafka.model_dump(mode="json").items() if value is not None}
    env |= {"CALIPER_CLICKHOUSE__DATA_PATH": str(data_path), "CALIPER_SINK__HTTP_PORT": str(sink.http_port),
            "CALIPER_SINK__GROUP_ID": sink.group_id, "CALIPER_LOCAL__HOME": str(work),
            "CALIPER_SINK__ANALYST_TOKEN": sink.analyst_token.get_secret_value(),
            "CALIPER_SINK__ADMIN_TOKEN": sink.admin_token.get_secret_value(),
            "CALIPER_PRIVACY__STUDENT_KEY": BENCH_PRIVACY.student_key.get_secret_value(),
            "CALIPER_PRIVACY__EMAIL_HASH_KEY": BENCH_PRIVACY.email_hash_key.get_secret_value()}
    return ChildProcess.pipeline_command("sink", ["sink"], {**os.environ, **env}, work / "logs")


async def run_bench(kafka: KafkaSettings, clickhouse: ClickHouseSettings, events: int, work: Path,
                    timeout: float = 1800.0) -> dict[str, Any]:
    kafka = kafka.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})
    await _create_topics(kafka)
    sink = SinkSettings(group_id=f"bench-{uuid.uuid4().hex[:8]}", http_port=free_port(),
                        admin_token=SecretStr(secrets.token_urlsafe(16)),
                        analyst_token=SecretStr(secrets.token_urlsafe(16)))
    sink = sink.model_copy(update={"sink_url": f"http://127.0.0.1:{sink.http_port}"})
    client = SinkClient(sink.base_url(), sink.analyst_token.get_secret_value())
    process = _sink_process(kafka, clickhouse.data_path, sink, work)
    process.start()

    def archived() -> int:
        request = urllib.request.Request(f"{sink.base_url()}/metrics", headers=client.headers())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                found = _ARCHIVED.search(response.read().decode())
        except OSError:
            return 0
        return int(float(found.group(1))) if found else 0

    def facts() -> int:
        try:
            return int(client.rows(f"SELECT count() AS n FROM {clickhouse.database}.{FACT_TABLE}")[0]["n"])
        except SinkClientError:
            return 0

    try:
        now_ms = int(time.time() * 1000)
        raws = [replace(raw, received_time_ms=now_ms + index) for index, raw in enumerate(sample_raw_events(events))]
        await _until(lambda: facts() == 0, 120)  # the sink answers
        messages = raw_messages(kafka, raws)
        started = time.perf_counter()
        await publish_raw(kafka, messages)
        publish_seconds = time.perf_counter() - started
        # the counter counts the messages loaded (a raw message is a batch of events, loaded whole)
        archive_seconds = await _until(lambda: archived() >= len(messages), timeout)
        settings = Settings(kafka=kafka, clickhouse=clickhouse, privacy=BENCH_PRIVACY, sink=sink,
                            streams=StreamsSettings(worker_version="bench-renormalize"))
        cpu_before = {"renormalize": _with_children(), "sink": cpu_seconds(process.pid)}
        summary = await renormalize(settings, "bench", progress=False)
        cpu = cpu_report(cpu_before, {"renormalize": _with_children(), "sink": cpu_seconds(process.pid)},
                         summary.seconds, summary.events)
        if summary.events != events:
            raise RuntimeError(f"renormalize read {summary.events} archived events, not {events}")
        loaded_seconds = await _until(lambda: facts() >= summary.facts, timeout)
    finally:
        process.stop()
    return {
        "archived_events": events,
        "publish_raw_seconds": round(publish_seconds, 2),
        "archive_load_seconds_after_publish": round(archive_seconds, 2),
        "archive_events_per_second": round(events / (publish_seconds + archive_seconds)),
        "renormalize": {"events_read": summary.events, "facts_published": summary.facts,
                        "dead_letters": summary.dead_letters, "seconds": round(summary.seconds, 2),
                        "events_per_second": round(summary.events / summary.seconds) if summary.seconds else None,
                        "cpu": cpu, "load_average": os.getloadavg()},
        "facts_loaded_seconds_after_renormalize": round(loaded_seconds, 2),
    }


def run_renormalize_bench(settings: Settings, events: int, work: Path) -> dict[str, Any]:
    from caliper_pipeline.bench.stages import bench_kafka

    clickhouse = settings.clickhouse
    if clickhouse.embedded:  # never the stack's own chDB directory: a running sink holds its lock
        clickhouse = clickhouse.model_copy(update={"data_path": work / "chdb"})
    with bench_kafka(settings, work) as kafka:
        return asyncio.run(run_bench(kafka, clickhouse, events, work))
