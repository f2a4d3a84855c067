"""``caliper-pipeline bench e2e``: the whole pipeline under realistic load, measured end to end.

Starts the local stack the way ``caliper-pipeline up`` does (local Apache Kafka unless one is configured, the
sink owning embedded chDB, a streams worker, the gateway — child processes of ``caliper_pipeline.cli``), in a
fresh temporary home on free ports, or uses a running stack given by URLs. Drives ``loadgen`` for the set time
and reports:

- sustained events/s acknowledged by the gateway, and the gateway's request latency p50/p99;
- end-to-end freshness p50/p95: for sampled acknowledged events, the time from the gateway's acknowledgement
  until the event is queryable in ClickHouse (``learning_facts`` has no ingestion timestamp column, so sampled
  ids are polled through the sink's ``POST /sql``; the poll interval bounds the resolution);
- the final EXACT counts per tenant: acknowledged distinct event ids vs ``count(DISTINCT event_id)`` in
  ClickHouse (must be equal), rows under ``FINAL`` vs distinct facts, rejected events, dead letters (messages
  on the dead-letter topic) and rejected-topic messages.

Also the CPU each process of the stack used from the start of the load until ClickHouse had everything
(``/proc/<pid>/stat``: gateway, streams, sink, the broker's JVM, and this process, the load generator): CPU
microseconds per acknowledged event, by process — where the time goes end to end; and the INSERT statements the
sink sent to ClickHouse meanwhile, by table, per 30 s (``sink_inserts_total`` of its ``/metrics``: each INSERT into
an entry table has a fixed cost in ClickHouse).

Writes ``e2e-<timestamp>.json`` and ``e2e-<timestamp>.md`` to the output directory. Targets (reported,
not asserted): >= 6,000 events/s end to end (acknowledged and in ClickHouse) for 10 minutes, and freshness
p95 <= 2 s at half that rate (the freshness verdict applies to runs at <= 3,000 events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caliper_pipeline.bench.gateway_bench import cpu_seconds
from caliper_pipeline.client.sink_client import SinkClient, SinkClientError
from caliper_pipeline.local.pipeline import LocalPipeline, counts_by_tenant, topic_message_count
from caliper_pipeline.senders.loadgen import LoadgenSummary, percentile, run_loadgen
from caliper_pipeline.settings import Settings
from schemas.errors import PipelineError
from sinks.tables import FACT_TABLE

FRESHNESS_TARGET_P95_S = 2.0
THROUGHPUT_TARGET = 6_000.0
FRESHNESS_TARGET_AT_RATE = THROUGHPUT_TARGET / 2  # the freshness target holds at half the throughput target


class BenchArgumentError(PipelineError):
    """An argument of ``bench e2e`` that does not fit the stack the bench would start."""


_INSERTS = re.compile(r'^sink_inserts_total\{table="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)


def sink_inserts(sink: SinkClient) -> dict[str, float]:
    """INSERT statements the sink sent so far, by table (empty when its metrics cannot be read)."""
    try:
        return {table: float(value) for table, value in _INSERTS.findall(sink.metrics())}
    except SinkClientError:
        return {}


def inserts_per_30s(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    counts = {table: after[table] - before.get(table, 0.0) for table in after}
    counts["all"] = sum(counts.values())
    return {table: round(count * 30 / seconds, 1) if seconds else 0.0 for table, count in sorted(counts.items())}


def process_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process (this one as ``loadgen``)."""
    return {name: cpu_seconds(pid) for name, pid in {**pids, "loadgen": os.getpid()}.items()}


def cpu_report(before: dict[str, float], after: dict[str, float], seconds: float, events: int) -> dict[str, Any]:
    """Per process: CPU seconds between two ``process_cpu`` readings, share of one core, µs per event."""
    report = {}
    for name in sorted(after):
        used = max(0.0, after[name] - before.get(name, after[name]))
        report[name] = {"cpu_seconds": round(used, 2), "share_of_a_core": round(used / seconds, 3) if seconds else 0,
                        "us_per_event": round(used / events * 1e6, 1) if events else 0}
    total = sum(v["cpu_seconds"] for v in report.values())
    report["all"] = {"cpu_seconds": round(total, 2), "share_of_a_core": round(total / seconds, 3) if seconds else 0,
                     "us_per_event": round(total / events * 1e6, 1) if events else 0}
    return report


