"""``bench streams`` and ``bench sink``: each stage alone against the real broker (``kafka_choice``: a temporary
local one unless ``CALIPER_KAFKA__BOOTSTRAP_SERVERS`` names a cluster), the sink into a temporary embedded
ClickHouse."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caliper_pipeline.local.kafka_choice import choose_kafka
from caliper_pipeline.settings import Settings
from schemas.kafka import KafkaSettings


@contextmanager
def bench_kafka(settings: Settings, work: Path) -> Iterator[KafkaSettings]:
    """The configured Kafka, or a fresh local one in ``work`` for the length of the bench."""
    with choose_kafka(settings.local, bootstrap=settings.kafka.bootstrap_servers, data_dir=work / "kafka") as chosen:
        yield chosen.settings_for(settings.kafka)


def run_streams_bench(settings: Settings, events: int) -> dict[str, Any]:
    from caliper_pipeline.bench.streams_bench import run_bench

    with bench_kafka(settings, Path(tempfile.mkdtemp(prefix="bench-streams-"))) as kafka:
        return run_bench(kafka, events)


def run_sink_bench(settings: Settings, rows: int, *, heavy_query_seconds: float = 0.0) -> dict[str, Any]:
    from caliper_pipeline.bench.sink_bench import run_bench, run_heavy_query_bench

    work = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    clickhouse = settings.clickhouse
    if clickhouse.embedded:  # never the stack's own chDB directory: a running sink holds its lock
        clickhouse = clickhouse.model_copy(update={"data_path": work / "chdb"})
    with bench_kafka(settings, work) as kafka:
        if heavy_query_seconds > 0:
            return asyncio.run(run_heavy_query_bench(kafka, clickhouse, rows, heavy_query_seconds))
        return asyncio.run(run_bench(kafka, clickhouse, rows))
