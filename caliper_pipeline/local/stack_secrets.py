"""The secrets of a local stack: generated once, kept under its home (mode 0600), given to each child process.

``up`` keeps them (``StackSecrets.kept``): a restart keeps the tokens that clients and analysts already hold.
``LocalPipeline`` (benches, fault tests) makes new ones per run (``StackSecrets.generate``). A secret configured
in the environment wins over the kept one. Each process gets only the secrets it uses (``env_for``).

| file under home | variable | who uses it |
| --- | --- | --- |
| ``jwt-secret`` | ``CALIPER_GATEWAY__JWT_SECRET`` | the gateway signs and checks access tokens |
| ``sink-analyst-token`` | ``CALIPER_SINK__ANALYST_TOKEN`` | reads the sink's ``/sql``, ``/metrics``, ``/readyz`` |
| ``sink-reader-token`` | ``CALIPER_SINK__READER_TOKEN`` | the gateway's ``/read/events``, ``/read/jobs`` of the sink |
| ``sink-admin-token`` | ``CALIPER_SINK__ADMIN_TOKEN`` | the sink's ``/admin/erase`` (``caliper-pipeline erase``) |
| ``email-hash-key`` | ``CALIPER_PRIVACY__EMAIL_HASH_KEY`` | the streams worker pseudonymizes emails |
| ``student-key`` | ``CALIPER_PRIVACY__STUDENT_KEY`` | the student key of facts (streams), erasure (sink) |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

from caliper_pipeline.settings import Settings

JWT_SECRET_FILE = "jwt-secret"
ANALYST_TOKEN_FILE = "sink-analyst-token"
ADMIN_TOKEN_FILE = "sink-admin-token"
READER_TOKEN_FILE = "sink-reader-token"
EMAIL_HASH_KEY_FILE = "email-hash-key"
STUDENT_KEY_FILE = "student-key"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def local_secret(settings: Settings, name: str, configured: str) -> str:
    """A secret of the local stack: the configured one, or one generated once and kept in ``<home>/<name>``
    (created with mode 0600: never readable by another user, not even for an instant)."""
    if configured:
        return configured
    path: Path = settings.local.secret_file(name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_secret())
    return path.read_text().strip()


def _configured(settings: Settings) -> dict[str, str]:
    """The secrets set in the environment (or explicitly), by ``StackSecrets`` field name."""
    gateway, sink = settings.gateway, settings.sink
    return {
        # the gateway's default is the development secret written in the source: only an explicit one counts
        "jwt_secret": gateway.jwt_secret.get_secret_value() if "jwt_secret" in gateway.model_fields_set else "",
        "analyst_token": sink.analyst_token.get_secret_value(),
        "admin_token": sink.admin_token.get_secret_value(),
        "reader_token": sink.reader_token.get_secret_value(),
        "email_hash_key": settings.privacy.email_hash_key.get_secret_value(),
        "student_key": settings.privacy.student_key.get_secret_value(),
    }


_FILES = {"jwt_secret": JWT_SECRET_FILE, "analyst_token": ANALYST_TOKEN_FILE, "admin_token": ADMIN_TOKEN_FILE,
          "reader_token": READER_TOKEN_FILE,
          "email_hash_key": EMAIL_HASH_KEY_FILE,
          "student_key": STUDENT_KEY_FILE}


@dataclass(frozen=True, repr=False)
class StackSecrets:
    jwt_secret: str
    analyst_token: str
    admin_token: str
    reader_token: str
    email_hash_key: str
    student_key: str

    def __repr__(self) -> str:  # never print a secret by accident
        return f"StackSecrets({', '.join(f.name + '=***' for f in fields(self))})"

    @classmethod
    def kept(cls, settings: Settings) -> StackSecrets:
        """``up``: each secret as configured, else the one kept under home (generated on first use)."""
        configured = _configured(settings)
        return cls(**{name: local_secret(settings, _FILES[name], configured[name]) for name in _FILES})

    @classmethod
    def generate(cls, settings: Settings) -> StackSecrets:
        """``LocalPipeline``: new secrets for one run (configured ones kept), never written to disk."""
        configured = _configured(settings)
        return cls(**{name: configured[name] or new_secret() for name in _FILES})

    def env_for(self, process: str) -> dict[str, str]:
        """The environment variables of one child process (``sink``, ``streams`` or ``gateway``)."""
        if process == "gateway":
            return {"CALIPER_GATEWAY__JWT_SECRET": self.jwt_secret, "CALIPER_SINK__READER_TOKEN": self.reader_token}
        privacy = {"CALIPER_PRIVACY__EMAIL_HASH_KEY": self.email_hash_key,
                   "CALIPER_PRIVACY__STUDENT_KEY": self.student_key}
        if process == "sink":  # erasure matches on the student key
            return {"CALIPER_SINK__ANALYST_TOKEN": self.analyst_token, "CALIPER_SINK__ADMIN_TOKEN": self.admin_token,
                    "CALIPER_SINK__READER_TOKEN": self.reader_token, **privacy}
        if process == "streams":
            return privacy
        raise KeyError(f"no secrets for a process named {process!r}")


def local_admin_token(settings: Settings) -> str:
    """The sink's admin token (``<home>/sink-admin-token`` for the local stack)."""
    return local_secret(settings, ADMIN_TOKEN_FILE, settings.sink.admin_token.get_secret_value())
