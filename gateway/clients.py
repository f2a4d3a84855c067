"""Sender clients (id, hashed secret, tenant, scopes, rate limit) and tenants (time zone, extensions policy), kept
in one JSON file.

``caliper-pipeline clients add|rotate|list|revoke|timezone|extensions`` edits the file (atomic replace); the
gateway re-reads it when it changes, so a revocation, a new secret, a new time zone or extensions policy takes effect
within a second without a restart. Secrets are stored as scrypt hashes and shown only once, when the client is
added or its secret rotated. An id is added once: ``add`` refuses an existing id (re-adding it would move the client
to another tenant).

The file is ``{"version": 2, "clients": {client id: client}, "tenants": {tenant: {"timezone": IANA name,
"extensions_keep": [key...], "extensions_drop": [key...]}}}`` (a tenant written without the two lists has none); a
file of the first format (``{client id: client}``, written before tenants had a time zone) is read as such, every
tenant in UTC, and written in the new format at the next change. A tenant without an entry is in UTC.
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from gateway.errors import ClientExistsError, RevokedClientError, UnknownClientError
from gateway.settings import INGEST_SCOPE, READ_SCOPE
from schemas.credentials import WatchedFile, hash_secret, stored_secret_ok, with_revoked
from schemas.personal_data import ExtensionsPolicy, checked_policy_keys
from schemas.tenants import DEFAULT_TIMEZONE, checked_timezone

FILE_VERSION = 2


def client_secret_ok(client: Client | None, secret: str) -> bool:
    """Whether ``secret`` is the secret of an active ``client``; always costs one scrypt (blocking: run it in a
    thread on an event loop)."""
    matches = stored_secret_ok(client.secret_hash if client is not None else None, secret)
    return matches and client is not None and not client.revoked


@dataclass(frozen=True)
class Client:
    client_id: str
    secret_hash: str
    tenant: str
    scopes: tuple[str, ...] = (INGEST_SCOPE, READ_SCOPE)
    rate_limit_per_second: float | None = None
    revoked: bool = False
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Tenant:
    """What the registry knows of a tenant besides its clients: its IANA time zone (``schemas.tenants``) and its
    adjustments of the personal-data policy of extensions (``schemas.personal_data``: keys kept, keys dropped)."""

    timezone: str = DEFAULT_TIMEZONE
    extensions_keep: tuple[str, ...] = ()
    extensions_drop: tuple[str, ...] = ()

    @functools.cached_property
    def extensions_policy(self) -> str:
        """The policy as the gateway stamps it on the tenant's raw events ('' for the default one)."""
        return ExtensionsPolicy.of(self.extensions_keep, self.extensions_drop).to_text()

    def to_json(self) -> dict[str, object]:
        """The tenant's entry in the file (the policy's lists only when not empty)."""
        entry: dict[str, object] = {"timezone": self.timezone}
        if self.extensions_keep:
            entry["extensions_keep"] = list(self.extensions_keep)
        if self.extensions_drop:
            entry["extensions_drop"] = list(self.extensions_drop)
        return entry

    @classmethod
    def from_json(cls, entry: dict[str, object]) -> Tenant:
        keep, drop = entry.get("extensions_keep", ()), entry.get("extensions_drop", ())
        return cls(timezone=str(entry.get("timezone", DEFAULT_TIMEZONE)),
                   extensions_keep=tuple(keep) if isinstance(keep, list | tuple) else (),
                   extensions_drop=tuple(drop) if isinstance(drop, list | tuple) else ())


class _ClientsFile(NamedTuple):
    clients: dict[str, Client]
    tenants: dict[str, Tenant]


def _parse(raw: dict[str, Any]) -> _ClientsFile:
    if isinstance(raw.get("version"), int):
        clients, tenants = raw.get("clients", {}), raw.get("tenants", {})
    else:  # the first format: client id -> client
        clients, tenants = raw, {}
    return _ClientsFile({cid: Client(**{**entry, "scopes": tuple(entry.get("scopes", ()))})
                         for cid, entry in clients.items()},
                        {name: Tenant.from_json(entry) for name, entry in tenants.items()})


