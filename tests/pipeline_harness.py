"""A whole pipeline for integration tests: gateway, streams and sink as subprocesses of ``caliper_pipeline.cli``.

Built on ``caliper_pipeline.local.pipeline.LocalPipeline`` (env vars ``CALIPER_KAFKA__BOOTSTRAP_SERVERS``,
``CALIPER_KAFKA__TOPIC_PREFIX`` (unique), ``CALIPER_GATEWAY__PORT``, ``CALIPER_GATEWAY__CLIENTS_FILE``,
``CALIPER_SINK__HTTP_PORT``, ``CALIPER_CLICKHOUSE__DATA_PATH``, and the run's secrets), plus what
the fault-injection tests need: load in a background thread while a process is killed, and the exact-count
check (every acknowledged event in ClickHouse exactly once, by event id).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caliper_pipeline.client.sink_client import SinkClientError, sql_literal
from caliper_pipeline.local.broker import LocalKafkaBroker
from caliper_pipeline.local.cluster import LocalKafkaCluster
from caliper_pipeline.local.pipeline import LocalPipeline
from caliper_pipeline.senders.loadgen import LoadgenSummary, run_loadgen
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from gateway.ingest import encoded_envelope_events, envelope_job
from gateway.publisher import EventPublisher
from gateway.settings import GatewaySettings
from gateway.tokens import Caller
from schemas.jobs import JobIds

FULL_PROOF = os.environ.get("CALIPER_FULL_PROOF") == "1"

__all__ = ["FULL_PROOF", "ExactCounts", "LoadRun", "LocalPipeline", "Outage", "assert_exactly_once", "outage",
           "publish_as_a_laxer_gateway", "start_pipeline"]


def start_pipeline(work_dir: Path, *, kafka_bootstrap: str | None = None, broker: LocalKafkaBroker | None = None,
                   cluster: LocalKafkaCluster | None = None, partitions: int = 3,
                   extra_env: dict[str, str] | None = None, gateways: int = 1,
                   streams_workers: int = 1) -> LocalPipeline:
    """A started pipeline on ``kafka_bootstrap`` (or on ``broker`` or ``cluster``, which it then owns), topics of
    its own; ``gateways`` gateways and ``streams_workers`` workers in one group."""
    env = {
        # a dead streams worker is noticed in a few seconds; the sink batches briefly
        "CALIPER_STREAMS__SESSION_TIMEOUT_S": "6", "CALIPER_SINK__BATCH_SECONDS": "0.5",
        "CALIPER_SINK__RETRY_BACKOFF_MAX_SECONDS": "2",
        **(extra_env or {}),
    }
    pipeline = LocalPipeline(Settings(), work_dir, kafka_bootstrap=kafka_bootstrap, broker=broker, cluster=cluster,
                             partitions=partitions, extra_env=env, gateways=gateways,
                             streams_workers=streams_workers)
    try:
        pipeline.start()
    except BaseException:
        pipeline.stop()
        raise
    return pipeline


def publish_as_a_laxer_gateway(pipeline: LocalPipeline, tenant: str, client_id: str,
                               items: list[dict[str, Any]]) -> str:
    """Publish ``items`` as one job the way the gateway does (the job record and the raw events in one Kafka
    transaction, the job id signed with the stack's secret), but WITHOUT the gateway's validation: a gateway of
    another version that accepts events this worker cannot normalize (version skew), which today's gateway
    refuses up front. Returns the job id."""
    settings = GatewaySettings(jwt_secret=pipeline.secrets.jwt_secret, transactional_id=f"skew-{time.time_ns()}")
    caller = Caller(client_id=client_id, tenant=tenant, scopes=frozenset(), rate_limit_per_second=None)
    received = int(time.time() * 1000)
    job_id = JobIds(settings.verification_secrets).issue(tenant, received)
    document = {"sensor": "https://example.edu/sensor", "data": items}

    async def run() -> None:
        publisher = EventPublisher(pipeline.kafka, settings)
        await publisher.start()
        try:
            events = encoded_envelope_events(document, caller, received, publisher.raw_event_codec, job_id)
            await publisher.publish(events, envelope_job(document, caller, received, job_id))
        finally:
            await publisher.stop()

    asyncio.run(run())
    return job_id


class LoadRun:
    """``run_loadgen`` in a background thread (its own event loop), with a fresh sender client and tenants, its
    senders spread over every gateway of the pipeline. ``seconds`` is the longest it runs; ``stop()`` ends it
    earlier. The count of acknowledged events is sampled every 0.1 s (``acknowledged_at``, ``longest_stall``)."""

    def __init__(self, pipeline: LocalPipeline, *, seconds: float, rate: float, senders: int = 4,
                 envelope_size: int = 10, retries: int = 200, **options: Any) -> None:
        self.pipeline = pipeline
        registry = ClientRegistry(pipeline.clients_file)
        client, secret = registry.add(f"fault-{time.monotonic_ns()}", rate_limit_per_second=1e9)
        self.summary = LoadgenSummary()
        self.started = time.monotonic()
        self._stop = threading.Event()
        self.stopped_at: float | None = None
        self.progress: list[tuple[float, int]] = [(0.0, 0)]  # (seconds into the run, events acknowledged)
        arguments = dict(seconds=seconds, rate=rate, senders=senders, envelope_size=envelope_size,
                         students=200, duplicate_rate=0.02, invalid_rate=0.002, generic_share=0.1, hub_share=0.1,
                         clients_file=pipeline.clients_file, tenants=2, retries=retries, max_retry_wait=1.0,
                         progress=None, request_timeout=20.0, summary=self.summary, stop_event=self._stop)
        arguments.update(options)
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._future: Future[LoadgenSummary] = self._executor.submit(
            asyncio.run, run_loadgen(pipeline.gateway_urls, client.client_id, secret, **arguments))
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._future.done():
            self.progress.append((self.elapsed(), self.summary.events_acknowledged))
            time.sleep(0.1)
        self.progress.append((self.elapsed(), self.summary.events_acknowledged))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        """No new request from now on; ``result()`` waits for those under way."""
        self.stopped_at = self.elapsed()
        self._stop.set()

    def acknowledged_at(self, seconds_into_run: float) -> int:
        """Events acknowledged by then (the last sample at or before it)."""
        return max((count for t, count in self.progress if t <= seconds_into_run), default=0)

    def longest_stall(self, since: float = 0.0, until: float | None = None) -> float:
        """The longest time without a new acknowledgement between ``since`` and ``until`` (the last sample)."""
        samples = [(t, count) for t, count in self.progress if t >= since and (until is None or t <= until)]
        longest, last_change = 0.0, since
        for (t, count), (_, before) in zip(samples[1:], samples, strict=False):
            if count != before:
                last_change = t
            longest = max(longest, t - last_change)
        return longest

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
            self._sampler.join(5)


@dataclass
class Outage:
    """How a fault looked from the senders: when it began and ended (seconds into the load), the answers other
    than 200 (503 = refused by the gateway, 0 = no answer in the sender's timeout), when the first and the last
    503 came, and the longest time without any acknowledgement."""

    fault: str
    fault_at: float
    repaired_at: float
    statuses: dict[int, int]
    first_503: float | None
    last_503: float | None
    longest_stall: float

    @property
    def seconds_of_503(self) -> float:
        return 0.0 if self.first_503 is None or self.last_503 is None else self.last_503 - self.first_503

    def __str__(self) -> str:
        refused = (f"503 from {self.first_503:.1f}s to {self.last_503:.1f}s ({self.seconds_of_503:.1f}s)"
                   if self.first_503 is not None and self.last_503 is not None else "no 503")
        return (f"{self.fault}: at {self.fault_at:.1f}s, repaired at {self.repaired_at:.1f}s; answers {self.statuses}; "
                f"{refused}; longest time without an acknowledgement {self.longest_stall:.1f}s")


def outage(load: LoadRun, summary: LoadgenSummary, fault: str, fault_at: float, repaired_at: float) -> Outage:
    window = summary.refused_between(frozenset({503}))
    return Outage(fault, fault_at, repaired_at, {int(k): v for k, v in sorted(summary.statuses.items())},
                  window[0] if window else None, window[1] if window else None,
                  load.longest_stall(since=max(0.0, fault_at - 1.0),
                                     until=load.stopped_at if load.stopped_at is not None else summary.seconds))


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
