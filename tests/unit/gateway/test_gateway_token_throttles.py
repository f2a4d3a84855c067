"""``POST /oauth2/token``'s throttles and its scrypt bound: an address guessing is refused, other addresses'
failures never refuse a client's correct secret, and the secret checks stay bounded however many addresses ask.

Requests come from the address in ``REMOTE_ADDRESS_HEADER`` (the harness sets the request's peer address from
it); scrypt is replaced by a cheap keyed hash that counts its calls and can be held, so that a test decides
when the checks end; the buckets' clock is moved by the test only."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from gateway_doubles import REMOTE_ADDRESS_HEADER, GatewayHarness, gateway, gateway_settings

from gateway.token_guard import WAITING_PER_WORKER

GRANT = {"grant_type": "client_credentials"}
UNTHROTTLED_ATTEMPTS = {"token_attempts_per_second_per_address": 1000.0, "token_attempts_burst_per_address": 1000.0}
CLIENT_ADDRESS = "203.0.113.7"


class HeldScrypt:
    """Stands in for ``hashlib.scrypt``: a keyed SHA-256 (a correct secret still matches its stored hash), counting
    its calls; while ``open`` is clear, every call waits for it."""

    def __init__(self) -> None:
        self.calls = 0
        self.open = threading.Event()
        self.open.set()
        self._lock = threading.Lock()

    def __call__(self, password: bytes, *, salt: bytes, dklen: int = 64, **cost: Any) -> bytes:
        with self._lock:
            self.calls += 1
        self.open.wait(30)
        return hashlib.sha256(salt + password).digest()[:dklen]


@pytest.fixture
def scrypt(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldScrypt]:
    held = HeldScrypt()
    monkeypatch.setattr(hashlib, "scrypt", held)
    yield held
    held.open.set()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The token buckets' clock, moved by the test only."""
    now = [1000.0]
    monkeypatch.setattr("gateway.ratelimit._now", lambda: now[0])
    return now


class Answer:
    def __init__(self, status: int, body: dict[str, Any], retry_after: str | None) -> None:
        self.status, self.body, self.retry_after = status, body, retry_after


async def _attempt(gw: GatewayHarness, address: str, client_id: str, secret: str) -> Answer:
    """One token request from ``address``, its answer read (its connection free again)."""
    async with gw.client.post("/oauth2/token", data={**GRANT, "client_id": client_id, "client_secret": secret},
                              headers={REMOTE_ADDRESS_HEADER: address}) as response:
        return Answer(response.status, await response.json(), response.headers.get("Retry-After"))


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (without a deadline of its own: pytest's timeout, if any) until ``condition`` holds."""
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.005)


def _answered(tasks: Sequence[asyncio.Future[Answer]]) -> int:
    return sum(task.done() for task in tasks)


def _slow_down(answer: Answer) -> bool:
    return (answer.status == 429 and answer.body["error"] == "slow_down" and answer.retry_after is not None
            and int(answer.retry_after) >= 1)


async def test_token_attempts_are_throttled_per_address(tmp_path: Path, scrypt: HeldScrypt,
                                                        clock: list[float]) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:  # 5 attempts/s, bursts of 10, per address
        answers = [await _attempt(gw, "198.51.100.1", f"id-{index}", "wrong") for index in range(12)]
        assert [a.status for a in answers] == [401] * 10 + [429] * 2 and _slow_down(answers[-1])
        assert (await _attempt(gw, "198.51.100.2", "id-x", "wrong")).status == 401  # another address
        clock[0] += 1.0  # five attempts' worth refilled
        assert (await _attempt(gw, "198.51.100.1", "id-x", "wrong")).status == 401


async def test_an_ipv6_host_is_one_address_by_its_64_network(tmp_path: Path, scrypt: HeldScrypt) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        answers = [await _attempt(gw, f"2001:db8::{index + 1:x}", f"id-{index}", "wrong") for index in range(11)]
        assert [a.status for a in answers] == [401] * 10 + [429]
        assert (await _attempt(gw, "2001:db8:0:1::1", "id-x", "wrong")).status == 401  # another /64


async def test_one_address_guessing_is_throttled_per_client_and_per_address(tmp_path: Path, scrypt: HeldScrypt,
                                                                            clock: list[float]) -> None:
    """Failures are counted per (address, client id) (0.5/s, bursts of 5) and per address (1/s, bursts of 10):
    past either, the address is answered 429 without a secret check, and no other address is."""
    async with gateway(gateway_settings(tmp_path, **UNTHROTTLED_ATTEMPTS)) as gw:
        client, secret = gw.add_client("school-a")
        guesser = "198.51.100.1"
        assert [(await _attempt(gw, guesser, client.client_id, "guess")).status for _ in range(5)] == [401] * 5
        checks = scrypt.calls
        assert _slow_down(await _attempt(gw, guesser, client.client_id, "guess"))
        assert _slow_down(await _attempt(gw, guesser, client.client_id, secret))  # its own failures
        assert scrypt.calls == checks  # nothing checked while throttled
        assert (await _attempt(gw, CLIENT_ADDRESS, client.client_id, secret)).status == 200
        # the same address guessing other ids: 5 more failures make its 10, then every id is refused
        assert [(await _attempt(gw, guesser, f"id-{index}", "guess")).status for index in range(5)] == [401] * 5
        checks = scrypt.calls
        assert _slow_down(await _attempt(gw, guesser, "id-new", "guess"))
        assert scrypt.calls == checks
        assert (await _attempt(gw, "198.51.100.2", "id-new", "guess")).status == 401
        clock[0] += 2.0  # two failures' worth per address and one per (address, client id) refilled
        assert (await _attempt(gw, guesser, client.client_id, secret)).status == 200


