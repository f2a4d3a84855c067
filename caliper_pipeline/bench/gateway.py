"""``caliper-pipeline bench gateway``: the gateway against the real broker, and the bare forwarder baseline.

One gateway process (one core) is measured; the load driver runs in this process. Prints single-event
requests/s with p50/p99 at a fixed concurrency, events/s in 100-event envelopes, and the ratio to a bare
aiohttp handler that forwards the raw body to Kafka with no validation.
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
from caliper_pipeline.local_kafka import free_port
from caliper_pipeline.local_secrets import StackSecrets
from caliper_pipeline.processes import ChildProcess
from caliper_pipeline.samples import envelope, timeback_activity_event
from caliper_pipeline.settings import Settings
from caliper_pipeline.stack import wait_http_ok
from caliper_pipeline.topics import ensure_topics
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


def run_gateway_bench(settings: Settings, seconds: float, concurrency: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    with bench_kafka(settings, work) as kafka:
        return _measure(kafka.model_copy(update={"topic_prefix": f"bench{int(time.time())}."}), work, seconds,
                        concurrency)


def _measure(kafka: KafkaSettings, work: Path, seconds: float, concurrency: int) -> dict[str, Any]:
    asyncio.run(ensure_topics(kafka))
    clients_file = work / "clients.json"
    client, secret = ClientRegistry(clients_file).add("bench", rate_limit_per_second=1e9)
    port, bare_port = free_port(), free_port()
    env = {**os.environ, "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "CALIPER_KAFKA__TOPIC_PREFIX": kafka.topic_prefix, "CALIPER_GATEWAY__PORT": str(port),
           "CALIPER_GATEWAY__CLIENTS_FILE": str(clients_file),
           **StackSecrets.generate(Settings()).env_for("gateway")}  # never the development signing secret
    gateway = ChildProcess.pipeline_command("gateway", ["gateway"], env, work)
    bare = ChildProcess("bare-forwarder", [sys.executable, "-m", "caliper_pipeline.bench.bare_forwarder",
                                           kafka.bootstrap_servers, kafka.topics.raw_topics[0], str(bare_port)],
                        env, work)
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

        print(f"gateway bench: {seconds:.0f}s per run, concurrency {concurrency}, broker {kafka.bootstrap_servers}, "
              f"load driver {'wrk' if use_wrk else 'python (install wrk for a cheaper driver)'}")
        one = load(f"{base}/caliper/event", single, 1, concurrency, auth)
        print(_line("gateway, 1-event envelopes", one), flush=True)
        batch = load(f"{base}/caliper/event", hundred, 100, max(4, concurrency // 8), auth)
        print(_line("gateway, 100-event envelopes", batch), flush=True)
        gateway.stop()
        bare.start()
        _wait_ready_post(f"http://127.0.0.1:{bare_port}/caliper/event")
        baseline = load(f"http://127.0.0.1:{bare_port}/caliper/event", single, 1, concurrency)
        print(_line("bare forwarder, 1-event bodies", baseline), flush=True)
        ratio = one.requests_per_second / baseline.requests_per_second if baseline.requests_per_second else 0.0
        print(f"gateway / bare forwarder = {ratio:.2f}  (targets per gateway core: >= 10,000 req/s, p99 <= 20 ms, "
              f">= 0.6 of bare; >= 50,000 events/s in 100-event envelopes)")
        figures = {"single_rps": one.requests_per_second, "single_p50_ms": one.percentile_ms(0.5),
                   "single_p99_ms": one.percentile_ms(0.99), "envelope100_events_per_s": batch.events_per_second,
                   "bare_rps": baseline.requests_per_second, "ratio_to_bare": ratio,
                   "driver": "wrk" if use_wrk else "python"}
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
