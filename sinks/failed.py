"""Failed events and jobs into ClickHouse: the targets (``sinks.targets``) of the side topics (migration 010).

- ``dead_letters_target`` (``<prefix>deadletter``, stage ``streams``) and ``rejected_requests_target``
  (``<prefix>rejected``, stage ``gateway``): one ``failed_events_in`` row per record (``schemas.side_topics``);
- ``failed_at_load_rows``: the messages ClickHouse refused at load (``sinks.writer``), stage ``sink``, written in
  the same batch as ``sink_rejects``: one row per message, or per tenant of a refused block of facts or archive
  rows (``describe_fact``, ``describe_archive_row``: the row's key is the tenant and the message's position);
- ``jobs_target`` (``<prefix>jobs``): one ``jobs_in`` row per job record (``schemas.jobs``).

They load exactly as the facts do (one insert per recorded offset range, with its deduplication token). A failed
event keeps what was sent (``payload``: the event's JSON where it can be read; ``original_base64``: the failed
message byte for byte, what ``replay`` re-publishes) and the keyed pseudonym of every person it names where a
learner can be (``student_keys``, as the raw archive: erasure deletes the rows and the loader view drops later ones).
Each row carries the failure's ``reason_code`` (``schemas.reasons``) beside its ``reason``; a record written before
the code existed leaves it out, and ``failed_events_in`` derives it from the stage and the reason (migration 013).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from schemas.avro.codec import AvroCodec, LearningFactCodec, RawEventCodec
from schemas.blocks import BlockCodec
from schemas.errors import PipelineError, SchemaEncodingError
from schemas.event_identity import canonical_id, learner_candidates
from schemas.jobs import JobRecord
from schemas.privacy import student_key_for
from schemas.reasons import STAGE_GATEWAY, STAGE_SINK, STAGE_STREAMS, ReasonCode
from schemas.records import RawEvent
from schemas.side_topics import DeadLetter, RejectedRequest
from sinks.tables import (
    FAILED_EVENTS_INPUT_TABLE,
    FAILED_EVENTS_TABLE,
    JOBS_INPUT_TABLE,
    JOBS_TABLE,
    RejectedMessage,
)
from sinks.targets import Describe, JsonRowsTarget, SourceMessage

REASON_LIMIT = 2000


def _keys(tenant: str, people: Sequence[str], student_key: bytes) -> list[str]:
    return [student_key_for(tenant, person, student_key) for person in dict.fromkeys(people) if person]


def _people(document: Any) -> list[str]:
    """Every id a document names where a learner can be; for an envelope, those of each of its items."""
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        return [person for item in document["data"] for person in _people(item)]
    return [canonical_id(person) for person in learner_candidates(document)] if isinstance(document, dict) else []


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def failed_row(*, stage: str, reason: str, reason_code: ReasonCode | None, tenant: str, client_id: str = "",
               source: str = "", job_id: str = "", envelope_index: int | None = None, event_id: str = "", topic: str,
               partition: int, offset: int, failed_time_ms: int, worker_version: str = "",
               student_keys: Sequence[str] = (), payload: str = "", original: bytes = b"") -> dict[str, Any]:
    """One ``failed_events_in`` row; without ``reason_code`` (None) the table derives it from the reason."""
    row = {"tenant": tenant, "stage": stage, "reason": reason[:REASON_LIMIT], "client_id": client_id,
           "source": source, "job_id": job_id, "envelope_index": envelope_index, "event_id": event_id,
           "topic": topic, "partition": partition, "offset": offset, "failed_time_ms": failed_time_ms,
           "worker_version": worker_version, "student_keys": list(student_keys), "payload": payload,
           "original_base64": base64.b64encode(original).decode("ascii")}
    if reason_code is not None:
        row["reason_code"] = reason_code.value
    return row


def dead_letter_row(letter: DeadLetter, codec: RawEventCodec, student_key: bytes,
                    fallback_time_ms: int) -> dict[str, Any]:
    """The row of a dead letter: whose event it was, from the record, else from its original RawEvent."""
    raw: RawEvent | None = None
    with contextlib.suppress(PipelineError):  # not a RawEvent at all: kept with what the dead letter says
        raw = _first_event(codec, letter.original)
    tenant = letter.tenant or (raw.tenant if raw else "")
    document = _json(raw.payload) if raw else None
    people = _people(document) + ([canonical_id(raw.student_id)] if raw and raw.student_id else [])
    return failed_row(
        stage=STAGE_STREAMS, reason=letter.reason, reason_code=letter.reason_code, tenant=tenant,
        client_id=letter.client_id or (raw.client_id if raw else ""), source=letter.source or (
            raw.source if raw else ""),
        job_id=letter.job_id or (raw.job_id or "" if raw else ""),
        envelope_index=letter.envelope_index if letter.envelope_index is not None else (
            raw.envelope_index if raw and raw.job_id else None),
        event_id=letter.event_id or (raw.event_id if raw else ""), topic=letter.topic, partition=letter.partition,
        offset=letter.offset, failed_time_ms=letter.time_ms or fallback_time_ms, worker_version=letter.worker_version,
        student_keys=_keys(tenant, people, student_key),
        payload=raw.payload.decode("utf-8", "replace") if raw else "", original=letter.original)


def dead_letters_target(codec: RawEventCodec, student_key: bytes) -> JsonRowsTarget:
    """The dead-letter topic's target: a ``DeadLetter`` -> a ``failed_events_in`` row (stage ``streams``)."""
    def row_of(message: SourceMessage) -> dict[str, Any]:
        return dead_letter_row(DeadLetter.from_json(message.value), codec, student_key, _now_ms())

    return JsonRowsTarget(FAILED_EVENTS_INPUT_TABLE, row_of, destination=FAILED_EVENTS_TABLE)


