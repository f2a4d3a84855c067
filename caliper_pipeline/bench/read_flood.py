"""``caliper-pipeline bench read-flood``: how fresh loading stays, and how fast another tenant reads, while one
sender floods the read API.

Starts the local stack as ``bench e2e`` does (fresh home, free ports), registers two senders of two tenants, and
preloads the flooding tenant's archive (``--preload`` events, so that each read of 1,000 events does real work).
Then, for each phase (quiet, then each ``--floods`` count of loops), for ``--seconds``:

- the flooding sender runs N loops of ``GET /caliper/events?limit=1000`` (a refused read is retried after 50 ms,
  not after its ``Retry-After``: a careless client);
- the other sender posts one event every 0.5 s and the freshness probe of ``bench e2e`` measures, for each, the
  time from its acknowledgement until it is queryable in ClickHouse (fact-loading latency);
- the other sender reads its own events (``limit=10``) every 0.5 s: its read latency.

Prints one line per phase and the JSON of every figure; the ratios are to the quiet phase of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from caliper_pipeline.bench.e2e import FreshnessProbe
from caliper_pipeline.local.pipeline import LocalPipeline
from caliper_pipeline.senders.loadgen import LoadgenSummary, percentile
from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from caliper_pipeline.senders.traffic import fetch_token
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry

FLOODING_TENANT, OTHER_TENANT = "bench-flooding-school", "bench-other-school"


def _ms(values: list[float], fraction: float) -> float:
    return round(percentile(values, fraction) * 1000, 1) if values else float("nan")


async def _post(session: aiohttp.ClientSession, url: str, token: str, events: list[dict[str, Any]]) -> int:
    async with session.post(f"{url}/caliper/event", json=envelope(*events),
                            headers={"Authorization": f"Bearer {token}"}) as response:
        await response.read()
        return response.status


async def _preload(session: aiohttp.ClientSession, url: str, token: str, count: int) -> None:
    for start in range(0, count, 100):
        events = [timeback_activity_event(f"student-{i % 500}") for i in range(start, min(count, start + 100))]
        while await _post(session, url, token, events) != 200:
            await asyncio.sleep(0.5)


async def _flood_loop(session: aiohttp.ClientSession, url: str, token: str, stop: asyncio.Event,
                      statuses: Counter[int]) -> None:
    while not stop.is_set():
        try:
            async with session.get(f"{url}/caliper/events", params={"limit": "1000"},
                                   headers={"Authorization": f"Bearer {token}"}) as response:
                await response.read()
                statuses[response.status] += 1
                if response.status != 200:
                    await asyncio.sleep(0.05)
        except (aiohttp.ClientError, TimeoutError):
            statuses[0] += 1


async def _phase(pipeline: LocalPipeline, session: aiohttp.ClientSession, tokens: dict[str, str], loops: int,
                 seconds: float) -> dict[str, Any]:
    url = pipeline.gateway_url
    summary = LoadgenSummary()
    probe = FreshnessProbe(pipeline.sink_client, "learning", summary, interval=0.2)
    stop, probe_stop = asyncio.Event(), asyncio.Event()
    statuses: Counter[int] = Counter()
    reads: list[float] = []
    read_statuses: Counter[int] = Counter()
    flood = [asyncio.ensure_future(_flood_loop(session, url, tokens[FLOODING_TENANT], stop, statuses))
             for _ in range(loops)]
    probing = asyncio.ensure_future(probe.run(probe_stop))
    other = tokens[OTHER_TENANT]

    async def send_and_read() -> None:
        while not stop.is_set():
            event = timeback_activity_event("probe-student", event_id=f"urn:uuid:{uuid.uuid4()}")
            if await _post(session, url, other, [event]) == 200:
                summary.ack_times[event["id"]] = time.time()
            started = time.perf_counter()
            async with session.get(f"{url}/caliper/events", params={"limit": "10"},
                                   headers={"Authorization": f"Bearer {other}"}) as response:
                await response.read()
                read_statuses[response.status] += 1
                if response.status == 200:
                    reads.append(time.perf_counter() - started)
            await asyncio.sleep(0.5)

    sender = asyncio.ensure_future(send_and_read())
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(sender, *flood)
    deadline = time.monotonic() + 60
    while probe.missing and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    probe_stop.set()
    await probing
    return {"flood_loops": loops, "probe_events": len(summary.ack_times), "probe_missing": probe.missing,
            "freshness_p50_ms": _ms(probe.delays, 0.5), "freshness_p95_ms": _ms(probe.delays, 0.95),
            "freshness_max_ms": round(max(probe.delays, default=0.0) * 1000, 1),
            "other_read_p50_ms": _ms(reads, 0.5), "other_read_p99_ms": _ms(reads, 0.99),
            "other_read_statuses": dict(read_statuses), "flood_statuses": dict(statuses)}


def run_read_flood_bench(settings: Settings, *, seconds: float, floods: list[int], preload: int,
                         keep: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="caliper-read-flood-"))
    try:
        with LocalPipeline(settings, work).start() as pipeline:
            registry = ClientRegistry(pipeline.clients_file)
            secrets = {tenant: registry.add(tenant, rate_limit_per_second=1e6)
                       for tenant in (FLOODING_TENANT, OTHER_TENANT)}

            async def drive() -> list[dict[str, Any]]:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                    tokens = {tenant: await fetch_token(session, pipeline.gateway_url, client.client_id, secret)
                              for tenant, (client, secret) in secrets.items()}
                    await _preload(session, pipeline.gateway_url, tokens[FLOODING_TENANT], preload)
                    await asyncio.sleep(settings.sink.archive_batch_seconds + 5)  # the archive has the preload
                    phases = []
                    for loops in [0, *floods]:
                        phase = await _phase(pipeline, session, tokens, loops, seconds)
                        print(f"flood loops {loops:>3}: freshness p50 {phase['freshness_p50_ms']} ms, p95 "
                              f"{phase['freshness_p95_ms']} ms; other tenant's reads p50 "
                              f"{phase['other_read_p50_ms']} ms; flood answers {phase['flood_statuses']}", flush=True)
                        phases.append(phase)
                    return phases

            phases = asyncio.run(drive())
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    quiet = phases[0]
    for phase in phases[1:]:
        for name in ("freshness_p50_ms", "freshness_p95_ms", "other_read_p50_ms", "other_read_p99_ms"):
            if quiet[name]:
                phase[f"{name.removesuffix('_ms')}_vs_quiet"] = round(phase[name] / quiet[name], 2)
    return {"seconds_per_phase": seconds, "preload": preload, "phases": phases}


def add_read_flood_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--floods", default="8,40", help="comma-separated counts of flooding read loops")
    parser.add_argument("--preload", type=int, default=20_000, help="events in the flooding tenant's archive")
    parser.add_argument("--keep", action="store_true", help="keep the stack's temporary home")


def read_flood_command(settings: Settings, args: argparse.Namespace) -> int:
    floods = [int(count) for count in args.floods.split(",") if count.strip()]
    figures = run_read_flood_bench(settings, seconds=args.seconds, floods=floods, preload=args.preload,
                                   keep=args.keep)
    print(json.dumps(figures, indent=2))
    return 0
