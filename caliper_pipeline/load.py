"""A closed-loop HTTP load driver: N concurrent senders for a fixed time, latencies recorded per request."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    seconds: float
    requests: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
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
