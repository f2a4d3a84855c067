"""OAuth2 client-credentials access tokens: signed JWTs (PyJWT, HS256) with expiry, tenant and scopes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from gateway.clients import Client, ClientRegistry
from gateway.errors import ForbiddenError, UnauthorizedError


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, from a verified token."""

    client_id: str
    tenant: str
    scopes: frozenset[str]
    rate_limit_per_second: float | None


class TokenIssuer:
    def __init__(self, secret: str, issuer: str, ttl_seconds: int, registry: ClientRegistry) -> None:
        self._secret = secret
        self._issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._registry = registry
        self._verified: dict[str, tuple[float, Caller]] = {}

    def issue(self, client: Client, requested_scopes: set[str] | None = None) -> tuple[str, tuple[str, ...]]:
        granted = tuple(s for s in client.scopes if requested_scopes is None or s in requested_scopes)
        now = int(time.time())
        claims = {
            "iss": self._issuer, "sub": client.client_id, "tenant": client.tenant, "scope": " ".join(granted),
            "iat": now, "exp": now + self.ttl_seconds, "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), granted

    def verify(self, authorization: str | None, required_scope: str) -> Caller:
        if not authorization:
            raise UnauthorizedError("missing Authorization header (expected: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("malformed Authorization header (expected: Bearer <token>)")
        token = token.strip()
        caller = self._cached(token)
        if caller is None:
            try:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=self._issuer,
                                    options={"require": ["exp", "sub", "tenant"]})
            except jwt.ExpiredSignatureError as error:
                raise UnauthorizedError("the access token has expired") from error
            except jwt.InvalidTokenError as error:
                raise UnauthorizedError(f"invalid access token: {error}") from error
            client = self._registry.get(claims["sub"])
            caller = Caller(client_id=claims["sub"], tenant=claims["tenant"],
                            scopes=frozenset(str(claims.get("scope", "")).split()),
                            rate_limit_per_second=client.rate_limit_per_second if client else None)
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = (float(claims["exp"]), caller)
        client = self._registry.get(caller.client_id)
        if client is None or client.revoked:
            raise UnauthorizedError("the client of this token is revoked or unknown")
        if required_scope not in caller.scopes:
            raise ForbiddenError(f"the token lacks the scope {required_scope}")
        return caller

    def _cached(self, token: str) -> Caller | None:
        entry = self._verified.get(token)
        if entry is None:
            return None
        expires_at, caller = entry
        if expires_at <= time.time():
            del self._verified[token]
            raise UnauthorizedError("the access token has expired")
        return caller
