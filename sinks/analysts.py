"""Analyst credentials: the operator's all-tenant analyst token, and one credential per school network that reads
only its tenants' rows.

A school credential is an id, a secret (stored as an scrypt hash, shown once, like a sender client's) and its
tenants, kept in the analysts file (``CALIPER_SINK__ANALYSTS_FILE``), written by ``caliper-pipeline analysts
add|list|revoke``. The sink re-reads the file when it changes (checked at most once per ``refresh_seconds``), so a
new credential or a revocation takes effect within a second, without a restart.

``authenticate(registry, operator_token, user, secret)`` is the one check of every way an analyst presents a
credential: ``user`` None (or empty) and the operator's analyst token as the secret is the all-tenant analyst; a
``user`` is a school credential's id. On the sink's ``POST /sql`` a school credential is the bearer token
``<id>:<secret>`` (``bearer_credential``).

The principal (``Analyst``) carries the tenants it may read; ``sinks.queries`` runs its statements with
ClickHouse's ``additional_table_filters`` set to them (``tenant_filters``), so the engine, not a text check, keeps
every other tenant's rows out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from schemas.credentials import WatchedFile, hash_secret, stored_secret_ok, with_revoked
from sinks.clickhouse import string_literal
from sinks.errors import AnalystExistsError, InvalidAnalystError, UnknownAnalystError
from sinks.tables import (
    ANALYST_TABLES,
    ERASURES_TABLE,
    FACT_TABLE,
    FAILED_EVENTS_SUMMARY_VIEW,
    JOB_FACTS_TABLE,
    JOBS_TABLE,
    REJECTS_SUMMARY_VIEW,
)

FILE_VERSION = 1
ANALYST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # no ':' (the bearer token's separator)
# the user names under which ClickHouse's clients present the operator's token (ClickHouse's default user): no
# school credential may take one
OPERATOR_USERS = frozenset({"default", "analyst"})
MAX_TENANT_CHARS = 256
TENANT_COLUMN = "tenant"
NO_ROWS = "0"  # the filter of a table without a tenant column: a school credential reads none of its rows
_VERIFIED_CACHE_SIZE = 1024
# on a server, the tables (not views) a school user reads, directly or through the views over the facts
SERVER_POLICY_TABLES = frozenset({FACT_TABLE, ERASURES_TABLE, JOBS_TABLE, JOB_FACTS_TABLE})


@dataclass(frozen=True, slots=True)
class Analyst:
    """Who runs a statement: ``tenants`` is the set of tenants it reads, None for every tenant."""

    name: str
    tenants: frozenset[str] | None


OPERATOR = Analyst("analyst", None)  # the operator's all-tenant analyst token
ADMINISTRATOR = Analyst("admin", None)


@dataclass(frozen=True)
class AnalystCredential:
    analyst_id: str
    secret_hash: str
    tenants: tuple[str, ...]
    name: str = ""
    revoked: bool = False
    created_at: float = field(default_factory=time.time)

    def principal(self) -> Analyst:
        return Analyst(self.analyst_id, frozenset(self.tenants))

    def document(self) -> dict[str, Any]:
        """As ``analysts list --json`` shows it: never the secret's hash."""
        return {"analyst_id": self.analyst_id, "name": self.name, "tenants": list(self.tenants),
                "revoked": self.revoked, "created_at": self.created_at}


