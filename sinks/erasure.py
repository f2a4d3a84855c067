"""Right to erasure: delete every fact, every archived event and every failed event of one student, keep them from
coming back, and leave no clear id behind.

A student is named by its *student key*: HMAC-SHA256 of ``tenant \\x1f student_id`` with the pipeline's student
key secret (``schemas.privacy``), which the streams worker also stamps on every fact (``student_key``). So:

1. the erasure is recorded first: ``erasures`` holds (tenant, student key, requester, time, rows deleted) and no
   personal data; from that moment the views that load facts (``learning_facts_loader``) and archived events
   (``raw_events_loader``) drop every fact and event of the student that arrives later - still in Kafka, replays,
   re-sends, re-derivations;
2. the rows are deleted with ``ALTER TABLE ... DELETE WHERE tenant = ... AND student_key = ...`` (a mutation that
   rewrites the parts holding them; a lightweight DELETE would only mask them): the mutation log, the mutation
   files and ``system.mutations`` show the key, never the student id. The raw archive's rows are those whose
   ``student_keys`` hold the key: every archived event naming the student where a learner can be named (as actor,
   assignee or session user), whichever role the normalizer took the learner from;
3. in the sink process (the embedded engine), the erasure holds the loader's write lock from the count to the end
   of the mutation, so no insert that started before step 1 can land after step 2. Against a server, where sinks
   are other processes, the deletion is repeated after ``settle_seconds`` to catch such an insert.

Facts loaded before the fact carried a student key (``student_key = ''``, written by a worker of an older
version) can only be found by the clear id: they are deleted by it, and only when such rows exist.
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from typing import Any

from schemas.privacy import student_key_for
from sinks.clickhouse import ClickHouse
from sinks.errors import SinkError
from sinks.migrations import Layout
from sinks.tables import ERASURES_TABLE, FACT_TABLE, FAILED_EVENTS_TABLE, RAW_ARCHIVE_TABLE

# against a server, the deletion is repeated after this long: longer than an insert of one batch takes
SERVER_SETTLE_SECONDS = 30.0


class ErasureKeyMissingError(SinkError):
    """No student key secret is configured: facts cannot be matched without clear ids."""


def erase_student(
    clickhouse: ClickHouse, layout: Layout, tenant: str, student_id: str, requested_by: str, *, key: bytes,
    write_lock: threading.Lock | None = None, settle_seconds: float = 0.0,
) -> int:
    """Erase one student's facts and archived events; returns how many rows were deleted (both tables)."""
    if not key:
        raise ErasureKeyMissingError("no student key secret is configured (CALIPER_PRIVACY__STUDENT_KEY)")
    student_key = student_key_for(tenant, student_id, key)
    facts = f"{layout.database}.{FACT_TABLE}"
    by_key = {"tenant": tenant, "key": student_key}
    with write_lock or nullcontext():
        rows = int(clickhouse.scalar(
            f"SELECT count() FROM {facts} WHERE tenant = {{tenant:String}} AND student_key = {{key:String}}",
            by_key))
        legacy = int(clickhouse.scalar(
            f"SELECT count() FROM {facts} WHERE tenant = {{tenant:String}} AND student_key = '' "
            "AND student_id = {student:String}", {"tenant": tenant, "student": student_id}))
        archived = int(clickhouse.scalar(
            f"SELECT count() FROM {layout.database}.{RAW_ARCHIVE_TABLE} "
            "WHERE tenant = {tenant:String} AND has(student_keys, {key:String})", by_key))
        failed = int(clickhouse.scalar(
            f"SELECT count() FROM {layout.database}.{FAILED_EVENTS_TABLE} "
            "WHERE tenant = {tenant:String} AND has(student_keys, {key:String})", by_key))
        clickhouse.command(
            f"INSERT INTO {layout.database}.{ERASURES_TABLE} "
            "(tenant, student_id_hash, requested_by, requested_at, rows_deleted) VALUES "
            "({tenant:String}, {key:String}, {by:String}, now64(3), {rows:UInt64})",
            {**by_key, "by": requested_by, "rows": rows + legacy + archived + failed})
        _delete(clickhouse, layout, FACT_TABLE, "student_key = {key:String}", by_key)
        if legacy:
            _delete(clickhouse, layout, FACT_TABLE, "student_key = '' AND student_id = {student:String}",
                    {"tenant": tenant, "student": student_id})
        if archived:
            _delete(clickhouse, layout, RAW_ARCHIVE_TABLE, ARCHIVED_BY_KEY, by_key)
        if failed:
            _delete(clickhouse, layout, FAILED_EVENTS_TABLE, ARCHIVED_BY_KEY, by_key)
    if settle_seconds > 0:
        time.sleep(settle_seconds)
        _delete(clickhouse, layout, FACT_TABLE, "student_key = {key:String}", by_key)
        _delete(clickhouse, layout, RAW_ARCHIVE_TABLE, ARCHIVED_BY_KEY, by_key)
        _delete(clickhouse, layout, FAILED_EVENTS_TABLE, ARCHIVED_BY_KEY, by_key)
    return rows + legacy + archived + failed


ARCHIVED_BY_KEY = "has(student_keys, {key:String})"


def _delete(clickhouse: ClickHouse, layout: Layout, table: str, condition: str, parameters: dict[str, Any]) -> None:
    clickhouse.command(
        f"ALTER TABLE {layout.local_table(table)} {layout.on_cluster} DELETE "
        f"WHERE tenant = {{tenant:String}} AND {condition}",
        parameters, settings={"mutations_sync": 2})