class FreshnessProbe:
    """Polls ClickHouse for the sampled acknowledged ids; records ack -> queryable delays."""

    def __init__(self, sink: SinkClient, database: str, summary: LoadgenSummary, interval: float = 0.5) -> None:
        self.sink = sink
        self.database = database
        self.summary = summary
        self.interval = interval
        self.delays: list[float] = []
        self._seen: set[str] = set()
        self.errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                final = stop.is_set()  # one last poll after the stop, then return
                pending = [i for i in list(self.summary.ack_times) if i not in self._seen][:400]
                if pending:
                    await self._poll(session, pending)
                if final:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)

    async def _poll(self, session: Any, pending: list[str]) -> None:
        ids = ",".join("'" + i.replace("'", "") + "'" for i in pending)
        try:
            rows = await self.sink.rows_async(session, "SELECT DISTINCT event_id FROM "
                                              f"{self.database}.{FACT_TABLE} WHERE event_id IN ({ids})")
        except SinkClientError:  # a poll failing (sink busy or restarting) is retried next round
            self.errors += 1
            return
        now = time.time()
        for row in rows:
            event_id = row["event_id"]
            if event_id not in self._seen:
                self._seen.add(event_id)
                self.delays.append(max(0.0, now - self.summary.ack_times[event_id]))

    @property
    def missing(self) -> int:
        return len(self.summary.ack_times) - len(self._seen)


def wait_drained(sink: SinkClient, database: str, expected: dict[str, int], timeout: float,
                 settle: float = 60.0) -> tuple[dict[str, dict[str, int]], float]:
    """Poll per-tenant counts until each tenant has ``expected`` distinct event ids, or the counts the sink
    answered did not move for ``settle`` seconds (the pipeline stopped: report what it has), or the timeout
    passed. A poll the sink does not answer (busy loading, a query slot taken) is not "nothing moved": only
    answered polls count. Returns the counts and the wait."""
    started = time.monotonic()
    last: dict[str, dict[str, int]] = {}
    last_change = started
    while True:
        try:
            counts = counts_by_tenant(sink, database)
        except SinkClientError:
            counts = None
        now = time.monotonic()
        if counts is not None and counts != last:
            last, last_change = counts, now
        done = all(last.get(t, {}).get("events", 0) >= n for t, n in expected.items())
        if done or now - started > timeout or (counts is not None and now - last_change > settle):
            return last, now - started
        time.sleep(1.0)  # each poll is a count(DISTINCT) over the whole table: not too often


