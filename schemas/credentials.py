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
from pathlib import Path
from typing import Any

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


def changed_json(path: Path, seen_mtime_ns: int) -> tuple[dict[str, Any] | None, int]:
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
