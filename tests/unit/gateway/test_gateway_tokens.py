"""Access tokens: bound to the tenant registered for their client, a maximum lifetime, key rotation by ``kid``,
and the gateway refusing to start with a signing secret anyone may know."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from gateway_doubles import UNUSED_KAFKA, gateway, gateway_settings
from pydantic import ValidationError

from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from caliper_pipeline.settings import Settings
from gateway.clients import Client, ClientRegistry
from gateway.errors import ClientExistsError, UnauthorizedError
from gateway.main import build_app
from gateway.settings import (
    DEVELOPMENT_JWT_SECRET,
    INGEST_SCOPE,
    READ_SCOPE,
    DevelopmentSecretError,
    GatewaySettings,
)
from gateway.tokens import TokenIssuer, key_id

KEY = secrets.token_urlsafe(32)
OLD_KEY = secrets.token_urlsafe(32)


@pytest.fixture
def registry(tmp_path: Path) -> ClientRegistry:
    return ClientRegistry(tmp_path / "clients.json", refresh_seconds=0)


@pytest.fixture
def client(registry: ClientRegistry) -> Client:
    return registry.add("school-a", client_id="app-a")[0]


def _sign(key: str, *, kid: str | None = "auto", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": "caliper-pipeline", "sub": "app-a", "tenant": "school-a", "scope": INGEST_SCOPE,
              "iat": now, "exp": now + 600, **overrides}
    claims = {name: value for name, value in claims.items() if value is not None}
    headers = {"kid": key_id(key) if kid == "auto" else kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


def _verify(issuer: TokenIssuer, token: str) -> str:
    return issuer.verify(f"Bearer {token}", INGEST_SCOPE).tenant


def test_a_token_whose_tenant_is_not_its_clients_is_refused(registry: ClientRegistry, client: Client) -> None:
    issuer = TokenIssuer(KEY, "caliper-pipeline", 600, registry)
    assert _verify(issuer, _sign(KEY)) == "school-a"
    with pytest.raises(UnauthorizedError, match="tenant"):
        _verify(issuer, _sign(KEY, tenant="school-b"))
    # the registry is the truth on every call: a client moved to another tenant invalidates its old tokens
    token = _sign(KEY)
    _verify(issuer, token)
    registry.revoke("app-a")
    with pytest.raises(UnauthorizedError, match="revoked"):
        _verify(issuer, token)
    with pytest.raises(ClientExistsError):
        registry.add("school-b", client_id="app-a")  # `clients add` never moves a client
    document = orjson.loads(registry.path.read_bytes())  # a clients file edited by hand can
    document["clients"]["app-a"].update(tenant="school-b", revoked=False)
    registry.path.write_bytes(orjson.dumps(document))
    with pytest.raises(UnauthorizedError, match="tenant"):
        _verify(issuer, token)


def test_token_lifetime_is_bounded(registry: ClientRegistry, client: Client) -> None:
    issuer = TokenIssuer(KEY, "caliper-pipeline", 600, registry, max_ttl_seconds=3600)
    now = int(time.time())
    with pytest.raises(UnauthorizedError, match="lifetime"):
        _verify(issuer, _sign(KEY, exp=now + 100 * 365 * 86400))  # the 100-year token of the finding
    with pytest.raises(UnauthorizedError, match="iat"):
        _verify(issuer, _sign(KEY, iat=None))
    with pytest.raises(UnauthorizedError, match="future"):
        _verify(issuer, _sign(KEY, iat=now + 3600, exp=now + 3700))
    assert _verify(issuer, _sign(KEY, iat=now + 30, exp=now + 630)) == "school-a"  # within the clock skew
    assert _verify(issuer, _sign(KEY, exp=now + 3600)) == "school-a"  # exactly the maximum
    with pytest.raises(UnauthorizedError, match="expired"):
        _verify(issuer, _sign(KEY, iat=now - 700, exp=now - 100))


def test_two_keys_verify_during_a_rotation_and_the_kid_picks_the_key(registry: ClientRegistry,
                                                                      client: Client) -> None:
    before = TokenIssuer([OLD_KEY], "caliper-pipeline", 600, registry)
    old_token, _ = before.issue(client)
    assert jwt.get_unverified_header(old_token)["kid"] == key_id(OLD_KEY)
    assert OLD_KEY not in old_token and key_id(OLD_KEY) not in (OLD_KEY, "")
    during = TokenIssuer([KEY, OLD_KEY], "caliper-pipeline", 600, registry)
    new_token, _ = during.issue(client)
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(KEY)  # the new key signs
    assert _verify(during, old_token) == _verify(during, new_token) == "school-a"
    after = TokenIssuer([KEY], "caliper-pipeline", 600, registry)
    with pytest.raises(UnauthorizedError, match="kid"):
        _verify(after, old_token)
    for token in (_sign(KEY, kid=None), _sign(KEY, kid="0123456789abcdef"), _sign(OLD_KEY, kid=key_id(KEY))):
        with pytest.raises(UnauthorizedError):
            _verify(during, token)


def test_issued_ttl_must_not_exceed_the_maximum() -> None:
    with pytest.raises(ValidationError, match="max_token_ttl_seconds"):
        GatewaySettings(token_ttl_seconds=7200, max_token_ttl_seconds=3600)
    assert GatewaySettings(token_ttl_seconds=3600, max_token_ttl_seconds=3600).token_ttl_seconds == 3600


def test_previous_secrets_come_from_the_environment_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALIPER_GATEWAY__JWT_SECRET", KEY)
    monkeypatch.setenv("CALIPER_GATEWAY__JWT_PREVIOUS_SECRETS", f'["{OLD_KEY}"]')
    settings = Settings().gateway
    assert settings.verification_secrets == [KEY, OLD_KEY]
    assert OLD_KEY not in repr(settings)  # SecretStr: never printed


@pytest.mark.parametrize(("overrides", "problem"), [
    ({}, "development secret"),
    ({"jwt_secret": "short-secret"}, "shorter than 32 bytes"),
    ({"jwt_secret": KEY, "jwt_previous_secrets": [DEVELOPMENT_JWT_SECRET]}, "jwt_previous_secrets[0]"),
])
def test_the_gateway_refuses_to_start_with_a_secret_anyone_may_know(tmp_path: Path, overrides: dict[str, Any],
                                                                     problem: str) -> None:
    settings = GatewaySettings(clients_file=tmp_path / "clients.json", **overrides)
    with pytest.raises(DevelopmentSecretError, match="refuses to start") as refused:
        build_app(settings, UNUSED_KAFKA)
    assert problem in str(refused.value)
    assert "CALIPER_GATEWAY__JWT_SECRET" in str(refused.value)
    assert "CALIPER_GATEWAY__ALLOW_DEVELOPMENT_SECRET=true" in str(refused.value)
    build_app(settings.model_copy(update={"allow_development_secret": True}), UNUSED_KAFKA)  # explicit opt-in


async def test_non_ascii_bearer_tokens_are_401(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in the token (aiohttp keeps them as surrogates; PyJWT's encode() raised: a 500)."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        server = gw.client.server
        for token in (b"\xff\xfe\xfd", b"abc\xc3", "\u00e9t\u00e9".encode()):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"POST /caliper/event HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + token +
                         b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401 "), (token, answer[:200])
            assert orjson.loads(body)["status"] == "error"


async def test_a_forged_token_of_another_tenant_reads_and_writes_nothing(tmp_path: Path) -> None:
    """The attack of the finding, over HTTP: a token signed with the gateway's key for a client of school-a but
    claiming school-b."""
    settings = gateway_settings(tmp_path)
    async with gateway(settings) as gw:
        gw.add_client("school-a", client_id="app-a", scopes=(INGEST_SCOPE, READ_SCOPE))
        forged = _sign(settings.jwt_secret.get_secret_value(), tenant="school-b")
        response = await gw.client.post("/caliper/event", json=envelope(timeback_activity_event()),
                                        headers={"Authorization": f"Bearer {forged}"})
        assert response.status == 401
        assert gw.publisher.published == []
