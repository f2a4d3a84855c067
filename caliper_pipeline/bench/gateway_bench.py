"""``caliper-pipeline bench gateway``: the gateway against the real broker, and the bare forwarder baseline.

One gateway process (one core) is measured; the load driver (wrk when installed) runs beside it. Prints
single-event requests/s with p50/p99 at a fixed concurrency, events/s in 100-event envelopes, and the ratio to a
bare aiohttp handler that forwards the raw body to Kafka with no auth, no validation and no transaction (with the
gateway's compression). For each gateway run it also prints what the gateway process itself reports: its CPU time
per request and per event (from /proc: the gateway's own cost, which other processes on a busy machine disturb
less than the rates), the Kafka transactions it ran (requests per transaction), and its garbage collector's
pauses (``gateway_gc_pause_seconds``). The machine's load average is printed before and after: quote figures
from one run, and re-run when the load is lower.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from caliper_pipeline.bench.load import LoadResult, drive, drive_wrk
from caliper_pipeline.bench.stages import bench_kafka
from caliper_pipeline.local.broker import free_port
from caliper_pipeline.local.processes import ChildProcess
from caliper_pipeline.local.stack import wait_http_ok
from caliper_pipeline.local.stack_secrets import StackSecrets
from caliper_pipeline.ops.topics import ensure_topics
from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from schemas.kafka import KafkaSettings


def access_token(base: str, client_id: str, secret: str) -> str:
    data = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}".encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}/oauth2/token", data=data), timeout=10) as response:
        return str(json.loads(response.read())["access_token"])


def _line(name: str, result: LoadResult) -> str:
    return (f"{name:<34} {result.requests_per_second:>9,.0f} req/s {result.events_per_second:>10,.0f} events/s "
            f"p50 {result.percentile_ms(0.5):6.2f} ms  p99 {result.percentile_ms(0.99):7.2f} ms  "
            f"non-200 {result.errors}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(base: str) -> dict[str, float]:
    """The gateway's /metrics, as {sample name with labels: value}."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def gateway_report(before: dict[str, float], after: dict[str, float], cpu: float, result: LoadResult) -> dict[str, Any]:
    """What the gateway process reports about one run: CPU per request and event, transactions, GC pauses."""
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    transactions = delta("gateway_transactions_total")
    pauses = {generation: delta(f'gateway_gc_pause_seconds_count{{generation="{generation}"}}')
              for generation in ("0", "1", "2")}
    pause_seconds = sum(delta(f'gateway_gc_pause_seconds_sum{{generation="{generation}"}}')
                        for generation in ("0", "1", "2"))
    longest = max((float(bound) for bound in ("0.0001", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                               "0.05", "0.1", "0.25")
                   if any(delta(f'gateway_gc_pause_seconds_bucket{{generation="{g}",le="{bound}"}}')
                          < pauses[g] for g in pauses)), default=0.0)
    requests = max(1, result.requests)
    report = {
        "cpu_seconds": cpu, "cpu_share_of_a_core": cpu / result.seconds if result.seconds else 0.0,
        "cpu_us_per_request": cpu / requests * 1e6,
        "cpu_us_per_event": cpu / max(1, result.events) * 1e6,
        "transactions": transactions,
        "requests_per_transaction": delta("gateway_transaction_requests_total") / transactions if transactions else 0,
        "gc_pauses": sum(pauses.values()), "gc_seconds": pause_seconds, "gc_longest_pause_over_s": longest,
    }
    print(f"{'':<34} gateway CPU {report['cpu_us_per_request']:,.0f} us/request, "
          f"{report['cpu_us_per_event']:.1f} us/event ({report['cpu_share_of_a_core']:.0%} of a core); "
          f"{transactions:,.0f} transactions, {report['requests_per_transaction']:.1f} requests each; "
          f"GC {report['gc_pauses']:.0f} pauses, {pause_seconds * 1000:.0f} ms in all"
          + (f", longest > {longest * 1000:g} ms" if longest else ""), flush=True)
    return report


