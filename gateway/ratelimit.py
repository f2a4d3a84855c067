"""Per-client token buckets."""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, default_per_second: float) -> None:
        self.default_per_second = default_per_second
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, client_id: str, cost: float, per_second: float | None) -> int | None:
        """Take ``cost`` tokens; None when allowed, else the seconds to wait before retrying."""
        rate = per_second or self.default_per_second
        capacity = max(rate, cost)
        now = time.monotonic()
        tokens, updated = self._buckets.get(client_id, (capacity, now))
        tokens = min(capacity, tokens + (now - updated) * rate)
        if tokens < cost:
            self._buckets[client_id] = (tokens, now)
            return max(1, math.ceil((cost - tokens) / rate))
        self._buckets[client_id] = (tokens - cost, now)
        return None