def rejected_requests_target(student_key: bytes) -> JsonRowsTarget:
    """The rejected topic's target: a ``RejectedRequest`` -> a ``failed_events_in`` row (stage ``gateway``); its
    position is the rejected topic's own (a request has no raw event)."""
    def row_of(message: SourceMessage) -> dict[str, Any]:
        record = RejectedRequest.from_json(message.value)
        problems = "; ".join(f"{path}: {text}" if path else text for path, text in record.problems)
        return failed_row(
            stage=STAGE_GATEWAY, reason=f"{record.status}: {problems}", reason_code=record.reason_code,
            tenant=record.tenant,
            client_id=record.client_id, source=record.endpoint, topic=message.topic, partition=message.partition,
            offset=message.offset, failed_time_ms=record.time_ms or _now_ms(),
            student_keys=_keys(record.tenant, _people(_json(record.body.encode())), student_key),
            payload=record.body, original=record.body.encode())

    return JsonRowsTarget(FAILED_EVENTS_INPUT_TABLE, row_of, destination=FAILED_EVENTS_TABLE)


def jobs_target() -> JsonRowsTarget:
    """The jobs topic's target: a ``JobRecord`` -> a ``jobs_in`` row."""
    def row_of(message: SourceMessage) -> dict[str, Any]:
        job = JobRecord.from_json(message.value)
        return {"tenant": job.tenant, "job_id": job.job_id, "part": job.part, "parts": job.parts,
                "client_id": job.client_id, "endpoint": job.endpoint, "received_time_ms": job.received_time_ms,
                "accepted": job.accepted, "entities": job.entities, "event_indexes": list(job.event_indexes),
                "event_ids": list(job.event_ids)}

    return JsonRowsTarget(JOBS_INPUT_TABLE, row_of, destination=JOBS_TABLE)


# -- rejected at load ------------------------------------------------------------------------------------------

def _records(original: bytes, codec: AvroCodec, blocks: BlockCodec | None) -> tuple[list[dict[str, Any]], bool]:
    """The records a message holds, decoded (a block's, or the single record), and whether it was a block; none
    when it does not decode."""
    try:
        if blocks is not None:
            with contextlib.suppress(SchemaEncodingError):
                blocks.writer_schema_of(original)  # a block header: a block's records
                return blocks.decode_items(original), True
        return [codec.decode(original)], False
    except (PipelineError, TypeError):
        return [], False


