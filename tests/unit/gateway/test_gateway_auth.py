"""Clients, tokens and rate limits of the gateway, without a broker."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from gateway.clients import ClientRegistry
from gateway.errors import ForbiddenError, UnauthorizedError, UnknownClientError
from gateway.ratelimit import RateLimiter
from gateway.settings import INGEST_SCOPE, READ_SCOPE
from gateway.tokens import TokenIssuer

SECRET = "test-secret-key-of-enough-length-0123456789"


@pytest.fixture
def registry(tmp_path: Path) -> ClientRegistry:
    return ClientRegistry(tmp_path / "clients.json", refresh_seconds=0)


def test_secret_is_shown_once_and_stored_hashed(registry: ClientRegistry) -> None:
    client, secret = registry.add("school-a")
    stored = registry.path.read_text()
    assert secret not in stored and "scrypt$" in stored
    assert registry.authenticate(client.client_id, secret) == client
    assert registry.authenticate(client.client_id, secret + "x") is None
    assert registry.authenticate("nobody", secret) is None
    assert registry.path.stat().st_mode & 0o777 == 0o600


def test_revoke_and_list(registry: ClientRegistry) -> None:
    _, secret = registry.add("school-a", client_id="a")
    registry.add("school-b", client_id="b")
    registry.revoke("a")
    assert [c.client_id for c in registry.all()] == ["a", "b"]
    assert registry.get("a").revoked  # type: ignore[union-attr]
    assert registry.authenticate("a", secret) is None
    with pytest.raises(UnknownClientError):
        registry.revoke("zzz")


def test_token_carries_tenant_scopes_and_expiry(registry: ClientRegistry) -> None:
    client, _ = registry.add("school-a")
    issuer = TokenIssuer(SECRET, "caliper-pipeline", 60, registry)
    token, granted = issuer.issue(client)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="caliper-pipeline")
    assert claims["tenant"] == "school-a" and claims["sub"] == client.client_id
    assert claims["exp"] - claims["iat"] == 60
    assert set(granted) == {INGEST_SCOPE, READ_SCOPE}
    caller = issuer.verify(f"Bearer {token}", INGEST_SCOPE)
    assert caller.tenant == "school-a"


def test_token_failures(registry: ClientRegistry) -> None:
    client, _ = registry.add("school-a")
    issuer = TokenIssuer(SECRET, "caliper-pipeline", 60, registry)
    read_only, _ = issuer.issue(client, {READ_SCOPE})
    with pytest.raises(ForbiddenError):
        issuer.verify(f"Bearer {read_only}", INGEST_SCOPE)
    for header in (None, "", "Bearer", "Basic abc", "Bearer x.y.z"):
        with pytest.raises(UnauthorizedError):
            issuer.verify(header, INGEST_SCOPE)
    forged = jwt.encode({"iss": "caliper-pipeline", "sub": client.client_id, "tenant": "school-b",
                         "scope": INGEST_SCOPE, "exp": int(time.time()) + 60}, "another-key-0123456789012345678-abcdef",
                        algorithm="HS256")
    with pytest.raises(UnauthorizedError):
        issuer.verify(f"Bearer {forged}", INGEST_SCOPE)
    token, _ = issuer.issue(client)
    registry.revoke(client.client_id)
    with pytest.raises(UnauthorizedError, match="revoked"):
        issuer.verify(f"Bearer {token}", INGEST_SCOPE)


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(default_per_second=10)
    assert limiter.acquire("c", 10, None) is None
    assert limiter.acquire("c", 1, None) == 1
    assert limiter.acquire("other", 5, None) is None
    time.sleep(0.25)
    assert limiter.acquire("c", 2, None) is None
    # The bucket's capacity is a fixed burst (1 s of the rate by default), so a new client's
    # first envelope no longer passes whatever its size (the gateway answers 413 before asking: see
    # test_gateway_limits.py::test_an_envelope_larger_than_the_clients_burst_is_413)
    assert limiter.acquire("big", 50, 10) is not None
    assert RateLimiter(default_per_second=10, burst_seconds=5).acquire("big", 50, 10) is None