def checked_tenants(tenants: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The tenants of a new credential, sorted and without repeats; InvalidAnalystError naming a bad one."""
    if not tenants:
        raise InvalidAnalystError("tenant", "at least one --tenant is required (the operator's analyst token reads "
                                            "every tenant)")
    for tenant in tenants:
        if not isinstance(tenant, str) or not tenant.strip() or tenant != tenant.strip() \
                or len(tenant) > MAX_TENANT_CHARS or not tenant.isprintable():
            raise InvalidAnalystError("tenant", f"{tenant!r} is not a tenant name (printable, no surrounding blanks, "
                                                f"at most {MAX_TENANT_CHARS} characters)")
    return tuple(sorted(set(tenants)))


def _parse(raw: dict[str, Any]) -> dict[str, AnalystCredential]:
    return {aid: AnalystCredential(**{**entry, "tenants": tuple(entry.get("tenants", ()))})
            for aid, entry in raw.get("analysts", {}).items()}


class AnalystRegistry:
    """The analysts file, re-read when it changes (checked at most once per ``refresh_seconds``)."""

    def __init__(self, path: Path, refresh_seconds: float = 1.0) -> None:
        self.path = path
        self._file = WatchedFile(path, _parse, refresh_seconds)
        self._lock = threading.Lock()
        # (id, sha256 of the secret, stored hash) already verified: a statement costs one scrypt per credential and
        # secret, not one per call; a changed hash (or a revocation, checked on every call) is never served from it
        self._verified: OrderedDict[tuple[str, bytes, str], None] = OrderedDict()

    def _fresh(self, force: bool = False) -> dict[str, AnalystCredential]:
        return self._file.current(force=force)

    def get(self, analyst_id: str) -> AnalystCredential | None:
        return self._fresh().get(analyst_id)

    def all(self) -> list[AnalystCredential]:
        return sorted(self._fresh(force=True).values(), key=lambda a: a.created_at)

    def _save(self, analysts: dict[str, AnalystCredential]) -> None:
        self._file.write({"version": FILE_VERSION, "analysts": {aid: asdict(a) for aid, a in analysts.items()}})

    def add(self, tenants: list[str] | tuple[str, ...], *, analyst_id: str | None = None,
            name: str | None = None) -> tuple[AnalystCredential, str]:
        """A new school credential reading ``tenants``; returns it and its secret (shown once, stored hashed). An id
        the file holds (revoked too) raises AnalystExistsError."""
        tenants = checked_tenants(tenants)
        analysts = dict(self._fresh(force=True))
        analyst_id = analyst_id or f"analyst-{secrets.token_hex(4)}"
        if not ANALYST_ID.fullmatch(analyst_id):
            raise InvalidAnalystError("id", f"{analyst_id!r} is not an analyst id (letters, digits, '_', '.', '-'; "
                                            "at most 64)")
        if analyst_id.lower() in OPERATOR_USERS:
            raise InvalidAnalystError("id", f"{analyst_id!r} is the operator's user name; choose another --id")
        if analyst_id in analysts:
            raise AnalystExistsError(analyst_id)
        secret = secrets.token_urlsafe(32)
        credential = AnalystCredential(analyst_id, hash_secret(secret), tenants, name or analyst_id)
        analysts[analyst_id] = credential
        self._save(analysts)
        return credential, secret

    def revoke(self, analyst_id: str) -> AnalystCredential:
        analysts = with_revoked(self._fresh(force=True), analyst_id, UnknownAnalystError)
        self._save(analysts)
        return analysts[analyst_id]

    def verify(self, analyst_id: str, secret: str) -> Analyst | None:
        """The principal of an active credential with this id and secret, else None (blocking: one scrypt unless
        this id, secret and stored hash were verified before)."""
        credential = self.get(analyst_id)
        stored = credential.secret_hash if credential is not None else None
        key = (analyst_id, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest(), stored or "")
        with self._lock:
            known = stored is not None and key in self._verified
        if credential is None or not (known or stored_secret_ok(stored, secret)):
            if credential is None:
                stored_secret_ok(None, secret)  # an unknown id costs the scrypt a known one costs
            return None
        with self._lock:
            self._verified[key] = None
            self._verified.move_to_end(key)
            while len(self._verified) > _VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return None if credential.revoked else credential.principal()


def authenticate(registry: AnalystRegistry, operator_token: str, user: str | None, secret: str) -> Analyst | None:
    """The analyst a credential is, else None: ``user`` None or empty with the operator's analyst token (every
    tenant; an empty configured token matches nothing), or a school credential's id and secret (its tenants).
    Blocking (scrypt): run it in a thread on an event loop."""
    if not user:
        offered, expected = secret.encode("utf-8", "surrogateescape"), operator_token.encode()
        return OPERATOR if expected and hmac.compare_digest(expected, offered) else None
    return registry.verify(user, secret)


def authenticate_bearer(registry: AnalystRegistry, operator_token: str, token: str) -> Analyst | None:
    """The analyst a bearer token is: the operator's analyst token, or ``<id>:<secret>`` of a school credential."""
    found = authenticate(registry, operator_token, None, token)
    user, colon, secret = token.partition(":")
    if found is None and colon and ANALYST_ID.fullmatch(user):
        found = authenticate(registry, operator_token, user, secret)
    return found


def tenant_filters(tables: dict[str, bool], database: str, tenants: frozenset[str]) -> dict[str, str]:
    """The filters (``additional_table_filters``, by table) that limit every table and view of ``database`` to
    ``tenants``: ``tables`` maps each name to whether it has a tenant column; one without reads no rows."""
    allowed = ", ".join(string_literal(tenant) for tenant in sorted(tenants))
    condition = f"{TENANT_COLUMN} IN ({allowed})" if tenants else NO_ROWS
    return {f"{database}.{name}": condition if tenant else NO_ROWS for name, tenant in sorted(tables.items())}


def server_user(analyst_id: str) -> str:
    """The ClickHouse user of a school credential on a server."""
    return f"caliper_analyst_{analyst_id}"


def server_user_ddl(analyst_id: str, secret: str, tenants: tuple[str, ...], database: str) -> list[str]:
    """The statements that give a school credential a ClickHouse user of its own on a server (analysts who query
    the server directly): password = the credential's secret, read-only, SELECT on the readable tables and views
    over the facts, and a row policy keeping the tables those views read to its tenants. The summaries of failures
    are left out: their views read tables that hold what was sent, which the user must not be granted."""
    user = quoted_name(server_user(analyst_id))
    allowed = ", ".join(string_literal(tenant) for tenant in checked_tenants(tenants))
    password = hashlib.sha256(secret.encode()).hexdigest()
    readable = sorted(ANALYST_TABLES - {FAILED_EVENTS_SUMMARY_VIEW, REJECTS_SUMMARY_VIEW})
    policy_tables = ", ".join(f"{database}.{name}" for name in sorted(SERVER_POLICY_TABLES))
    return [
        f"CREATE USER {user} IDENTIFIED WITH sha256_hash BY {string_literal(password)} "
        f"DEFAULT DATABASE {database} SETTINGS readonly = 1",
        f"GRANT SELECT ON {database}.{readable[0]} TO {user}",
        *(f"GRANT SELECT ON {database}.{name} TO {user}" for name in readable[1:]),
        f"CREATE ROW POLICY {user} ON {policy_tables} FOR SELECT USING {TENANT_COLUMN} IN ({allowed}) TO {user}",
    ]


def server_revoke_ddl(analyst_id: str, database: str) -> list[str]:
    user = quoted_name(server_user(analyst_id))
    policy_tables = ", ".join(f"{database}.{name}" for name in sorted(SERVER_POLICY_TABLES))
    return [f"DROP ROW POLICY IF EXISTS {user} ON {policy_tables}", f"DROP USER IF EXISTS {user}"]


def quoted_name(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
