"""Compressed and refused bodies: a request refused for its token is answered without its body being read or
decoded (the connection is closed, nothing pipelined behind it is served), bodies are decoded by the gateway with
a decoded-size cap and a compression-ratio cap naming ``Content-Encoding``, ``x-gzip`` is gzip, the token form is
capped as read and decoded; a request aiohttp cannot parse is answered and logged without a byte of it."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import zlib
from pathlib import Path

import orjson
import pytest
from gateway_doubles import gateway, gateway_settings
from raw_http import connect, read_answer, request_head

from caliper_pipeline.senders.samples import envelope, hub_grade_event, timeback_activity_event
from gateway.handlers.token import MAX_FORM_BYTES

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BOUND = 30  # seconds: "before the test gives up", never a performance threshold
INGEST_PATHS = ["/caliper/event", "/caliper/event/validate", "/hub/v1/events"]


@pytest.mark.parametrize("path", INGEST_PATHS)
async def test_a_refused_token_leaves_the_compressed_body_unread(tmp_path: Path, path: str) -> None:
    """The attack: gzip bombs with an invalid token were answered 401, then aiohttp drained the unread body,
    inflating it on the event loop, and served the connection's next request. Now the connection closes after
    the 401: the request pipelined behind the bomb is never answered."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        bomb = gzip.compress(b" " * (32 * 1024 * 1024))
        reader, writer = await connect(gw)
        writer.write(request_head("POST", path, {
            "Authorization": "Bearer not-a-token", **JSON, "Content-Encoding": "gzip",
            "Content-Length": str(len(bomb))}) + bomb)
        writer.write(request_head("GET", "/healthz", {"Connection": "close"}))
        await writer.drain()
        status, headers, _ = await asyncio.wait_for(read_answer(reader), BOUND)
        assert status == 401 and headers["connection"].lower() == "close"
        try:
            rest = await asyncio.wait_for(reader.read(), BOUND)
        except ConnectionResetError:
            rest = b""
        assert b"HTTP/1.1" not in rest  # /healthz was not served: the bomb was not read through
        writer.close()


@pytest.mark.parametrize("path", INGEST_PATHS)
async def test_x_gzip_is_gzip_and_raw_deflate_is_deflate(tmp_path: Path, path: str) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        body = orjson.dumps(hub_grade_event() if path.startswith("/hub") else envelope(timeback_activity_event()))
        raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        for encoding, coded in [("x-gzip", gzip.compress(body)), ("X-GZip", gzip.compress(body)),
                                ("deflate", zlib.compress(body)),
                                ("deflate", raw_deflate.compress(body) + raw_deflate.flush())]:
            response = await gw.client.post(path, data=coded, headers={**auth, **JSON, "Content-Encoding": encoding})
            assert response.status == 200, (encoding, await response.text())
        response = await gw.client.post(path, data=body, headers={**auth, **JSON, "Content-Encoding": "br"})
        assert response.status == 415


async def test_compressed_bodies_are_capped_by_decoded_size_and_by_ratio(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, max_body_bytes=256 * 1024, max_compression_ratio=50)
    async with gateway(settings) as gw:
        auth = await gw.ingest_auth()
        headers = {**auth, **JSON, "Content-Encoding": "gzip"}
        bomb = gzip.compress(b" " * (8 * 1024 * 1024))
        response = await gw.client.post("/caliper/event", data=bomb, headers=headers)
        answer = await response.json()
        assert response.status == 413 and "50 times" in answer["message"]
        assert [problem["path"] for problem in answer["errors"]] == ["Content-Encoding"]
        # ~2x compressible, larger than the body limit once decoded: the size cap, naming the coding
        noise = os.urandom(200 * 1024).hex().encode()
        response = await gw.client.post("/caliper/event", data=gzip.compress(noise), headers=headers)
        answer = await response.json()
        assert response.status == 413 and "262144 bytes once decoded (Content-Encoding: gzip)" in answer["message"]
        truncated = gzip.compress(orjson.dumps(envelope(timeback_activity_event())))[:-20]
        response = await gw.client.post("/caliper/event", data=truncated, headers=headers)
        assert response.status == 400 and "truncated" in (await response.json())["message"]
        trailing = gzip.compress(orjson.dumps(envelope(timeback_activity_event()))) + b"more"
        response = await gw.client.post("/caliper/event", data=trailing, headers=headers)
        assert response.status == 400 and "after the end" in (await response.json())["message"]
        assert gw.publisher.published == []


async def test_the_token_form_is_capped_as_read_and_as_decoded(tmp_path: Path) -> None:
    """The form is read before any credential is checked: at most ``MAX_FORM_BYTES`` whether the body is sent
    with a Content-Length, chunked or compressed."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        form = b"grant_type=client_credentials&client_id=a&client_secret=" + b"x" * (MAX_FORM_BYTES + 100)

        async def chunked() -> object:
            yield form

        for data, extra in [(chunked(), {}), (gzip.compress(form), {"Content-Encoding": "gzip"}),
                            (gzip.compress(form), {"Content-Encoding": "x-gzip"})]:
            response = await gw.client.post("/oauth2/token", data=data, headers={**FORM, **extra})
            assert response.status == 413, (extra, await response.text())
            assert (await response.json())["error"] == "invalid_request"


@pytest.mark.parametrize("where", ["header value", "header name", "request line"])
async def test_an_oversized_header_is_not_echoed_in_the_answer_or_the_log(
        tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
    secret = "SECRETVALUE" * 900  # ~9,900 bytes: over the 8,190-byte line limit
    async with gateway(gateway_settings(tmp_path)) as gw:
        reader, writer = await connect(gw)
        with caplog.at_level(logging.DEBUG):
            if where == "request line":
                writer.write(f"GET /{secret} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
            else:
                writer.write(request_head("GET", "/healthz", {"X-Token": secret} if where == "header value"
                                          else {f"X-{secret}": "v"}))
            await writer.drain()
            status, _, body = await asyncio.wait_for(read_answer(reader), BOUND)
            writer.close()
            await asyncio.sleep(0.05)  # the server's log lines of the answer
    assert status == 400 and b"8190 bytes" in body
    assert b"SECRETVALUE" not in body
    logged = "\n".join(caplog.text.splitlines() + [record.getMessage() for record in caplog.records])
    assert "SECRETVALUE" not in logged
