"""Privacy settings and the keyed pseudonyms the pipeline derives from personal data.

One section of the settings (``CALIPER_PRIVACY__...``) holds the two secret keys:

- ``email_hash_key`` keys the HMAC that pseudonymizes a student's email (``LearningFact.student_email_hash``);
- ``student_key`` keys the pseudonymous student key (``student_key_for``): what erasure matches on, so the
  student id never needs to appear in clear in an erasure statement.

The streams worker refuses to start without both (``PrivacySettings.require_keys``).
"""

from __future__ import annotations

import hmac

from pydantic import BaseModel, ConfigDict, SecretStr

from schemas.errors import PipelineError

ENV_PREFIX = "CALIPER_PRIVACY__"


class MissingPrivacyKeyError(PipelineError):
    """A process that pseudonymizes personal data was started without its secret keys."""

    def __init__(self, variables: list[str]) -> None:
        super().__init__(
            f"{' and '.join(variables)} {'is' if len(variables) == 1 else 'are'} not set: personal data cannot be "
            "pseudonymized without secret keys (caliper-pipeline up generates them for the local stack)")
        self.variables = variables


class PrivacySettings(BaseModel):
    """The secret keys of the pseudonyms, and whether the raw email is kept next to its hash."""

    model_config = ConfigDict(frozen=True)

    email_hash_key: SecretStr = SecretStr("")
    student_key: SecretStr = SecretStr("")
    keep_raw_email: bool = False

    def missing_keys(self) -> list[str]:
        """The environment variables of the keys that are empty."""
        return [f"{ENV_PREFIX}{name.upper()}" for name in ("email_hash_key", "student_key")
                if not getattr(self, name).get_secret_value()]

    def require_keys(self) -> None:
        """Raise ``MissingPrivacyKeyError`` naming every empty key."""
        missing = self.missing_keys()
        if missing:
            raise MissingPrivacyKeyError(missing)

    @property
    def email_hash_key_bytes(self) -> bytes:
        return self.email_hash_key.get_secret_value().encode()

    @property
    def student_key_bytes(self) -> bytes:
        return self.student_key.get_secret_value().encode()


def student_key_for(tenant: str, student_id: str, key: bytes) -> str:
    """The pseudonymous key of a student within a tenant: HMAC-SHA256 (hex) of ``tenant \\x1f student_id``.

    Deterministic (every fact of a student carries the same key, so erasure can match on it) and not reversible
    without the key. Empty when there is no student.
    """
    if not student_id:
        return ""
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).hexdigest() without its Python objects
    return hmac.digest(key, f"{tenant}\x1f{student_id}".encode(), "sha256").hex()