def _per_tenant(records: list[dict[str, Any]], owner_of: Callable[[dict[str, Any]], dict[str, Any]],
                block_of: Callable[[list[dict[str, Any]]], bytes] | None) -> list[Mapping[str, Any]]:
    """One description per tenant of a message's records (``failed_events`` keeps one row per tenant and message
    position): the first record's routing, every record's people (or student keys) and payloads, and, for a block
    (``block_of``), a block of that tenant's records as the ``original`` (what ``replay`` sends back)."""
    merged: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for record in records:
        owner = owner_of(record)
        entry = merged.get(owner["tenant"])
        if entry is None:
            merged[owner["tenant"]] = (owner, [record])
            continue
        first, same_tenant = entry
        same_tenant.append(record)
        for name in ("people", "student_keys"):
            if name in owner:
                first[name] = list(dict.fromkeys([*first[name], *owner[name]]))
        if "payload" in owner:
            first["payload"] += "\n" + owner["payload"]  # JSON lines: every event of the tenant's rows
    described: list[Mapping[str, Any]] = []
    for owner, same_tenant in merged.values():
        if block_of is not None:
            owner["original"] = block_of(same_tenant)
        described.append(owner)
    return described


def describe_fact(codec: LearningFactCodec, blocks: BlockCodec | None = None) -> Describe:
    """Whose facts a refused facts-topic message held (best effort: a message that does not decode says nothing);
    a block's facts one description per tenant (``_per_tenant``)."""
    def owner_of(fact: dict[str, Any]) -> dict[str, Any]:
        return {"tenant": fact["tenant"], "client_id": fact["client_id"], "source": fact["source"],
                "event_id": fact["event_id"], "job_id": fact["job_id"] or "", "envelope_index": fact["envelope_index"],
                "people": [fact["student_id"]] if fact["student_id"] else []}

    return _describe_records(codec, blocks, owner_of)


def _describe_records(codec: AvroCodec, blocks: BlockCodec | None,
                      owner_of: Callable[[dict[str, Any]], dict[str, Any]]) -> Describe:
    """The ``Describe`` of an Avro topic whose messages are records of ``codec`` or blocks of them: each record's
    owner (``owner_of``), one description per tenant of a block (its records re-joined into a block of their own)."""
    def block_of(records: list[dict[str, Any]]) -> bytes:
        assert blocks is not None
        return blocks.join([codec.encode(record) for record in records])

    def describe(original: bytes) -> list[Mapping[str, Any]]:
        records, block = _records(original, codec, blocks)
        return _per_tenant(records, owner_of, block_of if block else None)
    return describe


def _first_event(codec: RawEventCodec, original: bytes) -> RawEvent | None:
    """The first RawEvent of a raw-topic message (a batch record or a lone event); None for an empty batch."""
    events = codec.decode_events(original)
    return events[0] if events else None


def describe_archive_row(codec: AvroCodec, blocks: BlockCodec | None = None) -> Describe:
    """Whose events a refused archive-topic message held (their ``student_keys`` as the worker computed them); a
    block's rows one description per tenant (``_per_tenant``)."""
    def owner_of(row: dict[str, Any]) -> dict[str, Any]:
        return {"tenant": row["tenant"], "client_id": row["client_id"], "source": row["source"],
                "event_id": row["event_id"], "job_id": row["job_id"],
                "envelope_index": row["envelope_index"] if row["job_id"] else None,
                "student_keys": list(row["student_keys"]), "payload": row["payload"]}

    return _describe_records(codec, blocks, owner_of)


def failed_at_load_rows(rejects: Sequence[RejectedMessage], describe: Describe | None,
                        student_key: bytes) -> list[dict[str, Any]]:
    """The ``failed_events_in`` rows (stage ``sink``) of the messages ClickHouse refused: one per message, or per
    tenant of a block's records (``describe``), one for a message nothing can be told of."""
    now = _now_ms()
    rows = []
    for reject in rejects:
        for described in (describe(reject.raw) if describe is not None else ()) or ({},):
            owner = dict(described)
            people = owner.pop("people", [])
            tenant = owner.get("tenant", "")
            keys = owner.pop("student_keys", None)
            rows.append(failed_row(stage=STAGE_SINK, reason=reject.error, reason_code=reject.reason_code,
                                   topic=reject.topic, partition=reject.partition, offset=reject.offset,
                                   failed_time_ms=now,
                                   student_keys=_keys(tenant, people, student_key) if keys is None else keys,
                                   **{"tenant": tenant, "original": reject.raw, **owner}))
    return rows


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