def run_e2e_bench(settings: Settings, *, seconds: float, rate: float | None, output_dir: Path,
                  gateway_url: str | None = None, sink_url: str | None = None, client_id: str | None = None,
                  client_secret: str | None = None, senders: int = 8, envelope_size: int = 50,
                  students: int = 10_000, duplicate_rate: float = 0.01, invalid_rate: float = 0.0005,
                  generic_share: float = 0.1, hub_share: float = 0.02, sample_every: int = 200,
                  drain_timeout: float = 300.0, keep: bool = False, brokers: int | None = None,
                  streams_workers: int = 1) -> dict[str, Any]:
    """Run the stack (or use the running one at ``gateway_url``/``sink_url``), drive load, measure, report.
    ``brokers``: the local Kafka's nodes (default ``CALIPER_LOCAL__KAFKA_BROKERS``; 3 = a cluster, RF 3)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline: LocalPipeline | None = None
    work = Path(tempfile.mkdtemp(prefix="caliper-e2e-"))
    started_at = datetime.now(UTC)
    try:
        if gateway_url is None:
            pipeline = LocalPipeline(settings, work, brokers=brokers, streams_workers=streams_workers).start()
            gateway_url, sink_url = pipeline.gateway_url, pipeline.sink_url
            client_id, client_secret = pipeline.client_id, pipeline.client_secret
            clients_file: Path | None = pipeline.clients_file
        else:
            sink_url = sink_url or settings.sink.base_url()
            clients_file = settings.gateway.clients_file
            if not client_id or not client_secret:
                from caliper_pipeline.local.stack import demo_credentials

                client_id, client_secret = demo_credentials(settings)
        assert sink_url is not None and client_id and client_secret
        sink = pipeline.sink_client if pipeline is not None else SinkClient.from_settings(settings, sink_url)
        print(f"e2e bench: gateway {gateway_url}, sink {sink_url}, {seconds:.0f}s at "
              f"{'open loop' if rate is None else f'{rate:,.0f} events/s'}", flush=True)
        summary = LoadgenSummary()
        probe = FreshnessProbe(sink, settings.clickhouse.database, summary)

        async def drive() -> tuple[dict[str, dict[str, int]], float]:
            stop = asyncio.Event()
            probe_task = asyncio.ensure_future(probe.run(stop))
            try:
                await run_loadgen(gateway_url, client_id, client_secret, seconds=seconds, rate=rate,
                                  senders=senders, students=students, envelope_size=envelope_size,
                                  duplicate_rate=duplicate_rate, invalid_rate=invalid_rate,
                                  generic_share=generic_share, hub_share=hub_share, clients_file=clients_file,
                                  sample_every=sample_every, summary=summary)
                expected = {t: len(ids) for t, ids in summary.acknowledged_ids.items()}
                return await asyncio.to_thread(wait_drained, sink, settings.clickhouse.database, expected,
                                               drain_timeout)
            finally:
                stop.set()
                await asyncio.wait_for(probe_task, 60)

        pids = pipeline.pids() if pipeline is not None else {}
        cpu_before, inserts_before = process_cpu(pids), sink_inserts(sink)
        load_started = time.monotonic()
        counts, drain_seconds = asyncio.run(drive())
        cpu_after, inserts_after = process_cpu(pids), sink_inserts(sink)
        expected = {t: len(ids) for t, ids in summary.acknowledged_ids.items()}
        everything_seconds = time.monotonic() - load_started
        if pipeline is not None:
            dead_letters = pipeline.topic_message_count(pipeline.kafka.topics.dead_letters)
            rejected_topic = pipeline.topic_message_count(pipeline.kafka.topics.rejected)
        else:
            kafka = settings.kafka
            dead_letters = asyncio.run(topic_message_count(kafka, kafka.topics.dead_letters)) \
                if kafka.bootstrap_servers else -1
            rejected_topic = asyncio.run(topic_message_count(kafka, kafka.topics.rejected)) \
                if kafka.bootstrap_servers else -1
        per_tenant = {}
        for tenant, acked in sorted(expected.items()):
            in_ch = counts.get(tenant, {"events": 0, "facts": 0, "rows": 0})
            per_tenant[tenant] = {"acknowledged": acked, "clickhouse_distinct_event_ids": in_ch["events"],
                                  "clickhouse_rows_final": in_ch["rows"], "clickhouse_facts": in_ch["facts"],
                                  "unacknowledged_sent": len(summary.unacknowledged_ids.get(tenant, ())),
                                  "equal": in_ch["events"] == acked}
        acked_total = sum(expected.values())
        in_ch_total = sum(v["clickhouse_distinct_event_ids"] for v in per_tenant.values())
        delays = probe.delays
        result: dict[str, Any] = {
            "date": started_at.isoformat(timespec="seconds"),
            "machine": machine_description(),
            "seconds": seconds, "rate": rate, "senders": senders, "envelope_size": envelope_size,
            "stack": (f"started by the bench (local Kafka, {pipeline.brokers} node(s), replication factor "
                      f"{pipeline.replication_factor}; {streams_workers} streams worker(s); embedded chDB)")
            if pipeline else f"running at {gateway_url}",
            "loadgen": summary.as_dict(),
            "sustained_events_per_s": round(summary.events_per_second, 1),
            # what reached ClickHouse per second of load + drain (the acknowledged count only when it all did)
            "e2e_events_per_s": round(in_ch_total / everything_seconds, 1) if everything_seconds else 0.0,
            "gateway_p50_ms": round(summary.percentile_ms(0.50), 2),
            "gateway_p99_ms": round(summary.percentile_ms(0.99), 2),
            "freshness_samples": len(delays), "freshness_missing": probe.missing,
            "freshness_p50_s": round(percentile(delays, 0.50), 3),
            "freshness_p95_s": round(percentile(delays, 0.95), 3),
            "freshness_max_s": round(max(delays), 3) if delays else float("nan"),
            "freshness_poll_interval_s": probe.interval,
            "drain_seconds_after_load": round(drain_seconds, 1),
            "acknowledged_distinct": acked_total, "clickhouse_distinct": in_ch_total,
            "exact": all(v["equal"] for v in per_tenant.values()),
            "duplicate_rows_after_final": sum(v["clickhouse_rows_final"] - v["clickhouse_facts"]
                                              for v in per_tenant.values()),
            "rejected_events": summary.events_rejected, "rejected_topic_messages": rejected_topic,
            "dead_letters": dead_letters, "per_tenant": per_tenant,
            "targets": {"events_per_s": THROUGHPUT_TARGET, "freshness_p95_s": FRESHNESS_TARGET_P95_S,
                        "freshness_at_events_per_s": FRESHNESS_TARGET_AT_RATE, "duration_s": 600},
        }
        result["cpu_by_process"] = cpu_report(cpu_before, cpu_after, everything_seconds, acked_total)
        result["sink_inserts_per_30s"] = inserts_per_30s(inserts_before, inserts_after, everything_seconds)
        result["meets_throughput_target"] = min(result["sustained_events_per_s"],
                                                result["e2e_events_per_s"]) >= THROUGHPUT_TARGET
        # the freshness target is stated at half the throughput target: above it, a verdict would be meaningless
        result["meets_freshness_target"] = (result["freshness_p95_s"] <= FRESHNESS_TARGET_P95_S
                                            if rate is not None and rate <= FRESHNESS_TARGET_AT_RATE else None)
        stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
        (output_dir / f"e2e-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
        (output_dir / f"e2e-{stamp}.md").write_text(render_markdown(result))
        print(render_markdown(result), flush=True)
        return result
    finally:
        if pipeline is not None:
            pipeline.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def machine_description() -> str:
    cores = os.cpu_count() or 0
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip() + ", "
                break
    except OSError:
        pass
    return f"{model}{cores} cores{memory}"


def render_markdown(result: dict[str, Any]) -> str:
    def mark(ok: bool | None) -> str:
        if ok is None:
            return f"n/a (a run at <= {FRESHNESS_TARGET_AT_RATE:,.0f} events/s)"
        return "yes" if ok else "**no**"

    load_rate = "open loop" if result["rate"] is None else f"{result['rate']:,.0f} events/s"
    rows = [
        ("date", result["date"]), ("machine", result["machine"]), ("stack", result["stack"]),
        ("load", f"{result['seconds']:.0f} s, {load_rate}, {result['senders']} senders, "
                 f"envelopes of {result['envelope_size']}"),
        ("sustained events/s (acknowledged by the gateway)",
         f"{result['sustained_events_per_s']:,.0f}"),
        ("end-to-end events/s (load + drain into ClickHouse)",
         f"{result['e2e_events_per_s']:,.0f} (target: both >= {THROUGHPUT_TARGET:,.0f}: "
         f"{mark(result['meets_throughput_target'])})"),
        ("gateway latency p50 / p99 (per request)",
         f"{result['gateway_p50_ms']:.1f} ms / {result['gateway_p99_ms']:.1f} ms"),
        ("freshness p50 / p95 / max (ack -> queryable)",
         f"{result['freshness_p50_s']:.2f} s / {result['freshness_p95_s']:.2f} s / {result['freshness_max_s']:.2f} s "
         f"(target p95 <= {FRESHNESS_TARGET_P95_S:.0f} s: {mark(result['meets_freshness_target'])}; "
         f"{result['freshness_samples']} samples, poll every {result['freshness_poll_interval_s']} s)"),
        ("drain after the load stopped", f"{result['drain_seconds_after_load']:.1f} s"),
        ("acknowledged distinct event ids", f"{result['acknowledged_distinct']:,}"),
        ("count(DISTINCT event_id) in ClickHouse",
         f"{result['clickhouse_distinct']:,} (exact: {mark(result['exact'])})"),
        ("duplicate rows under FINAL", str(result["duplicate_rows_after_final"])),
        ("rejected events (400) / rejected-topic messages",
         f"{result['rejected_events']:,} / {result['rejected_topic_messages']:,}"),
        ("dead letters", str(result["dead_letters"])),
    ]
    lines = ["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    if result.get("cpu_by_process"):
        lines += ["", "| process (load + drain) | CPU seconds | share of a core | CPU µs per event |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {v['cpu_seconds']:,.1f} | {v['share_of_a_core']:.2f} | {v['us_per_event']:,.1f} |"
                  for name, v in result["cpu_by_process"].items()]
    if result.get("sink_inserts_per_30s"):
        lines += ["", "| sink INSERTs by table (load + drain) | per 30 s |", "|---|---:|"]
        lines += [f"| {table} | {count:,.1f} |" for table, count in result["sink_inserts_per_30s"].items()]
    lines += ["", "| tenant | acknowledged | distinct in ClickHouse | rows FINAL | equal |",
              "| --- | --- | --- | --- | --- |"]
    for tenant, v in result["per_tenant"].items():
        lines.append(f"| {tenant} | {v['acknowledged']:,} | {v['clickhouse_distinct_event_ids']:,} | "
                     f"{v['clickhouse_rows_final']:,} | {mark(v['equal'])} |")
    return "\n".join(lines) + "\n"


def add_bench_e2e_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="load duration (target: 600)")
    parser.add_argument("--rate", type=float, default=None, help="events/s (default: open loop)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: <home>/bench")
    parser.add_argument("--gateway-url", default=None, help="use a running stack (with --sink-url)")
    parser.add_argument("--sink-url", default=None)
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--envelope-size", type=int, default=50)
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs, data)")
    parser.add_argument("--streams-workers", type=int, default=1, metavar="N",
                        help="streams worker processes the bench starts (one consumer group; from 1 to the topics' "
                             "partitions, CALIPER_KAFKA__PARTITIONS)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait after the load for ClickHouse to have every acknowledged event "
                             "(a run above the drain rate leaves a backlog: give it time)")
    parser.add_argument("--brokers", type=int, default=None, choices=range(1, 10), metavar="N",
                        help="nodes of the local Kafka the bench starts (default CALIPER_LOCAL__KAFKA_BROKERS, 1; "
                             "3 = a cluster, topics RF 3 / min.insync.replicas 2)")


def bench_e2e_command(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.streams_workers <= settings.kafka.partitions:  # a worker beyond the partitions gets none
        raise BenchArgumentError(f"--streams-workers {args.streams_workers}: from 1 to the topics' "
                                 f"{settings.kafka.partitions} partitions (CALIPER_KAFKA__PARTITIONS)")
    output_dir = args.output_dir or settings.local.bench_dir
    result = run_e2e_bench(settings, seconds=args.seconds, rate=args.rate, output_dir=output_dir,
                           gateway_url=args.gateway_url, sink_url=args.sink_url, client_id=args.client_id,
                           client_secret=args.client_secret, senders=args.senders,
                           envelope_size=args.envelope_size, students=args.students, keep=args.keep,
                           brokers=args.brokers, drain_timeout=args.drain_timeout,
                           streams_workers=args.streams_workers)
    print(f"written to {output_dir}")
    return 0 if result["exact"] else 1
