"""``caliper-pipeline soak``: the whole pipeline at a steady rate for a long time, watching every process's memory.

Starts the local stack (``local.pipeline.LocalPipeline``: local Kafka, sink with embedded chDB, streams worker,
gateway) in a fresh temporary home, drives ``loadgen`` at ``rate`` events/s (default: half the end-to-end
maximum, measured first by a short open-loop run) for ``seconds`` (default 600), and samples each process's
resident memory (``VmRSS`` in ``/proc/<pid>/status``: gateway, streams, sink, and the broker's JVM) every
``sample_every`` seconds.

Verdict against a stated bound: after the first minute (warm-up: imports, caches, JIT, chDB buffers), a
process's RSS may grow by at most ``bound`` (20 %) — the median of the last 30 s of samples against the first
sample after the warm-up. It also ends with the exact counts (acknowledged vs distinct event ids in ClickHouse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caliper_pipeline.bench.e2e import machine_description, wait_drained
from caliper_pipeline.local.pipeline import LocalPipeline
from caliper_pipeline.senders.loadgen import LoadgenSummary, run_loadgen
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry

DEFAULT_BOUND = 0.20
WARMUP_SECONDS = 60.0


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process in KiB (``VmRSS``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def sample_rss(pipeline: LocalPipeline, started: float, interval: float, stop: threading.Event,
               samples: list[dict[str, Any]]) -> None:
    while True:
        row: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
        for name, pid in pipeline.pids().items():
            kib = rss_kib(pid)
            if kib is not None:
                row[name] = kib
        samples.append(row)
        if stop.wait(interval):
            return


def verdict(samples: list[dict[str, Any]], seconds: float, bound: float) -> dict[str, Any]:
    """Per process: RSS after the warm-up vs at the end; growth within ``bound``."""
    warmup = WARMUP_SECONDS if seconds >= 2 * WARMUP_SECONDS else seconds / 2
    processes = sorted({k for row in samples for k in row if k != "t"})
    result: dict[str, Any] = {"warmup_seconds": warmup, "bound": bound, "processes": {}}
    end = samples[-1]["t"] if samples else 0.0
    for name in processes:
        series = [(row["t"], row[name]) for row in samples if name in row]
        after = [kib for t, kib in series if t >= warmup]
        tail = [kib for t, kib in series if t >= end - 30] or after[-1:]
        if not after or not tail:
            result["processes"][name] = {"ok": None, "note": "not enough samples"}
            continue
        baseline, final = after[0], statistics.median(tail)
        growth = (final - baseline) / baseline if baseline else 0.0
        result["processes"][name] = {
            "first_kib": series[0][1], "after_warmup_kib": baseline, "end_kib": int(final),
            "max_kib": max(kib for _, kib in series), "growth": round(growth, 4), "ok": growth <= bound}
    result["ok"] = all(p.get("ok") for p in result["processes"].values()) if result["processes"] else False
    return result


def own_client(pipeline: LocalPipeline, name: str) -> tuple[str, str]:
    """A sender client on a tenant of its own (so each run's exact counts are its own)."""
    client, secret = ClientRegistry(pipeline.clients_file).add(f"{name}-{pipeline.run_id}",
                                                               client_id=f"{name}-{pipeline.run_id}",
                                                               rate_limit_per_second=1e9)
    return client.client_id, secret


def measure_max_rate(pipeline: LocalPipeline, seconds: float = 15.0) -> float:
    """End-to-end maximum: open-loop load for ``seconds``, then the time until ClickHouse has every event."""
    client_id, secret = own_client(pipeline, "calibrate")
    summary = asyncio.run(run_loadgen(pipeline.gateway_url, client_id, secret,
                                      seconds=seconds, rate=None, senders=8, envelope_size=50, students=10_000,
                                      clients_file=pipeline.clients_file, tenants=1, progress=None))
    expected = {t: len(ids) for t, ids in summary.acknowledged_ids.items()}
    _, drain = wait_drained(pipeline.sink_client, pipeline.database, expected, timeout=300)
    return summary.distinct_acknowledged / (summary.seconds + drain)


def run_soak(settings: Settings, *, seconds: float = 600.0, rate: float | None = None, sample_every: float = 5.0,
             bound: float = DEFAULT_BOUND, output_dir: Path | None = None, keep: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="caliper-soak-"))
    pipeline = LocalPipeline(settings, work)
    started_at = datetime.now(UTC)
    try:
        pipeline.start()
        measured_max = None
        if rate is None:
            measured_max = measure_max_rate(pipeline)
            rate = max(50.0, measured_max / 2)
            print(f"soak: measured end-to-end maximum {measured_max:,.0f} events/s; soaking at half: {rate:,.0f}",
                  flush=True)
        print(f"soak: {seconds:.0f}s at {rate:,.0f} events/s, RSS every {sample_every:g}s, pids {pipeline.pids()}",
              flush=True)
        samples: list[dict[str, Any]] = []
        stop = threading.Event()
        began = time.monotonic()
        sampler = threading.Thread(target=sample_rss, args=(pipeline, began, sample_every, stop, samples),
                                   daemon=True)
        sampler.start()
        summary = LoadgenSummary()
        client_id, secret = own_client(pipeline, "soak")
        try:
            asyncio.run(run_loadgen(pipeline.gateway_url, client_id, secret,
                                    seconds=seconds, rate=rate, senders=8, envelope_size=20, students=10_000,
                                    clients_file=pipeline.clients_file, summary=summary))
        finally:
            stop.set()
            sampler.join()
        expected = {t: len(ids) for t, ids in summary.acknowledged_ids.items()}
        counts, drain = wait_drained(pipeline.sink_client, pipeline.database, expected, timeout=300)
        in_clickhouse = sum(counts.get(t, {}).get("events", 0) for t in expected)
        result: dict[str, Any] = {
            "date": started_at.isoformat(timespec="seconds"), "machine": machine_description(),
            "seconds": seconds, "rate": rate, "measured_max_events_per_s": measured_max,
            "sample_every_s": sample_every, "loadgen": summary.as_dict(),
            "acknowledged_distinct": sum(expected.values()), "clickhouse_distinct": in_clickhouse,
            "exact": in_clickhouse == sum(expected.values()), "drain_seconds": round(drain, 1),
            "verdict": verdict(samples, seconds, bound), "rss_samples_kib": samples,
        }
        text = render_markdown(result)
        print(text, flush=True)
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
            (output_dir / f"soak-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
            (output_dir / f"soak-{stamp}.md").write_text(text)
        return result
    finally:
        pipeline.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def render_markdown(result: dict[str, Any]) -> str:
    v = result["verdict"]
    lines = [
        f"soak {result['date']}: {result['seconds']:.0f} s at {result['rate']:,.0f} events/s "
        f"({result['machine']}); acknowledged {result['acknowledged_distinct']:,}, in ClickHouse "
        f"{result['clickhouse_distinct']:,} (exact: {'yes' if result['exact'] else 'NO'})",
        "",
        f"| process | RSS at start | after {v['warmup_seconds']:.0f} s | at the end | max | growth | "
        f"within {v['bound']:.0%} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in v["processes"].items():
        if p.get("ok") is None:
            lines.append(f"| {name} | - | - | - | - | - | {p['note']} |")
            continue
        lines.append(f"| {name} | {p['first_kib'] / 1024:,.0f} MiB | {p['after_warmup_kib'] / 1024:,.0f} MiB | "
                     f"{p['end_kib'] / 1024:,.0f} MiB | {p['max_kib'] / 1024:,.0f} MiB | {p['growth']:+.1%} | "
                     f"{'yes' if p['ok'] else '**no**'} |")
    lines += ["", f"verdict: {'PASS' if v['ok'] else 'FAIL'} (RSS growth after the warm-up <= {v['bound']:.0%})"]
    samples = result["rss_samples_kib"]
    if samples:
        names = sorted({k for row in samples for k in row if k != "t"})
        step = max(1, len(samples) // 12)
        lines += ["", "| t (s) | " + " | ".join(f"{n} MiB" for n in names) + " |",
                  "| --- |" + " --- |" * len(names)]
        for row in [*samples[::step], samples[-1]] if (len(samples) - 1) % step else samples[::step]:
            lines.append(f"| {row['t']:.0f} | " + " | ".join(
                f"{row[n] / 1024:,.0f}" if n in row else "-" for n in names) + " |")
    return "\n".join(lines) + "\n"


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=None,
                        help="events/s (default: half the end-to-end maximum, measured first)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND, help="allowed RSS growth after the warm-up")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: <home>/bench")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs, data)")


def soak_command(settings: Settings, args: argparse.Namespace) -> int:
    result = run_soak(settings, seconds=args.seconds, rate=args.rate, sample_every=args.sample_every,
                      bound=args.bound, output_dir=args.output_dir or settings.local.bench_dir, keep=args.keep)
    return 0 if result["verdict"]["ok"] and result["exact"] else 1
