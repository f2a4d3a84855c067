"""What protects the token endpoint: secret checks (scrypt) off the event loop, throttles, a bounded fair queue.

Throttles, each a token bucket answered 429 ``slow_down`` with ``Retry-After`` before any scrypt is spent:

- per remote address, every attempt (``token_attempts_*_per_address``): what one address may cost, correct
  secrets included;
- per remote address, failed attempts (``token_failures_*_per_address``): one address guessing across ids;
- per (address, client id), failed attempts (``token_failures_*_per_address_client``): one address guessing one
  client's secret.

Nothing is counted per client id alone: failures from other addresses never refuse a client's correct secret.
Guessing one client's secret from many addresses is bounded by each address's limits and by the scrypt bound
below (and the secrets are 256 random bits). Unknown client ids are throttled like known ones and cost the same
scrypt (``gateway.clients.client_secret_ok``), so neither the answer nor its time says which ids exist.

The scrypt bound: at most ``token_hash_workers`` checks run at once (a thread pool; scrypt releases the GIL, so a
flood cannot stall ingest on the event loop) and at most ``WAITING_PER_WORKER`` per worker wait. The waiting checks
are ranked, best first:

1. those of an address that got a token within ``token_trusted_address_seconds`` (a real client renewing its
   token; an attacker without a secret never gets there);
2. then by the address's standing: its recent failures (each remembered for ``token_failure_memory_seconds``,
   fading) plus its checks already waiting or running when this one arrived (one address, one place at a time);
3. then by arrival.

The best runs next; when the queue is full, a newcomer ranked better than the worst waiting check takes its place
(that one is answered 429), any other newcomer is answered 429. A flood, from however many addresses, thus only
delays the check of an address that got a token lately, and of one that has neither failed lately nor has another
check waiting; the flood competes with the latter on equal terms only from addresses in that same state (first
come, first served).

IPv6 addresses count by their /64 network (one host usually holds a whole /64).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from gateway.clients import Client, client_secret_ok
from gateway.errors import OAuthError
from gateway.ratelimit import TokenBuckets
from gateway.settings import GatewaySettings

WAITING_PER_WORKER = 8
BUSY_RETRY_AFTER_SECONDS = 1
FAILURES_REMEMBERED = 100.0  # per address, for the queue's order (beyond that, equally last)


def address_key(remote: str | None) -> str:
    """The key an address is throttled by: the IP as text, an IPv6 address's /64 network (an IPv4-mapped one as
    IPv4)."""
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _busy() -> OAuthError:
    return OAuthError(429, "slow_down", "the token endpoint is busy", retry_after=BUSY_RETRY_AFTER_SECONDS)


@dataclass(eq=False)
class _Check:
    address: str
    ahead: int  # the address's checks waiting or running when this one arrived
    arrival: int
    client: Client | None
    secret: str = field(repr=False)
    outcome: asyncio.Future[bool]


class TokenGuard:
    def __init__(self, settings: GatewaySettings) -> None:
        self.attempts = TokenBuckets(settings.token_attempts_per_second_per_address,
                                     settings.token_attempts_burst_per_address)
        self.address_failures = TokenBuckets(settings.token_failures_per_second_per_address,
                                             settings.token_failures_burst_per_address)
        self.pair_failures = TokenBuckets(settings.token_failures_per_second_per_address_client,
                                          settings.token_failures_burst_per_address_client)
        self.recent_failures = TokenBuckets(1.0 / settings.token_failure_memory_seconds, FAILURES_REMEMBERED)
        self.recent_tokens = TokenBuckets(1.0 / settings.token_trusted_address_seconds, 1.0)  # > 0: trusted
        self.pending: dict[str, int] = {}  # checks waiting or running, per address
        self.workers = settings.token_hash_workers
        self.max_waiting = settings.token_hash_workers * WAITING_PER_WORKER
        self.running = 0
        self.waiting: list[_Check] = []
        self._arrivals = itertools.count()
        self._pool: ThreadPoolExecutor | None = None

    def admit(self, remote: str | None) -> str:
        """Count one attempt from ``remote``; 429 when its address is over its rate. Returns the address's key."""
        address = address_key(remote)
        wait = self.attempts.take(address)
        if wait is not None:
            raise OAuthError(429, "slow_down", "too many token requests from this address", retry_after=wait)
        return address

    def check_not_throttled(self, address: str, client_id: str) -> None:
        """429 while ``address`` has used up its failed attempts, overall or for ``client_id`` (nothing is checked
        meanwhile). Failures from other addresses do not count."""
        wait = self.address_failures.wait_seconds(address)
        if wait is not None:
            raise OAuthError(429, "slow_down", "too many failed attempts from this address", retry_after=wait)
        wait = self.pair_failures.wait_seconds(_pair(address, client_id))
        if wait is not None:
            raise OAuthError(429, "slow_down", "too many failed attempts for this client from this address",
                             retry_after=wait)

    async def secret_ok(self, address: str, client_id: str, client: Client | None, secret: str) -> bool:
        """One scrypt in the pool, in its turn (429 when the queue has no room for it); a failure is charged to
        ``address`` and to (``address``, ``client_id``)."""
        check = _Check(address, self.pending.get(address, 0), next(self._arrivals), client, secret,
                       asyncio.get_running_loop().create_future())
        self._enqueue(check)
        self.pending[address] = check.ahead + 1
        self._dispatch()
        try:
            ok = await check.outcome
        finally:
            if check in self.waiting:  # the request went away while waiting
                self.waiting.remove(check)
            left = self.pending.pop(address) - 1
            if left:
                self.pending[address] = left
        if ok:
            self.recent_tokens.drain(address)
        else:
            self.address_failures.take(address)
            self.pair_failures.take(_pair(address, client_id))
            self.recent_failures.take(address)
        return ok

    def _rank(self, check: _Check) -> tuple[bool, float, int]:
        trusted = self.recent_tokens.used(check.address) > 0
        return not trusted, self.recent_failures.used(check.address) + check.ahead, check.arrival

    def _enqueue(self, check: _Check) -> None:
        if len(self.waiting) >= self.max_waiting:
            worst = max(self.waiting, key=self._rank)
            if self._rank(check) >= self._rank(worst):
                raise _busy()
            self.waiting.remove(worst)
            worst.outcome.set_exception(_busy())
        self.waiting.append(check)

    def _dispatch(self) -> None:
        while self.running < self.workers and self.waiting:
            check = min(self.waiting, key=self._rank)
            self.waiting.remove(check)
            if check.outcome.done():  # cancelled while waiting
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="token-secret-check")
            self.running += 1
            work = asyncio.get_running_loop().run_in_executor(self._pool, client_secret_ok, check.client,
                                                              check.secret)
            work.add_done_callback(partial(self._finished, check))

    def _finished(self, check: _Check, work: asyncio.Future[bool]) -> None:
        self.running -= 1
        if not check.outcome.done():
            if work.cancelled():
                check.outcome.cancel()
            elif (error := work.exception()) is not None:
                check.outcome.set_exception(error)
            else:
                check.outcome.set_result(work.result())
        self._dispatch()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _pair(address: str, client_id: str) -> str:
    return f"{address} {client_id}"  # an address holds no space: the key is unambiguous
