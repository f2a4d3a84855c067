"""``POST /oauth2/token``: RFC 6749 answers for every malformed request (never a 500), ``invalid_scope``,
secret checks off the event loop, the same work for unknown client ids (its throttles:
``test_gateway_token_throttles``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from gateway_doubles import GatewayHarness, gateway, gateway_settings

from gateway.settings import INGEST_SCOPE, READ_SCOPE

GRANT = {"grant_type": "client_credentials"}
UNTHROTTLED = {"token_attempts_per_second_per_address": 1000.0, "token_attempts_burst_per_address": 1000.0}


async def _oauth_error(response: ClientResponse) -> str:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "error_description"}
    return str(body["error"])


def _basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def _post(gw: GatewayHarness, data: Any = None, **options: Any) -> ClientResponse:
    return await gw.client.post("/oauth2/token", data=GRANT if data is None else data, **options)


async def test_basic_auth_and_form_credentials(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, **UNTHROTTLED)) as gw:
        client, secret = gw.add_client("school-a", client_id="app:a b", secret="s3cr:t+x")
        encoded = b"app%3Aa+b:s3cr%3At%2Bx"  # RFC 6749 2.3.1: form-urlencoded, then base64
        response = await _post(gw, headers=_basic(encoded))
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        form = await _post(gw, {**GRANT, "client_id": client.client_id, "client_secret": secret})
        assert form.status == 200
        wrong = await _post(gw, {**GRANT, "client_id": client.client_id, "client_secret": "nope"})
        assert wrong.status == 401 and await _oauth_error(wrong) == "invalid_client"
        assert wrong.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("header", [
    "Basic YWJjZA",  # base64 of "abcd" without its padding (the finding: binascii.Error, a 500)
    "Basic YWJjZA=",  # wrong padding
    "Basic !!!!",  # not base64
    "Basic " + base64.b64encode(b"\xff\xfe:\xfa").decode(),  # not UTF-8
    "Basic " + base64.b64encode(b"no-colon-here").decode(),  # no ':'
    "Basic YWJj",  # "abc": valid base64, no ':'
])
async def test_malformed_basic_credentials_are_400_invalid_request(tmp_path: Path, header: str) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        response = await _post(gw, headers={"Authorization": header})
        assert response.status == 400 and await _oauth_error(response) == "invalid_request"


async def test_malformed_token_requests_are_4xx_never_500(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, **UNTHROTTLED)) as gw:
        client, secret = gw.add_client("school-a")
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        cases = [
            (await _post(gw, b"grant_type=client_credentials&client_id=\xff\xfe", headers=form_type), 400,
             "invalid_request"),
            (await _post(gw, b"grant_type=client_credentials", headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=klingon"}), 400, "invalid_request"),
            (await _post(gw, {}), 400, "invalid_request"),
            (await _post(gw, {"grant_type": "password"}), 400, "unsupported_grant_type"),
            (await _post(gw, {**GRANT, "client_id": client.client_id, "client_secret": secret},
                         headers=_basic(f"{client.client_id}:{secret}".encode())), 400, "invalid_request"),
            (await _post(gw, b"grant_type=client_credentials&grant_type=password", headers=form_type), 400,
             "invalid_request"),
            (await _post(gw, {**GRANT, "client_id": "x" * 300, "client_secret": "y"}), 400, "invalid_request"),
            (await _post(gw, GRANT), 401, "invalid_client"),
            (await _post(gw, b"x" * 20_000, headers=form_type), 413, "invalid_request"),
        ]
        for index, (response, status, error) in enumerate(cases):
            assert response.status == status, (index, await response.text())
            assert await _oauth_error(response) == error, index


async def test_a_scope_the_client_lacks_is_invalid_scope(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, **UNTHROTTLED)) as gw:
        client, secret = gw.add_client("school-a", scopes=(INGEST_SCOPE,))
        credentials = {**GRANT, "client_id": client.client_id, "client_secret": secret}
        lacking = await _post(gw, {**credentials, "scope": READ_SCOPE})
        assert lacking.status == 400 and await _oauth_error(lacking) == "invalid_scope"
        assert READ_SCOPE in (await lacking.json())["error_description"]
        unknown = await _post(gw, {**credentials, "scope": f"{INGEST_SCOPE} admin"})
        assert unknown.status == 400 and await _oauth_error(unknown) == "invalid_scope"
        subset = await _post(gw, {**credentials, "scope": INGEST_SCOPE})
        assert subset.status == 200 and (await subset.json())["scope"] == INGEST_SCOPE
        reader, reader_secret = gw.add_client("school-a", scopes=(INGEST_SCOPE, READ_SCOPE))
        narrowed = await _post(gw, {**GRANT, "client_id": reader.client_id, "client_secret": reader_secret,
                                    "scope": READ_SCOPE})
        assert narrowed.status == 200 and (await narrowed.json())["scope"] == READ_SCOPE


@pytest.fixture
def counted_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


async def test_an_unknown_client_id_costs_the_same_scrypt_as_a_known_one(tmp_path: Path,
                                                                         counted_scrypt: list[int]) -> None:
    async with gateway(gateway_settings(tmp_path, **UNTHROTTLED)) as gw:
        client, _ = gw.add_client("school-a")
        await _post(gw, {**GRANT, "client_id": "nobody", "client_secret": "x"})  # warms the dummy hash
        counted_scrypt.clear()
        known = await _post(gw, {**GRANT, "client_id": client.client_id, "client_secret": "wrong"})
        after_known = len(counted_scrypt)
        unknown = await _post(gw, {**GRANT, "client_id": "nobody-at-all", "client_secret": "wrong"})
        assert known.status == unknown.status == 401
        assert await known.json() == await unknown.json()
        assert after_known == 1 and len(counted_scrypt) == 2


async def test_secret_checks_do_not_block_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While secret checks are running (here: a scrypt stub that blocks until released), the gateway still
    answers other requests. On an event loop that runs scrypt itself, /healthz waits for the check to end."""
    started, release = threading.Event(), threading.Event()
    running: list[int] = []

    def blocking_scrypt(*args: Any, **kwargs: Any) -> bytes:
        running.append(1)
        started.set()
        release.wait(3)
        running.pop()
        return b"\0" * 32

    async with gateway(gateway_settings(tmp_path)) as gw:
        client, _ = gw.add_client("school-a")
        monkeypatch.setattr(hashlib, "scrypt", blocking_scrypt)
        flood = [asyncio.ensure_future(_post(gw, {**GRANT, "client_id": client.client_id, "client_secret": "no"}))
                 for _ in range(4)]
        assert await asyncio.to_thread(started.wait, 5)
        health = await gw.client.get("/healthz")
        checks_running_when_answered = len(running)
        release.set()
        responses = await asyncio.gather(*flood)
    assert health.status == 200
    assert checks_running_when_answered > 0, "the event loop was blocked by the secret check"
    assert {r.status for r in responses} <= {401, 429}
