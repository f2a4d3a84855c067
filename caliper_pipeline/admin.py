"""Operator actions that need the process owning ClickHouse: erasure goes through the sink in embedded mode."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request

from caliper_pipeline.settings import Settings
from schemas.errors import PipelineError


class AdminActionError(PipelineError):
    """An operator action failed; the message says why."""


def local_secret(settings: Settings, name: str, configured: str) -> str:
    """A secret of the local stack: the configured one, or one generated once and kept in ``var/<name>``."""
    if configured:
        return configured
    path = settings.local.home / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def local_admin_token(settings: Settings) -> str:
    """The sink's admin token (``var/sink-admin-token`` for the local stack)."""
    return local_secret(settings, "sink-admin-token", settings.sink.admin_token.get_secret_value())


def local_privacy_keys(settings: Settings) -> dict[str, str]:
    """The privacy keys as environment variables: the configured ones, or for the local stack ones generated once
    and kept in ``var/email-hash-key`` (pseudonymizes emails) and ``var/student-key`` (the student key that
    erasure matches on)."""
    privacy = settings.privacy
    return {
        "CALIPER_PRIVACY__EMAIL_HASH_KEY": local_secret(settings, "email-hash-key",
                                                        privacy.email_hash_key.get_secret_value()),
        "CALIPER_PRIVACY__STUDENT_KEY": local_secret(settings, "student-key", privacy.student_key.get_secret_value()),
    }


def erase_student_facts(settings: Settings, tenant: str, student_id: str, requested_by: str) -> int:
    if not settings.clickhouse.embedded:
        from sinks.erasure import erase_student
        from sinks.targets import open_target

        target = open_target(settings.clickhouse)
        try:
            return erase_student(target, tenant, student_id, requested_by, cluster=settings.clickhouse.cluster,
                                 hash_key=settings.sink.erasure_hash_key.get_secret_value().encode())
        finally:
            target.close()
    request = urllib.request.Request(
        f"{settings.sink.base_url()}/admin/erase",
        data=json.dumps({"tenant": tenant, "student_id": student_id, "requested_by": requested_by}).encode(),
        headers={"Authorization": f"Bearer {local_admin_token(settings)}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return int(json.loads(response.read())["rows_deleted"])
    except urllib.error.HTTPError as error:
        raise AdminActionError(f"the sink refused the erasure ({error.code}): {error.read().decode()}") from error
    except urllib.error.URLError as error:
        raise AdminActionError(f"the sink at {settings.sink.base_url()} is not reachable: {error.reason}") from error
