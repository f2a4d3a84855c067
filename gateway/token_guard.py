"""What protects the token endpoint: secret checks (scrypt) off the event loop, throttles, a bounded queue.

- Each scrypt runs in a small thread pool (``token_hash_workers`` threads; scrypt releases the GIL), so a flood of
  token requests cannot stall ingest on the event loop; at most ``WAITING_PER_WORKER`` checks per worker may
  wait, more are answered 429 at once.
- Attempts are throttled per remote address (every attempt) and per client id (failed attempts), both token
  buckets answered 429 ``slow_down`` with ``Retry-After``. Unknown client ids are throttled like known ones and
  cost the same scrypt (``gateway.clients.client_secret_ok``), so neither the answer nor its time says which ids
  exist.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from gateway.clients import Client, client_secret_ok
from gateway.errors import OAuthError
from gateway.ratelimit import TokenBuckets
from gateway.settings import GatewaySettings

WAITING_PER_WORKER = 8


class TokenGuard:
    def __init__(self, settings: GatewaySettings) -> None:
        self.addresses = TokenBuckets(settings.token_attempts_per_second_per_address,
                                      settings.token_attempts_burst_per_address)
        self.failures = TokenBuckets(settings.token_failures_per_second_per_client,
                                     settings.token_failures_burst_per_client)
        self.workers = settings.token_hash_workers
        self.max_waiting = settings.token_hash_workers * WAITING_PER_WORKER
        self.in_flight = 0
        self._pool: ThreadPoolExecutor | None = None

    def admit(self, address: str) -> None:
        """Count one attempt from ``address``; 429 when that address is over its rate."""
        wait = self.addresses.take(address)
        if wait is not None:
            raise OAuthError(429, "slow_down", "too many token requests from this address", retry_after=wait)

    def check_not_locked(self, client_id: str) -> None:
        """429 while ``client_id`` has used up its failed attempts (nothing is checked meanwhile)."""
        wait = self.failures.wait_seconds(client_id)
        if wait is not None:
            raise OAuthError(429, "slow_down", "too many failed attempts for this client", retry_after=wait)

    async def secret_ok(self, client_id: str, client: Client | None, secret: str) -> bool:
        """One scrypt in the pool; a failure is charged to ``client_id``."""
        if self.in_flight >= self.max_waiting:
            raise OAuthError(429, "slow_down", "the token endpoint is busy", retry_after=1)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="token-secret-check")
        self.in_flight += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._pool, client_secret_ok, client, secret)
        finally:
            self.in_flight -= 1
        if not ok:
            self.failures.take(client_id)
        return ok

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