async def test_wrong_secrets_from_other_addresses_never_refuse_the_clients_correct_secret(
        tmp_path: Path, scrypt: HeldScrypt, clock: list[float]) -> None:
    """Two addresses guessing the client's secret at 4.5 attempts/s each (under the per-address rate); the
    client's own requests from a third address all succeed (a per-client-id lock refused 17 of 24)."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        client, secret = gw.add_client("school-a")
        statuses = []
        for _ in range(24):
            clock[0] += 1 / 4.5
            for guesser in ("198.51.100.1", "198.51.100.2"):
                assert (await _attempt(gw, guesser, client.client_id, "guess")).status in (401, 429)
            statuses.append((await _attempt(gw, CLIENT_ADDRESS, client.client_id, secret)).status)
        assert statuses == [200] * 24


async def _ask_while_flooded(gw: GatewayHarness, scrypt: HeldScrypt, floods: list[str], client_id: str,
                             secret: str, copies: int = 2) -> Answer:
    """Hold the checks, flood from ``floods`` (``copies`` unknown ids each, at once) until the queue is full, ask
    for a token from ``CLIENT_ADDRESS``, then let the checks run: the answer to that request (every flood's answer
    is checked)."""
    in_flight = gw.settings.token_hash_workers * (1 + WAITING_PER_WORKER)  # checks running or waiting, at most
    scrypt.open.clear()
    flood = [asyncio.ensure_future(_attempt(gw, address, f"ghost-{uuid.uuid4()}", "guess"))
             for address in floods for _ in range(copies)]
    await _until(lambda: _answered(flood) >= len(flood) - in_flight)  # the queue is full
    answered = _answered(flood)
    own = asyncio.ensure_future(_attempt(gw, CLIENT_ADDRESS, client_id, secret))
    await _until(lambda: own.done() or _answered(flood) > answered)  # answered, or queued in a flood's place
    scrypt.open.set()
    answers = await asyncio.gather(*flood)
    assert all(a.status == 401 or _slow_down(a) for a in answers)
    return await own


async def test_a_flood_of_unknown_ids_from_many_addresses_does_not_refuse_the_clients_correct_secret(
        tmp_path: Path, scrypt: HeldScrypt, clock: list[float]) -> None:
    """50 addresses that have failed flood the endpoint with unknown ids until its queue is full; the client's
    correct secret from an address that has not failed still gets its turn, round after round."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        client, secret = gw.add_client("school-a")
        floods = [f"198.51.100.{index}" for index in range(1, 51)]
        for address in floods:
            assert (await _attempt(gw, address, f"ghost-{address}", "guess")).status == 401
        statuses = []
        for _ in range(5):
            clock[0] += 1.0
            statuses.append((await _ask_while_flooded(gw, scrypt, floods, client.client_id, secret)).status)
        assert statuses == [200] * 5


async def test_a_client_that_got_a_token_keeps_its_turn_against_a_flood_from_fresh_addresses(
        tmp_path: Path, scrypt: HeldScrypt, clock: list[float]) -> None:
    """Addresses that have never failed flood the endpoint: they rank like any new address, and fill the queue; a
    client that got a token from its address lately (as it does to renew its token) still gets its turn."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        client, secret = gw.add_client("school-a")
        assert (await _attempt(gw, CLIENT_ADDRESS, client.client_id, secret)).status == 200
        statuses = []
        for round_ in range(3):
            clock[0] += 1.0
            floods = [f"198.51.{round_}.{index}" for index in range(1, 51)]  # fresh addresses every round
            statuses.append((await _ask_while_flooded(gw, scrypt, floods, client.client_id, secret, 1)).status)
        assert statuses == [200] * 3


async def test_an_address_takes_one_place_at_a_time_in_the_queue(tmp_path: Path, scrypt: HeldScrypt) -> None:
    """Three addresses that have not failed yet fill the queue with attempts sent at once; a new address's first
    attempt ranks before their second and later ones, and gets its turn."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        client, secret = gw.add_client("school-a")
        floods = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        assert (await _ask_while_flooded(gw, scrypt, floods, client.client_id, secret, 8)).status == 200


async def test_the_scrypt_work_is_bounded_however_many_addresses_ask(tmp_path: Path, scrypt: HeldScrypt) -> None:
    """300 concurrent attempts from 300 addresses: the workers' checks run, the queue's wait, every other attempt
    is answered 429 at once, without a secret check."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        workers = gw.settings.token_hash_workers
        in_flight = workers * (1 + WAITING_PER_WORKER)
        scrypt.open.clear()
        flood = [asyncio.ensure_future(_attempt(gw, f"10.0.{index // 200}.{index % 200}", f"ghost-{index}", "guess"))
                 for index in range(300)]
        await _until(lambda: _answered(flood) >= len(flood) - in_flight)
        assert all(_slow_down(task.result()) for task in flood if task.done())
        assert scrypt.calls <= workers
        scrypt.open.set()
        answers = await asyncio.gather(*flood)
    assert scrypt.calls == in_flight
    assert Counter(a.status for a in answers) == {401: in_flight, 429: len(flood) - in_flight}
