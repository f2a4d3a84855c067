"""What one request costs the gateway in memory: peak resident memory (``VmHWM``) of a fresh gateway process over
its idle ``VmRSS``, for bodies of three shapes (seed Timeback events ~1 KB, minimal SessionEvents ~200 B, minimal
``Person`` entities ~50 B), one 3 MB, one 4 MB and six 3 MB at once, and the largest envelope accepted (10,000
items) alone and six at once. Each line runs in a gateway process of its own against the real broker (a temporary
local one unless ``CALIPER_KAFKA__BOOTSTRAP_SERVERS`` names a cluster).

    python -m caliper_pipeline.bench.gateway_memory [SOURCE_TREE] [--shapes timeback,tiny-event,entity]

``SOURCE_TREE`` (default: this checkout) is the tree whose gateway is measured, e.g. an older commit extracted with
``git archive <commit> | tar -x -C /tmp/old``: the same bodies against the gateway before and after a change.
The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from caliper_pipeline.bench.stages import bench_kafka
from caliper_pipeline.local.broker import REPO_ROOT, free_port
from caliper_pipeline.local.stack_secrets import StackSecrets
from caliper_pipeline.ops.topics import ensure_topics
from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from schemas.kafka import KafkaSettings

MB = 1_000_000
MIB = 1024 * 1024


def _tiny_event(i: int) -> dict[str, Any]:
    return {"id": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "type": "SessionEvent",
            "actor": f"https://example.edu/users/{i % 500}", "action": "LoggedIn",
            "object": "https://example.edu/app", "eventTime": "2024-01-01T00:00:00.000Z"}


def _entity(i: int) -> dict[str, Any]:
    return {"id": f"https://example.edu/users/{i}", "type": "Person"}


SHAPES = {"timeback": lambda i: timeback_activity_event(f"s{i % 500}"), "tiny-event": _tiny_event, "entity": _entity}


def envelope_body(shape: str, *, size: int = 0, items: int = 0) -> bytes:
    """An envelope of ``items`` items of ``shape`` (or as many as fit in ``size`` bytes)."""
    make = SHAPES[shape]
    count = items or size // (len(orjson.dumps(make(10**9))) + 1)
    return orjson.dumps(envelope(*[make(i) for i in range(count)]))


def _memory_mib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) * 1024 // MIB
    return fields


async def _post_all(url: str, token: str, bodies: list[bytes]) -> list[int]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        async def one(body: bytes) -> int:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        return list(await asyncio.gather(*(one(body) for body in bodies)))


def measure(tree: Path, kafka: KafkaSettings, work: Path, bodies: list[bytes]) -> dict[str, Any]:
    """Peak and idle memory of a fresh gateway (from ``tree``) answering ``bodies`` at once."""
    clients = work / f"clients-{time.monotonic_ns()}.json"
    client, secret = ClientRegistry(clients).add("memory", rate_limit_per_second=1e9)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "CALIPER_KAFKA__TOPIC_PREFIX": kafka.topic_prefix, "CALIPER_GATEWAY__PORT": str(port),
           "CALIPER_GATEWAY__CLIENTS_FILE": str(clients), **StackSecrets.generate(Settings()).env_for("gateway")}
    with (work / "gateway.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "caliper_pipeline.cli", "gateway"], cwd=tree, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the gateway did not start; see {work / 'gateway.log'}") from None
                time.sleep(0.2)
        form = f"grant_type=client_credentials&client_id={client.client_id}&client_secret={secret}".encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/oauth2/token", data=form)) as answer:
            token = json.loads(answer.read())["access_token"]
        asyncio.run(_post_all(f"{base}/caliper/event", token, [envelope_body("timeback", items=10)]))  # warm-up
        idle = _memory_mib(process.pid)["VmRSS"]
        started = time.perf_counter()
        statuses = asyncio.run(_post_all(f"{base}/caliper/event", token, bodies))
        seconds = time.perf_counter() - started
        peak = _memory_mib(process.pid)["VmHWM"]
        return {"idle_mib": idle, "peak_mib": peak, "extra_mib": peak - idle, "seconds": round(seconds, 2),
                "statuses": sorted(set(statuses))}
    finally:
        process.terminate()
        process.wait(20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", nargs="?", type=Path, default=REPO_ROOT, help="source tree of the gateway")
    parser.add_argument("--shapes", default="timeback,tiny-event,entity")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-memory-"))
    settings = Settings()
    with bench_kafka(settings, work) as kafka:
        kafka = kafka.model_copy(update={"topic_prefix": f"memory{int(time.time())}.", "partitions": 3})
        asyncio.run(ensure_topics(kafka))
        for shape in args.shapes.split(","):
            three, four = envelope_body(shape, size=3 * MB), envelope_body(shape, size=4 * MB)
            cases = {"one 3 MB": [three], "one 4 MB": [four], "six 3 MB at once": [three] * 6}
            if shape != "timeback":
                largest = envelope_body(shape, items=10_000)
                cases |= {"one of 10,000 items": [largest], "six of 10,000 at once": [largest] * 6}
            for name, bodies in cases.items():
                figures = measure(args.tree.resolve(), kafka, work, bodies)
                items = len(orjson.loads(bodies[0])["data"])
                print(f"{shape:<10} {name:<22} {len(bodies[0]) / MB:5.2f} MB {items:>6} items: "
                      f"+{figures['extra_mib']:>5} MiB over {figures['idle_mib']} MiB idle, "
                      f"{figures['seconds']:5.1f} s, {figures['statuses']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
