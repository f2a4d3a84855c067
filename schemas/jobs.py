"""Delivery receipts: the job of an accepted request, its id, and the job record on the jobs topic.

Every request the gateway accepts is a *job*. Its id (``JobIds.issue``) is 25 bytes in lower-case base32 (40
characters): the acceptance time (6 bytes, epoch ms), 11 random bytes, and an 8-byte keyed MAC of the tenant and
those 17 bytes. The key is derived from the gateway's token signing secret (every verification secret is tried,
so ids survive a key rotation as tokens do). So the gateway knows, without asking anyone, whether a job id was
issued to a tenant: another tenant's id, an id never issued and a guessed one are all answered 404 at once, and a
job whose record the sink has not loaded yet is answered ``processing`` instead of 404.

The gateway publishes one or more ``JobRecord`` (``<prefix>jobs``, JSON) in the SAME Kafka transaction as the
job's events: the job's events are visible to the pipeline exactly when its record is. A record names the job's
events by their position in the request (``envelope_index``, which every raw event, fact and dead letter of the
job carries with the job id) and id; a large job is split into parts of at most ``JOB_PART_BYTES`` of ids, each
carrying the totals. Entities sent in an envelope are counted (``entities``) but not followed: they yield no fact.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import orjson

from schemas.side_topics import SideTopicRecordError, json_record, required_field

JOB_ID_PATTERN = re.compile(r"^[a-z2-7]{40}$")
_TIME_BYTES, _RANDOM_BYTES, _MAC_BYTES = 6, 11, 8
_KEY_LABEL = b"caliper-pipeline job ids v1"
JOB_PART_BYTES = 256 * 1024  # ids per job record, at most (a large envelope's job is split into parts)
JOB_RETENTION_DAYS = 30  # how long the sink keeps job records (the jobs table's TTL, migration 010)


class JobIds:
    """Issue job ids bound to a tenant, and tell whether an id was issued to a tenant."""

    def __init__(self, signing_secrets: Sequence[str]) -> None:
        if not signing_secrets:
            raise ValueError("job ids need at least one signing secret")
        self._keys = [hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest() for secret in signing_secrets]

    @staticmethod
    def _mac(key: bytes, tenant: str, body: bytes) -> bytes:
        return hmac.new(key, tenant.encode() + b"\x1f" + body, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, tenant: str, now_ms: int) -> str:
        body = (now_ms & (2**48 - 1)).to_bytes(_TIME_BYTES, "big") + secrets.token_bytes(_RANDOM_BYTES)
        return base64.b32encode(body + self._mac(self._keys[0], tenant, body)).decode("ascii").lower()

    def issued_to(self, job_id: str, tenant: str) -> bool:
        """True when ``job_id`` is an id this gateway (or one sharing its secrets) issued to ``tenant``."""
        raw = _decode(job_id)
        if raw is None:
            return False
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        found = False
        for key in self._keys:  # every key is tried: the time taken does not say which matched
            found |= hmac.compare_digest(mac, self._mac(key, tenant, body))
        return found


def _decode(job_id: str) -> bytes | None:
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        return None
    try:
        return base64.b32decode(job_id.upper())
    except (binascii.Error, ValueError):
        return None


def issued_ms(job_id: str) -> int | None:
    """When the job was accepted (epoch ms), read from its id; None for a string that is no job id."""
    raw = _decode(job_id)
    return None if raw is None else int.from_bytes(raw[:_TIME_BYTES], "big")


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One part of a job as the gateway accepted it: who sent it, when, and which events it holds."""

    job_id: str
    tenant: str
    client_id: str
    endpoint: str  # "caliper" or "hub"
    received_time_ms: int
    accepted: int  # events of the whole job (every part says it)
    entities: int  # entities sent alongside (not followed: they yield no fact)
    part: int
    parts: int
    event_indexes: tuple[int, ...]  # position of each event in the request (the raw event's envelope_index)
    event_ids: tuple[str, ...]

    def to_json(self) -> bytes:
        return orjson.dumps({
            "job_id": self.job_id, "tenant": self.tenant, "client_id": self.client_id, "endpoint": self.endpoint,
            "received_time_ms": self.received_time_ms, "accepted": self.accepted, "entities": self.entities,
            "part": self.part, "parts": self.parts, "event_indexes": list(self.event_indexes),
            "event_ids": list(self.event_ids),
        })

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        name = "job"
        document = json_record(name, data)
        values: dict[str, Any] = {key: required_field(name, document, key, kind) for key, kind in (
            ("job_id", str), ("tenant", str), ("client_id", str), ("endpoint", str), ("received_time_ms", int),
            ("accepted", int), ("entities", int), ("part", int), ("parts", int), ("event_indexes", list),
            ("event_ids", list))}
        if not all(type(i) is int for i in values["event_indexes"]) or not all(
                isinstance(i, str) for i in values["event_ids"]):
            raise SideTopicRecordError(name, "'event_indexes' must hold integers and 'event_ids' strings")
        if len(values["event_indexes"]) != len(values["event_ids"]):
            raise SideTopicRecordError(name, "'event_indexes' and 'event_ids' differ in length")
        values["event_indexes"] = tuple(values["event_indexes"])
        values["event_ids"] = tuple(values["event_ids"])
        return cls(**values)


def job_records(*, job_id: str, tenant: str, client_id: str, endpoint: str, received_time_ms: int,
                events: Sequence[tuple[int, str]], entities: int,
                part_bytes: int = JOB_PART_BYTES) -> list[JobRecord]:
    """The records of one job: its ``(envelope_index, event_id)`` pairs cut into parts of about ``part_bytes``."""
    chunks = list(_chunks(events, part_bytes)) or [[]]
    return [JobRecord(job_id=job_id, tenant=tenant, client_id=client_id, endpoint=endpoint,
                      received_time_ms=received_time_ms, accepted=len(events), entities=entities, part=number,
                      parts=len(chunks), event_indexes=tuple(i for i, _ in chunk),
                      event_ids=tuple(e for _, e in chunk))
            for number, chunk in enumerate(chunks)]


def _chunks(events: Sequence[tuple[int, str]], part_bytes: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    size = 0
    for index, event_id in events:
        cost = len(event_id.encode()) + 16
        if chunk and size + cost > part_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append((index, event_id))
        size += cost
    if chunk:
        yield chunk
