"""Token buckets: per-client event rates (ingest) and per-address / per-(address, client id) attempts (token
endpoint)."""

from __future__ import annotations

import math
import time

_now = time.monotonic  # the buckets' clock (a test may move it)


class TokenBuckets:
    """One bucket per key, refilled at ``rate`` per second up to ``capacity``.

    Bounded in memory: past ``max_keys`` keys, the buckets that are full again (idle keys) are forgotten, and if
    that is not enough the oldest half is dropped (a forgotten key starts full, as a new key does).
    """

    def __init__(self, rate: float, capacity: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.capacity = capacity
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, rate: float, capacity: float, now: float) -> float:
        tokens, updated = self._buckets.get(key, (capacity, now))
        return min(capacity, tokens + (now - updated) * rate)

    def wait_seconds(self, key: str, cost: float = 1.0, rate: float | None = None,
                     capacity: float | None = None) -> int | None:
        """Seconds until ``cost`` tokens are there (rounded up, >= 1), or None when they are there now."""
        rate, capacity = rate or self.rate, capacity or self.capacity
        missing = cost - self._level(key, rate, capacity, _now())
        return None if missing <= 0 else max(1, math.ceil(missing / rate))

    def used(self, key: str) -> float:
        """Tokens taken from ``key``'s bucket and not refilled yet (0 for a full bucket or an unknown key)."""
        return self.capacity - self._level(key, self.rate, self.capacity, _now())

    def drain(self, key: str) -> None:
        """Empty ``key``'s bucket: it refills from now (a bucket used as a memory of when ``key`` last acted)."""
        now = _now()
        self._buckets[key] = (0.0, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def take(self, key: str, cost: float = 1.0, rate: float | None = None,
             capacity: float | None = None) -> int | None:
        """Take ``cost`` tokens: None when allowed, else the seconds to wait before retrying (nothing taken)."""
        rate, capacity = rate or self.rate, capacity or self.capacity
        now = _now()
        tokens = self._level(key, rate, capacity, now)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((cost - tokens) / rate))
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)
        return None

    def _prune(self, now: float) -> None:
        self._buckets = {key: (tokens, updated) for key, (tokens, updated) in self._buckets.items()
                         if tokens + (now - updated) * self.rate < self.capacity}
        if len(self._buckets) > self.max_keys:
            newest = sorted(self._buckets.items(), key=lambda item: item[1][1])[len(self._buckets) // 2:]
            self._buckets = dict(newest)


class RateLimiter:
    """Per-client event rates: a client may send ``per_second`` events per second, in bursts of at most
    ``burst_seconds`` seconds' worth (the bucket's fixed capacity)."""

    def __init__(self, default_per_second: float, burst_seconds: float = 1.0) -> None:
        self.default_per_second = default_per_second
        self.burst_seconds = burst_seconds
        self._buckets = TokenBuckets(default_per_second, default_per_second * burst_seconds)

    def capacity(self, per_second: float | None) -> float:
        return (per_second or self.default_per_second) * self.burst_seconds

    def acquire(self, client_id: str, cost: float, per_second: float | None) -> int | None:
        """Take ``cost`` tokens; None when allowed, else the seconds to wait before retrying."""
        rate = per_second or self.default_per_second
        return self._buckets.take(client_id, cost, rate, self.capacity(per_second))
