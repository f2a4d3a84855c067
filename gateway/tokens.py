"""OAuth2 client-credentials access tokens: signed JWTs (PyJWT, HS256) with expiry, tenant and scopes.

- Key rotation: the signing key signs; previous keys still verify. The header's ``kid`` (a short hash of the key,
  never the key) picks the key; a token without a known ``kid`` is refused.
- The tenant comes from the client registry: a token whose ``tenant`` claim differs from the tenant registered for
  its client (``sub``) is refused, as is a token of a revoked or unknown client.
- Lifetime: a token must carry ``iat`` (not in the future beyond ``CLOCK_SKEW_SECONDS``) and ``exp``, and
  ``exp - iat`` must not exceed ``max_ttl_seconds`` (a forged 100-year token is refused even with a valid key).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import jwt

from gateway.clients import Client, ClientRegistry
from gateway.errors import ForbiddenError, UnauthorizedError

CLOCK_SKEW_SECONDS = 60
MAX_TOKEN_CHARS = 4096
CACHE_ENTRIES = 10_000


def key_id(secret: str) -> str:
    """The ``kid`` of a signing key: a short hash of it (the key cannot be read back from it)."""
    return hashlib.sha256(b"caliper-pipeline jwt kid\0" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, from a verified token."""

    client_id: str
    tenant: str
    scopes: frozenset[str]
    rate_limit_per_second: float | None
    tenant_timezone: str = "UTC"  # the tenant's IANA time zone (the registry's), stamped on its raw events
    extensions_policy: str = ""  # the tenant's personal-data policy of extensions (the registry's), stamped too


@dataclass(frozen=True, slots=True)
class _Claims:
    """What a verified token says (cached per token until it expires)."""

    expires_at: float
    client_id: str
    tenant: str
    scopes: frozenset[str]


class TokenIssuer:
    """Issues tokens with ``secrets[0]``; verifies with any of ``secrets``."""

    def __init__(self, secrets: str | list[str], issuer: str, ttl_seconds: int, registry: ClientRegistry, *,
                 max_ttl_seconds: int = 24 * 3600) -> None:
        keys = [secrets] if isinstance(secrets, str) else list(secrets)
        if not keys:
            raise ValueError("at least one signing secret is needed")
        self._signing_key = keys[0]
        self._signing_kid = key_id(keys[0])
        self._keys = {key_id(key): key for key in keys}
        self._issuer = issuer
        self.ttl_seconds = ttl_seconds
        self.max_ttl_seconds = max_ttl_seconds
        self._registry = registry
        self._verified: dict[str, _Claims] = {}

    def issue(self, client: Client, requested_scopes: set[str] | None = None) -> tuple[str, tuple[str, ...]]:
        granted = tuple(s for s in client.scopes if requested_scopes is None or s in requested_scopes)
        now = int(time.time())
        claims = {
            "iss": self._issuer, "sub": client.client_id, "tenant": client.tenant, "scope": " ".join(granted),
            "iat": now, "exp": now + self.ttl_seconds, "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._signing_key, algorithm="HS256", headers={"kid": self._signing_kid})
        return token, granted

    def verify(self, authorization: str | None, required_scope: str) -> Caller:
        token = _bearer_token(authorization)
        claims = self._cached(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= CACHE_ENTRIES:
                self._verified.clear()
            self._verified[token] = claims
        client = self._registry.get(claims.client_id)
        if client is None or client.revoked:
            raise UnauthorizedError("the client of this token is revoked or unknown")
        if client.tenant != claims.tenant:  # checked on every call: the registry is the truth
            raise UnauthorizedError("the token's tenant is not the tenant registered for its client")
        if required_scope not in claims.scopes:
            raise ForbiddenError(f"the token lacks the scope {required_scope}")
        tenant = self._registry.tenant(client.tenant)
        return Caller(client_id=client.client_id, tenant=client.tenant, scopes=claims.scopes,
                      rate_limit_per_second=client.rate_limit_per_second, tenant_timezone=tenant.timezone,
                      extensions_policy=tenant.extensions_policy)

    def _decode(self, token: str) -> _Claims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as error:
            raise UnauthorizedError(f"invalid access token: {error}") from error
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnauthorizedError("invalid access token: unknown signing key (kid)")
        try:
            claims = jwt.decode(token, key, algorithms=["HS256"], issuer=self._issuer,
                                options={"require": ["exp", "iat", "iss", "sub", "tenant"],
                                         "verify_iat": False})  # checked below, with a clock skew
        except jwt.ExpiredSignatureError as error:
            raise UnauthorizedError("the access token has expired") from error
        except jwt.InvalidTokenError as error:
            raise UnauthorizedError(f"invalid access token: {error}") from error
        issued_at, expires_at = claims["iat"], claims["exp"]
        if not all(type(v) is int for v in (issued_at, expires_at)):
            raise UnauthorizedError("invalid access token: iat and exp must be integers")
        if issued_at > time.time() + CLOCK_SKEW_SECONDS:
            raise UnauthorizedError("invalid access token: issued in the future")
        if expires_at - issued_at > self.max_ttl_seconds:
            raise UnauthorizedError(f"invalid access token: lifetime over {self.max_ttl_seconds} seconds")
        subject, tenant = claims["sub"], claims["tenant"]
        if not isinstance(subject, str) or not isinstance(tenant, str):
            raise UnauthorizedError("invalid access token: sub and tenant must be strings")
        return _Claims(float(expires_at), subject, tenant, frozenset(str(claims.get("scope", "")).split()))

    def _cached(self, token: str) -> _Claims | None:
        entry = self._verified.get(token)
        if entry is None:
            return None
        if entry.expires_at <= time.time():
            del self._verified[token]
            raise UnauthorizedError("the access token has expired")
        return entry


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise UnauthorizedError("missing Authorization header (expected: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("malformed Authorization header (expected: Bearer <token>)")
    if not token.isascii() or len(token) > MAX_TOKEN_CHARS:
        raise UnauthorizedError("invalid access token: not a JWT (non-ASCII characters or too long)")
    return token
