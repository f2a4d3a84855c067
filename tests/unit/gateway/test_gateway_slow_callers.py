"""Slow callers cannot starve the others: a body that stops arriving (or trickles) is answered 408 and its
connection closed, one client id or one remote address holds at most its share of the in-flight body budget, a
request head sent a byte at a time is dropped at the header timeout. Real aiohttp server on loopback, raw sockets
for the slow clients; the timeouts are set short through the settings."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest
from gateway_doubles import GatewayHarness, gateway, gateway_settings
from raw_http import closed, connect, read_answer, request_head

from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from gateway.keys import BODY_BUDGET

JSON = {"Content-Type": "application/json"}
BOUND = 30  # seconds: "before the test gives up", never a performance threshold
MAX_BODY = 64 * 1024


async def _declare_and_idle(gw: GatewayHarness, auth: dict[str, str], source: str,
                            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that declares a body of ``MAX_BODY`` bytes, sends 10 of them and goes quiet."""
    reader, writer = await connect(gw, source)
    writer.write(request_head("POST", "/caliper/event", {**auth, **JSON, "Content-Length": str(MAX_BODY)}))
    writer.write(b'{"data": [')
    await writer.drain()
    return reader, writer


async def _post_small(gw: GatewayHarness, auth: dict[str, str]) -> int:
    body = orjson.dumps(envelope(timeback_activity_event()))
    response = await gw.client.post("/caliper/event", data=body, headers={**auth, **JSON})
    return response.status


async def test_idle_bodies_neither_starve_other_senders_nor_stay_open(tmp_path: Path) -> None:
    """The attack: eight connections declare a full-size body and idle; every other sender was answered 503
    (budget used up) for as long as they stayed, and nothing ever closed them."""
    settings = gateway_settings(tmp_path, max_body_bytes=MAX_BODY, max_inflight_body_bytes=8 * MAX_BODY,
                                body_timeout_seconds=1.0)
    async with gateway(settings) as gw:
        attacker, other = await gw.ingest_auth("school-a"), await gw.ingest_auth("school-b")
        idle = [await _declare_and_idle(gw, attacker, "127.0.0.2") for _ in range(8)]
        budget = gw.client.app[BODY_BUDGET]
        while sum(1 for _, writer in idle if not writer.is_closing()) and budget.in_use < 2 * MAX_BODY:
            await asyncio.sleep(0.01)  # the first two have their share reserved; the others were refused
        assert await _post_small(gw, other) == 200  # the budget is not theirs alone
        statuses = []
        for reader, writer in idle:
            status, headers, _ = await asyncio.wait_for(read_answer(reader), BOUND)
            statuses.append(status)
            assert headers.get("connection", "").lower() == "close"
            assert await asyncio.wait_for(closed(reader), BOUND)
            writer.close()
        # two took the client's share (25 % of 8 bodies) and timed out, six were refused at once
        assert sorted(statuses) == [408, 408, 429, 429, 429, 429, 429, 429]
        assert budget.in_use == 0
        assert await _post_small(gw, attacker) == 200  # the connections are gone, so is their reservation


async def test_a_trickling_body_is_dropped_at_the_minimum_rate(tmp_path: Path) -> None:
    """A byte every 0.2 s never trips the per-read timeout; the minimum average rate drops it."""
    settings = gateway_settings(tmp_path, max_body_bytes=MAX_BODY, body_timeout_seconds=1.0,
                                min_body_bytes_per_second=100)
    async with gateway(settings) as gw:
        auth = await gw.ingest_auth()
        reader, writer = await connect(gw)
        writer.write(request_head("POST", "/caliper/event", {**auth, **JSON, "Content-Length": str(MAX_BODY)}))

        async def trickle() -> None:
            for _ in range(int(BOUND / 0.2)):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.2)

        sender = asyncio.ensure_future(trickle())
        try:
            status, _, answer = await asyncio.wait_for(read_answer(reader), BOUND)
        finally:
            sender.cancel()
        assert status == 408 and b"too slowly" in answer
        assert await asyncio.wait_for(closed(reader), BOUND)
        writer.close()


@pytest.mark.parametrize("shared", ["client id", "remote address"])
async def test_one_caller_holds_at_most_its_share_of_the_body_budget(tmp_path: Path, shared: str) -> None:
    settings = gateway_settings(tmp_path, max_body_bytes=MAX_BODY, max_inflight_body_bytes=8 * MAX_BODY)
    async with gateway(settings) as gw:
        one = await gw.ingest_auth("school-a")
        callers = [(one if shared == "client id" else await gw.ingest_auth(f"school-{index}"),
                    f"127.0.0.{index + 2}" if shared == "client id" else "127.0.0.2") for index in range(3)]
        held = [await _declare_and_idle(gw, auth, source) for auth, source in callers]
        status, headers, answer = await asyncio.wait_for(read_answer(held[2][0]), BOUND)
        assert status == 429 and int(headers["retry-after"]) > 0
        assert b"at most 131072 bytes at once" in answer
        assert gw.client.app[BODY_BUDGET].in_use == 2 * MAX_BODY
        for _, writer in held:
            writer.close()


async def test_an_unauthenticated_body_reserves_nothing_and_its_connection_closes(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, max_body_bytes=MAX_BODY, max_inflight_body_bytes=MAX_BODY)
    async with gateway(settings) as gw:
        auth = await gw.ingest_auth()
        refused = [await _declare_and_idle(gw, {"Authorization": "Bearer not-a-token"}, "127.0.0.2")
                   for _ in range(4)]
        for reader, writer in refused:
            status, _, _ = await asyncio.wait_for(read_answer(reader), BOUND)
            assert status == 401
            assert await asyncio.wait_for(closed(reader), BOUND)  # its body is not waited for
            writer.close()
        assert gw.client.app[BODY_BUDGET].in_use == 0
        assert await _post_small(gw, auth) == 200


async def test_a_request_head_sent_a_byte_at_a_time_is_dropped(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, header_timeout_seconds=1.0)) as gw:
        reader, writer = await connect(gw)
        head = request_head("GET", "/healthz", {"X-Slow": "a" * 1000})
        sent = 0

        async def slowloris() -> None:
            nonlocal sent
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.1)

        sender = asyncio.ensure_future(slowloris())
        try:
            assert await asyncio.wait_for(closed(reader), BOUND)
        finally:
            sender.cancel()
            writer.close()
        assert sent < len(head)  # dropped before the head was complete, without an answer
        auth = await gw.ingest_auth()
        assert await _post_small(gw, auth) == 200


async def test_a_caller_leaving_mid_body_is_no_unexpected_error(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    async with gateway(gateway_settings(tmp_path, max_body_bytes=MAX_BODY)) as gw:
        auth = await gw.ingest_auth()
        budget = gw.client.app[BODY_BUDGET]
        _, writer = await _declare_and_idle(gw, auth, "127.0.0.1")
        while budget.in_use == 0:
            await asyncio.sleep(0.01)
        writer.close()
        while budget.in_use:
            await asyncio.sleep(0.01)
        assert await _post_small(gw, auth) == 200
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
