"""A whole pipeline for integration tests: gateway, streams and sink as subprocesses of ``caliper_pipeline.cli``.

Built on ``caliper_pipeline.local_pipeline.LocalPipeline`` (env vars ``CALIPER_KAFKA__BOOTSTRAP_SERVERS``,
``CALIPER_KAFKA__TOPIC_PREFIX`` (unique), ``CALIPER_GATEWAY__PORT``, ``CALIPER_GATEWAY__CLIENTS_FILE``,
``CALIPER_SINK__HTTP_PORT``, ``CALIPER_CLICKHOUSE__DATA_PATH``, and the run's secrets), plus what
the fault-injection tests need: load in a background thread while a process is killed, and the exact-count
check (every acknowledged event in ClickHouse exactly once, by event id).
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caliper_pipeline.loadgen import LoadgenSummary, run_loadgen
from caliper_pipeline.local_kafka import LocalKafkaBroker
from caliper_pipeline.local_pipeline import LocalPipeline
from caliper_pipeline.settings import Settings
from caliper_pipeline.sink_client import SinkClientError, sql_literal
from gateway.clients import ClientRegistry

FULL_PROOF = os.environ.get("CALIPER_FULL_PROOF") == "1"

__all__ = ["FULL_PROOF", "ExactCounts", "LoadRun", "LocalPipeline", "assert_exactly_once", "start_pipeline"]


def start_pipeline(work_dir: Path, *, kafka_bootstrap: str | None = None, broker: LocalKafkaBroker | None = None,
                   partitions: int = 3, extra_env: dict[str, str] | None = None) -> LocalPipeline:
    """A started pipeline on ``kafka_bootstrap`` (or on ``broker``, which it then owns), topics of its own."""
    env = {
        # a dead streams worker is noticed in a few seconds; the sink batches briefly
        "CALIPER_STREAMS__SESSION_TIMEOUT_S": "6", "CALIPER_SINK__BATCH_SECONDS": "0.5",
        "CALIPER_SINK__RETRY_BACKOFF_MAX_SECONDS": "2",
        **(extra_env or {}),
    }
    pipeline = LocalPipeline(Settings(), work_dir, kafka_bootstrap=kafka_bootstrap, broker=broker,
                             partitions=partitions, extra_env=env)
    try:
        pipeline.start()
    except BaseException:
        pipeline.stop()
        raise
    return pipeline


class LoadRun:
    """``run_loadgen`` in a background thread (its own event loop), with a fresh sender client and tenants."""

    def __init__(self, pipeline: LocalPipeline, *, seconds: float, rate: float, senders: int = 4,
                 envelope_size: int = 10, retries: int = 200, **options: Any) -> None:
        self.pipeline = pipeline
        registry = ClientRegistry(pipeline.clients_file)
        client, secret = registry.add(f"fault-{time.monotonic_ns()}", rate_limit_per_second=1e9)
        self.summary = LoadgenSummary()
        self.started = time.monotonic()
        arguments = dict(seconds=seconds, rate=rate, senders=senders, envelope_size=envelope_size,
                         students=200, duplicate_rate=0.02, invalid_rate=0.002, generic_share=0.1, hub_share=0.1,
                         clients_file=pipeline.clients_file, tenants=2, retries=retries, max_retry_wait=1.0,
                         progress=None, request_timeout=20.0, summary=self.summary)
        arguments.update(options)
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._future: Future[LoadgenSummary] = self._executor.submit(
            asyncio.run, run_loadgen(pipeline.gateway_url, client.client_id, secret, **arguments))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def sleep_until(self, seconds_into_run: float) -> None:
        time.sleep(max(0.0, seconds_into_run - self.elapsed()))

    def wait_for_acknowledged(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.summary.events_acknowledged < count and time.monotonic() < deadline:
            if self._future.done():
                self._future.result()
                return
            time.sleep(0.2)

    def result(self, timeout: float = 240.0) -> LoadgenSummary:
        try:
            return self._future.result(timeout)
        finally:
            self._executor.shutdown(wait=False)


@dataclass
class ExactCounts:
    acknowledged: dict[str, int]
    distinct_in_clickhouse: dict[str, int]
    rows_final: dict[str, int]
    unacknowledged: dict[str, int]
    seconds_to_drain: float

    def __str__(self) -> str:
        return (f"acknowledged {self.acknowledged}, distinct event ids in ClickHouse {self.distinct_in_clickhouse}, "
                f"rows FINAL {self.rows_final}, unacknowledged {self.unacknowledged}, "
                f"drained in {self.seconds_to_drain:.1f}s")


def _event_ids(pipeline: LocalPipeline, tenant: str) -> set[str]:
    rows = pipeline.sql(f"SELECT DISTINCT event_id FROM {pipeline.database}.learning_facts "
                        f"WHERE tenant = {sql_literal(tenant)}")
    return {row["event_id"] for row in rows}


def assert_exactly_once(pipeline: LocalPipeline, summary: LoadgenSummary, *, timeout: float = 120.0) -> ExactCounts:
    """Every acknowledged event is in ClickHouse exactly once, per tenant, by event id.

    Waits (up to ``timeout``) until each tenant's distinct event ids reach its acknowledged count, then checks:
    the ids in ClickHouse are exactly the acknowledged ids (events never acknowledged, e.g. after a 503, are
    allowed only if the loadgen gave up on them — the tests retry until acknowledged, so there are none),
    ``count(DISTINCT event_id)`` equals the acknowledged count, and under ``FINAL`` no (tenant, event id, fact
    index, content) has two rows.
    """
    expected = {tenant: len(ids) for tenant, ids in summary.acknowledged_ids.items()}
    assert sum(expected.values()) > 0, "nothing was acknowledged"
    started = time.monotonic()
    counts: dict[str, dict[str, int]] = {}
    while time.monotonic() - started < timeout:
        try:
            counts = pipeline.counts_by_tenant()
        except SinkClientError:  # the sink restarting, or its ClickHouse not ready yet
            counts = {}
        if all(counts.get(t, {}).get("events", 0) >= n for t, n in expected.items()):
            break
        time.sleep(1.0)
    drained = time.monotonic() - started
    time.sleep(2.0)  # anything late (a replay past the acknowledged count) shows up in the final read
    counts = pipeline.counts_by_tenant()
    result = ExactCounts(
        acknowledged=expected,
        distinct_in_clickhouse={t: counts.get(t, {}).get("events", 0) for t in expected},
        rows_final={t: counts.get(t, {}).get("rows", 0) for t in expected},
        unacknowledged={t: len(summary.unacknowledged_ids.get(t, ())) for t in expected},
        seconds_to_drain=drained)
    for tenant, acknowledged_ids in summary.acknowledged_ids.items():
        in_clickhouse = _event_ids(pipeline, tenant)
        missing = acknowledged_ids - in_clickhouse
        assert not missing, f"{len(missing)} acknowledged events of {tenant} are not in ClickHouse " \
                            f"(e.g. {sorted(missing)[:3]}); {result}"
        extra = in_clickhouse - acknowledged_ids - summary.unacknowledged_ids.get(tenant, set())
        assert not extra, f"{len(extra)} events of {tenant} in ClickHouse were never sent: {sorted(extra)[:3]}"
    duplicates = pipeline.sql(
        f"SELECT tenant, event_id, fact_index, content_hash, count() AS n FROM {pipeline.database}.learning_facts "
        f"FINAL WHERE tenant IN ({','.join(sql_literal(t) for t in expected)}) "
        "GROUP BY tenant, event_id, fact_index, content_hash HAVING n > 1 LIMIT 5")
    assert not duplicates, f"rows of the same content twice under FINAL: {duplicates}; {result}"
    unacknowledged = sum(result.unacknowledged.values())
    assert unacknowledged == 0, f"the loadgen gave up on {unacknowledged} events; {result}"
    assert result.distinct_in_clickhouse == expected, str(result)
    assert result.rows_final == expected, str(result)
    return result
