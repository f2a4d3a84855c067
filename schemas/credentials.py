"""Stored credentials, shared by the gateway (sender clients) and the sink (analysts): a secret is kept only as an
scrypt hash, and a credentials file is replaced atomically with mode 0600.

Checking a secret always costs one scrypt, also for an unknown id (``dummy_hash``), so neither an answer nor its
time says which ids exist. Blocking: run it in a thread on an event loop.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from schemas.errors import PipelineError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
Entry = TypeVar("Entry", bound="DataclassInstance")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def secret_matches(secret: str, stored: str) -> bool:
    try:
        _, salt_hex, digest_hex = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    candidate = hashlib.scrypt(secret.encode("utf-8", "surrogatepass"), salt=salt, **_SCRYPT)
    return hmac.compare_digest(candidate.hex(), digest_hex)


@functools.cache
def dummy_hash() -> str:
    """Checked instead of a stored hash when the id is unknown: an unknown id costs the same scrypt as a known one."""
    return hash_secret(secrets.token_urlsafe(32))


def stored_secret_ok(stored: str | None, secret: str) -> bool:
    """Whether ``secret`` matches ``stored`` (None: no such credential); always costs one scrypt."""
    matches = secret_matches(secret, stored if stored is not None else dummy_hash())
    return matches and stored is not None


def with_revoked(entries: Mapping[str, Entry], entry_id: str,
                 unknown: Callable[[str], PipelineError]) -> dict[str, Entry]:
    """A copy of a credentials file's ``entries`` with ``entry_id``'s revoked (``unknown(entry_id)`` raised when
    there is none): a revoked entry stays in the file, so its id is never issued again."""
    if entry_id not in entries:
        raise unknown(entry_id)
    return {**entries, entry_id: replace(entries[entry_id], revoked=True)}


def _changed_json(path: Path, seen_mtime_ns: int) -> tuple[dict[str, Any] | None, int]:
    """``(document, mtime_ns)`` of a credentials file read again because it changed since ``seen_mtime_ns``;
    ``(None, seen_mtime_ns)`` when it did not change; ``({}, -1)`` when there is no file."""
    try:
        mtime_ns = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {}, -1
    if mtime_ns == seen_mtime_ns:
        return None, seen_mtime_ns
    document = json.loads(path.read_text() or "{}")
    return (document if isinstance(document, dict) else {}), mtime_ns


def write_private_json(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` with ``document`` atomically, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2))
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


class WatchedFile(Generic[T]):
    """A credentials file and what ``parse`` makes of its JSON document, read again when the file changed (its
    mtime), looked at no more than once per ``refresh_seconds`` unless forced (a command that changes the file
    reads it first). Thread-safe. A missing file parses as ``{}``."""

    def __init__(self, path: Path, parse: Callable[[dict[str, Any]], T], refresh_seconds: float = 1.0) -> None:
        self.path = path
        self.refresh_seconds = refresh_seconds
        self._parse = parse
        self._value = parse({})
        self._mtime_ns = -1
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def current(self, *, force: bool = False) -> T:
        with self._lock:
            now = time.monotonic()
            if force or now - self._checked_at >= self.refresh_seconds:
                self._checked_at = now
                raw, mtime_ns = _changed_json(self.path, self._mtime_ns)
                if raw is not None:
                    self._value, self._mtime_ns = self._parse(raw), mtime_ns
            return self._value

    def write(self, document: dict[str, Any]) -> T:
        """Replace the file with ``document`` (``write_private_json``) and read it back."""
        write_private_json(self.path, document)
        return self.current(force=True)
