"""A closed-loop HTTP load driver: N concurrent senders for a fixed time, latencies recorded per request."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from caliper_pipeline.local.processes import die_with_parent


@dataclass
class LoadResult:
    seconds: float
    requests: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    reported_percentiles_ms: dict[float, float] = field(default_factory=dict)  # from an external driver (wrk)
    driver: str = "python"

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if fraction in self.reported_percentiles_ms:
            return self.reported_percentiles_ms[fraction]
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def drive(url: str, make_body: Callable[[], bytes], *, events_per_body: int, concurrency: int,
                seconds: float, headers: dict[str, str] | None = None, warmup: float = 1.0) -> LoadResult:
    """POST bodies from ``make_body`` with ``concurrency`` senders for ``seconds`` (after a warm-up)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    bodies = [make_body() for _ in range(256)]
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    result = LoadResult(seconds=seconds)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + warmup + seconds
        measure_from = time.perf_counter() + warmup

        async def sender(index: int) -> None:
            i = index
            while True:
                started = time.perf_counter()
                if started >= stop_at:
                    return
                try:
                    async with session.post(url, data=bodies[i % len(bodies)], headers=all_headers) as response:
                        await response.read()
                        status = response.status
                except aiohttp.ClientError:
                    status = 0
                finished = time.perf_counter()
                i += concurrency
                if started < measure_from:
                    continue
                result.requests += 1
                result.statuses[status] += 1
                if status == 200:
                    result.events += events_per_body
                    result.latencies.append(finished - started)
                else:
                    result.errors += 1

        await asyncio.gather(*(sender(i) for i in range(concurrency)))
    return result


_WRK_SCRIPT = """
wrk.method = "POST"
local file = io.open("{body}", "rb")
wrk.body = file:read("*a")
file:close()
{headers}
"""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def drive_wrk(url: str, body: bytes, *, events_per_body: int, concurrency: int, seconds: float,
              headers: dict[str, str] | None = None, work_dir: Path) -> LoadResult:
    """The same measurement with wrk (C, one thread), which costs the machine far less CPU than a Python driver:
    used when ``wrk`` is installed, so the gateway, not the load generator, is what saturates."""
    body_path = work_dir / f"wrk-body-{len(body)}.json"
    body_path.write_bytes(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    script = work_dir / f"wrk-{len(body)}.lua"
    script.write_text(_WRK_SCRIPT.format(body=body_path, headers="\n".join(
        f'wrk.headers["{name}"] = "{value}"' for name, value in all_headers.items())))
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60,
                            preexec_fn=die_with_parent()).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    percentiles = {}
    for label, fraction in (("50%", 0.5), ("99%", 0.99)):
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output)
        if match:
            percentiles[fraction] = float(match.group(1)) * _UNITS_MS[match.group(2)]
    seconds_run = float(re.search(r"requests in ([\d.]+)(m?s)", output).group(1))  # type: ignore[union-attr]
    result = LoadResult(seconds=seconds_run, requests=requests, events=(requests - errors) * events_per_body,
                        errors=errors, reported_percentiles_ms=percentiles, driver="wrk")
    return result