class ClientRegistry:
    """The clients file, re-read when it changes (checked at most once per ``refresh_seconds``)."""

    def __init__(self, path: Path, refresh_seconds: float = 1.0) -> None:
        self.path = path
        self._file = WatchedFile(path, _parse, refresh_seconds)

    @property
    def refresh_seconds(self) -> float:
        return self._file.refresh_seconds

    @refresh_seconds.setter
    def refresh_seconds(self, seconds: float) -> None:
        self._file.refresh_seconds = seconds

    def get(self, client_id: str) -> Client | None:
        return self._file.current().clients.get(client_id)

    def all(self) -> list[Client]:
        return sorted(self._file.current(force=True).clients.values(), key=lambda c: c.created_at)

    def tenant(self, name: str) -> Tenant:
        """The tenant's settings (its time zone); a tenant the file does not name is in UTC."""
        return self._file.current().tenants.get(name, Tenant())

    def timezone_of(self, tenant: str) -> str:
        return self.tenant(tenant).timezone

    def set_timezone(self, tenant: str, timezone: str) -> Tenant:
        """Set a tenant's IANA time zone (UnknownTimeZoneError, a PipelineError, for an unknown name)."""
        checked_timezone(timezone)
        current = self._file.current(force=True)
        clients, tenants = dict(current.clients), dict(current.tenants)
        tenants[tenant] = replace(tenants.get(tenant, Tenant()), timezone=timezone)
        self._save(clients, tenants)
        return tenants[tenant]

    def set_extensions_policy(self, tenant: str, keep: list[str], drop: list[str]) -> Tenant:
        """Set the keys of the tenant's extensions the personal-data policy keeps as sent (declared non-personal)
        and drops (instead of pseudonymizing them); both empty: the default policy. InvalidExtensionsKeyError (a
        PipelineError) for a key that cannot be one."""
        kept, dropped = checked_policy_keys(keep), checked_policy_keys(drop)
        current = self._file.current(force=True)
        clients, tenants = dict(current.clients), dict(current.tenants)
        tenants[tenant] = replace(tenants.get(tenant, Tenant()), extensions_keep=kept, extensions_drop=dropped)
        self._save(clients, tenants)
        return tenants[tenant]

    def _save(self, clients: dict[str, Client], tenants: dict[str, Tenant] | None = None) -> None:
        tenants = self._file.current().tenants if tenants is None else tenants
        self._file.write({"version": FILE_VERSION, "clients": {cid: asdict(c) for cid, c in clients.items()},
                          "tenants": {name: tenant.to_json() for name, tenant in tenants.items()}})

    def add(self, tenant: str, *, client_id: str | None = None, secret: str | None = None,
            scopes: tuple[str, ...] = (INGEST_SCOPE, READ_SCOPE),
            rate_limit_per_second: float | None = None, timezone: str | None = None) -> tuple[Client, str]:
        """Register a client; returns it and its secret (shown once, stored only as a hash). ``timezone`` sets
        the tenant's time zone (for all its clients); None leaves it as it is (UTC for a new tenant). An id the
        registry holds (revoked too) raises ClientExistsError."""
        if timezone is not None:
            checked_timezone(timezone)
        current = self._file.current(force=True)
        clients, tenants = dict(current.clients), dict(current.tenants)
        if client_id is not None and client_id in clients:
            raise ClientExistsError(client_id, clients[client_id].tenant)
        if timezone is not None:
            tenants[tenant] = replace(tenants.get(tenant, Tenant()), timezone=timezone)
        client_id = client_id or f"{tenant}-{secrets.token_hex(4)}"
        secret = secret or secrets.token_urlsafe(32)
        client = Client(client_id=client_id, secret_hash=hash_secret(secret), tenant=tenant, scopes=scopes,
                        rate_limit_per_second=rate_limit_per_second)
        clients[client_id] = client
        self._save(clients, tenants)
        return client, secret

    def rotate(self, client_id: str) -> tuple[Client, str]:
        """Issue a new secret to an active client (its tenant, scopes and rate limit kept); returns the client and
        the secret (shown once). The old secret stops working; tokens already issued keep working until they
        expire (revoke the client to stop those)."""
        clients = dict(self._file.current(force=True).clients)
        client = clients.get(client_id)
        if client is None:
            raise UnknownClientError(client_id)
        if client.revoked:
            raise RevokedClientError(client_id)
        secret = secrets.token_urlsafe(32)
        clients[client_id] = replace(client, secret_hash=hash_secret(secret))
        self._save(clients)
        return clients[client_id], secret

    def revoke(self, client_id: str) -> Client:
        clients = with_revoked(self._file.current(force=True).clients, client_id, UnknownClientError)
        self._save(clients)
        return clients[client_id]

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The active client with this id and secret, else None (blocking: one scrypt in every case)."""
        client = self.get(client_id)
        return client if client_secret_ok(client, secret) else None
