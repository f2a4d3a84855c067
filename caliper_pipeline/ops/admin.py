"""Operator actions that need the process owning ClickHouse: erasure goes through the sink in embedded mode."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from caliper_pipeline.local.stack_secrets import local_admin_token
from caliper_pipeline.settings import Settings
from schemas.errors import PipelineError


class AdminActionError(PipelineError):
    """An operator action failed; the message says why."""


def erase_student_facts(settings: Settings, tenant: str, student_id: str, requested_by: str) -> int:
    if not settings.clickhouse.embedded:  # a server: no sink process to go through, no loader to order against
        from sinks.clickhouse import connect
        from sinks.erasure import SERVER_SETTLE_SECONDS, erase_student
        from sinks.migrations import Layout

        clickhouse = connect(settings.clickhouse)
        try:
            return erase_student(clickhouse, Layout(settings.clickhouse.database, settings.clickhouse.cluster),
                                 tenant, student_id, requested_by, key=settings.privacy.student_key_bytes,
                                 settle_seconds=SERVER_SETTLE_SECONDS)
        finally:
            clickhouse.close()
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