def run_gateway_bench(settings: Settings, seconds: float, concurrency: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    with bench_kafka(settings, work) as kafka:
        return measure_gateway(kafka.model_copy(update={"topic_prefix": f"bench{int(time.time())}."}), work,
                               seconds, concurrency)


def measure_gateway(kafka: KafkaSettings, work: Path, seconds: float, concurrency: int) -> dict[str, Any]:
    """``bench gateway`` on a given broker (``bench ceilings`` reuses it with its own): the gateway's 1-event and
    100-event runs, then the bare forwarder's, in ``work``; prints the lines and returns the figures (req/s,
    p50/p99, events/s, the ratio to the bare forwarder, the gateway's own CPU and transactions per run)."""
    asyncio.run(ensure_topics(kafka))
    clients_file = work / "clients.json"
    client, secret = ClientRegistry(clients_file).add("bench", rate_limit_per_second=1e9)
    port, bare_port = free_port(), free_port()
    env = {**os.environ, "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "CALIPER_KAFKA__TOPIC_PREFIX": kafka.topic_prefix, "CALIPER_GATEWAY__PORT": str(port),
           "CALIPER_GATEWAY__CLIENTS_FILE": str(clients_file),
           **StackSecrets.generate(Settings()).env_for("gateway")}  # never the development signing secret
    compression = Settings().gateway.compression or "none"
    gateway = ChildProcess.pipeline_command("gateway", ["gateway"], env, work)
    bare = ChildProcess("bare-forwarder", [sys.executable, "-m", "caliper_pipeline.bench.bare_forwarder",
                                           kafka.bootstrap_servers, kafka.topics.raw_topics[0], str(bare_port),
                                           compression], env, work)
    figures: dict[str, Any] = {}
    try:
        gateway.start()
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/readyz", 60, [gateway])
        auth = {"Authorization": f"Bearer {access_token(base, client.client_id, secret)}"}
        single = lambda: orjson.dumps(envelope(timeback_activity_event()))  # noqa: E731
        hundred = lambda: orjson.dumps(envelope(*[timeback_activity_event() for _ in range(100)]))  # noqa: E731
        use_wrk = shutil.which("wrk") is not None

        def load(url: str, make_body: Callable[[], bytes], events: int, connections: int,
                 headers: dict[str, str] | None = None) -> LoadResult:
            if use_wrk:
                return drive_wrk(url, make_body(), events_per_body=events, concurrency=connections,
                                 seconds=seconds, headers=headers, work_dir=work)
            return asyncio.run(drive(url, make_body, events_per_body=events, concurrency=connections,
                                     seconds=seconds, headers=headers))

        def measured(make_body: Callable[[], bytes], events: int, connections: int) -> tuple[LoadResult, dict]:
            before, cpu = scrape(base), cpu_seconds(gateway.pid)
            result = load(f"{base}/caliper/event", make_body, events, connections, auth)
            return result, gateway_report(before, scrape(base), cpu_seconds(gateway.pid) - cpu, result)

        load_before = os.getloadavg()
        print(f"gateway bench: {seconds:.0f}s per run, concurrency {concurrency}, broker {kafka.bootstrap_servers}, "
              f"load driver {'wrk' if use_wrk else 'python (install wrk for a cheaper driver)'}, compression "
              f"{compression}, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
        one, one_report = measured(single, 1, concurrency)
        print(_line("gateway, 1-event envelopes", one), flush=True)
        batch, batch_report = measured(hundred, 100, max(4, concurrency // 8))
        print(_line("gateway, 100-event envelopes", batch), flush=True)
        gateway.stop()
        bare.start()
        _wait_ready_post(f"http://127.0.0.1:{bare_port}/caliper/event")
        bare_cpu = cpu_seconds(bare.pid)
        baseline = load(f"http://127.0.0.1:{bare_port}/caliper/event", single, 1, concurrency)
        bare_cpu = cpu_seconds(bare.pid) - bare_cpu
        print(_line("bare forwarder, 1-event bodies", baseline), flush=True)
        print(f"{'':<34} bare forwarder CPU {bare_cpu / max(1, baseline.requests) * 1e6:,.0f} us/request "
              f"({bare_cpu / baseline.seconds if baseline.seconds else 0:.0%} of a core)")
        ratio = one.requests_per_second / baseline.requests_per_second if baseline.requests_per_second else 0.0
        load_after = os.getloadavg()
        print(f"gateway / bare forwarder = {ratio:.2f}  (targets: >= 0.9 with p99 <= 20 ms at 32 "
              f"connections; >= 40,000 events/s in 100-event envelopes); load average now {load_after[0]:.2f} "
              f"{load_after[1]:.2f} {load_after[2]:.2f}")
        figures = {"single_rps": one.requests_per_second, "single_p50_ms": one.percentile_ms(0.5),
                   "single_p99_ms": one.percentile_ms(0.99), "envelope100_events_per_s": batch.events_per_second,
                   "envelope100_p99_ms": batch.percentile_ms(0.99),
                   "bare_rps": baseline.requests_per_second, "bare_p99_ms": baseline.percentile_ms(0.99),
                   "ratio_to_bare": ratio, "driver": "wrk" if use_wrk else "python", "compression": compression,
                   "gateway_single": one_report, "gateway_envelope100": batch_report,
                   "bare_cpu_us_per_request": bare_cpu / max(1, baseline.requests) * 1e6,
                   "load_average_before": load_before, "load_average_after": load_after}
    finally:
        gateway.stop()
        bare.stop()
    return figures


def _wait_ready_post(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)
