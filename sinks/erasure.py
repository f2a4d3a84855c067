"""Right to erasure: delete every fact of one student and record that it was done, without personal data."""

from __future__ import annotations

import hashlib
import hmac

from sinks.fact_rows import FACT_TABLE
from sinks.migrations import Layout
from sinks.targets import ClickHouseTarget, quote_literal

# tables whose rows carry a student id (sink_rejects holds undecodable bytes: see docs/analytics.md)
STUDENT_TABLES = (FACT_TABLE,)


def student_id_hash(tenant: str, student_id: str, key: bytes = b"") -> str:
    """What ``erasures`` stores instead of the student id: HMAC-SHA256 with ``key`` (SHA-256 without one)."""
    message = f"{tenant}\x1f{student_id}".encode()
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def erase_student(
    target: ClickHouseTarget, tenant: str, student_id: str, requested_by: str,
    *, cluster: str = "", hash_key: bytes = b"",
) -> int:
    """Delete the student's rows from every table holding facts; returns how many rows were deleted."""
    layout = Layout(target.database, cluster)
    where = f"tenant = {quote_literal(tenant)} AND student_id = {quote_literal(student_id)}"
    deleted = 0
    for table in STUDENT_TABLES:
        read_table = f"{target.database}.{table}"
        _, rows = target.query_rows(f"SELECT count() FROM {read_table} WHERE {where}")
        deleted += int(rows[0][0])
        target.command(
            f"DELETE FROM {layout.local_table(table)} {layout.on_cluster} WHERE {where} "
            "SETTINGS mutations_sync = 2, lightweight_deletes_sync = 2")
    target.command(
        f"INSERT INTO {target.database}.erasures (tenant, student_id_hash, requested_by, requested_at, rows_deleted) "
        f"VALUES ({quote_literal(tenant)}, {quote_literal(student_id_hash(tenant, student_id, hash_key))}, "
        f"{quote_literal(requested_by)}, now64(3), {deleted})")
    return deleted
