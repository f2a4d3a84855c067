"""The JSON records of the pipeline's side topics, each written and read through one definition.

- ``RejectedRequest`` (``<prefix>rejected``, written by the gateway): a request refused for its content, with the
  problems found and the start of its body;
- ``DeadLetter`` (``<prefix>deadletter``, written by the streams worker): a raw message that could not become
  facts, with the reason and the original bytes; ``caliper-pipeline replay`` reads it back;
- ``ConflictNotice`` (``<prefix>conflicts``, written by the streams worker): an event id seen again with other
  content.

Each is a frozen dataclass with ``to_json() -> bytes`` and ``from_json(bytes)``; ``from_json`` raises
``SideTopicRecordError`` naming the record and the field at fault, so a reader never guesses at a shape.
A refused request and a dead letter carry their ``reason_code`` (``schemas.reasons``); one written before the
field existed, or with a code this reader does not know, reads with None (the sink then derives it from the
detail: migration 013).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Self

import orjson

from schemas.errors import PipelineError
from schemas.reasons import ReasonCode, read_code

REJECTED_BODY_LIMIT = 64 * 1024  # bytes of a rejected request's body kept on the rejected topic
REJECTED_PROBLEMS_LIMIT = 100  # problems kept per rejected request


class SideTopicRecordError(PipelineError):
    """Bytes that are not a valid JSON record (a side topic's, a job's, an archived event's); says which record
    and what is wrong."""

    def __init__(self, record: str, problem: str) -> None:
        super().__init__(f"not a valid {record} record: {problem}")
        self.record = record
        self.problem = problem


def json_record(record: str, data: bytes | str) -> Mapping[str, Any]:
    """The JSON object ``data`` holds; ``SideTopicRecordError`` naming ``record`` when it is none."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise SideTopicRecordError(record, f"not JSON ({error})") from error
    if not isinstance(document, dict):
        raise SideTopicRecordError(record, "not a JSON object")
    return document


def required_field(record: str, document: Mapping[str, Any], name: str, kind: type) -> Any:
    """``document[name]``, of ``kind`` (a bool is never an int here); else ``SideTopicRecordError`` naming it."""
    if name not in document:
        raise SideTopicRecordError(record, f"{name!r} is missing")
    value = document[name]
    # bool is an int in Python, never in these records
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SideTopicRecordError(record, f"{name!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def record_fields(record: Any) -> dict[str, Any]:
    """A dataclass record's fields by name, in their order: the JSON object a record writes, before the fields
    it writes in another form (a record reads each back with ``required_field`` or ``optional_field``)."""
    return {field.name: getattr(record, field.name) for field in fields(record)}


def optional_field(record: str, document: Mapping[str, Any], name: str, kind: type) -> Any:
    """A field added after the record's first version: None when absent or null, else checked as
    ``required_field``."""
    if document.get(name) is None:
        return None
    return required_field(record, document, name, kind)


@dataclass(frozen=True, slots=True)
class RejectedRequest:
    """A request the gateway refused for its content (4xx), kept for the sender's support."""

    tenant: str
    client_id: str
    endpoint: str
    status: int
    problems: tuple[tuple[str, str], ...]  # (path, message) pairs
    body: str  # the body's first REJECTED_BODY_LIMIT bytes, decoded as UTF-8 (bad bytes replaced)
    body_truncated: bool
    time_ms: int | None = None  # when it was refused (None in records written before the field existed)
    reason_code: ReasonCode | None = None  # the problems' code (None: written before the field existed)

    @classmethod
    def of(cls, *, tenant: str, client_id: str, endpoint: str, status: int,
           problems: Sequence[tuple[str, str]], body: bytes, reason_code: ReasonCode,
           time_ms: int | None = None) -> Self:
        """The record of a refused request, with the problems and the body cut to their limits."""
        return cls(tenant=tenant, client_id=client_id, endpoint=endpoint, status=status,
                   problems=tuple((str(path), str(message)) for path, message in problems[:REJECTED_PROBLEMS_LIMIT]),
                   body=body[:REJECTED_BODY_LIMIT].decode("utf-8", "replace"),
                   body_truncated=len(body) > REJECTED_BODY_LIMIT,
                   time_ms=time.time_ns() // 1_000_000 if time_ms is None else time_ms, reason_code=reason_code)

    def to_json(self) -> bytes:
        return orjson.dumps({**record_fields(self),
                             "problems": [{"path": path, "message": message} for path, message in self.problems]})

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        name = "rejected request"
        document = json_record(name, data)
        problems = []
        for index, problem in enumerate(required_field(name, document, "problems", list)):
            if not isinstance(problem, dict):
                raise SideTopicRecordError(name, f"problems[{index}] must be an object")
            problems.append((required_field(name, problem, "path", str),
                             required_field(name, problem, "message", str)))
        return cls(tenant=required_field(name, document, "tenant", str),
                   client_id=required_field(name, document, "client_id", str),
                   endpoint=required_field(name, document, "endpoint", str),
                   status=required_field(name, document, "status", int),
                   problems=tuple(problems), body=required_field(name, document, "body", str),
                   body_truncated=required_field(name, document, "body_truncated", bool),
                   time_ms=optional_field(name, document, "time_ms", int),
                   reason_code=read_code(document.get("reason_code")))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A raw message the streams worker could not turn into facts; ``original`` is its value, byte for byte.

    Where the message decoded as a RawEvent, the dead letter also says whose event it was: tenant, client, source,
    event id, and the job (``schemas.jobs``) and position in it; ``time_ms`` is when it was dead-lettered;
    ``reason_code`` is the reason's code. ``batch_index`` is the event's position in the ``RawEventBatch`` record
    at ``offset`` (None for a lone RawEvent record, or a message that did not decode): ``original`` is then that
    event alone, as a lone RawEvent record, which a replay puts back on ``topic``. Records written before those
    fields existed read with them empty (None for the job, its position, the time, the code and the batch index).
    """

    reason: str
    worker_version: str
    topic: str
    partition: int
    offset: int
    original: bytes
    tenant: str = ""
    client_id: str = ""
    source: str = ""
    event_id: str = ""
    job_id: str | None = None
    envelope_index: int | None = None
    time_ms: int | None = None
    reason_code: ReasonCode | None = None
    batch_index: int | None = None

    def to_json(self) -> bytes:
        document = record_fields(self)
        document["original_b64"] = base64.b64encode(document.pop("original")).decode("ascii")
        return orjson.dumps(document)

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        name = "dead letter"
        document = json_record(name, data)
        encoded = required_field(name, document, "original_b64", str)
        try:
            original = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise SideTopicRecordError(name, f"'original_b64' is not base64 ({error})") from error
        optional_text = {key: optional_field(name, document, key, str) or "" for key in (
            "tenant", "client_id", "source", "event_id")}
        return cls(reason=required_field(name, document, "reason", str),
                   worker_version=required_field(name, document, "worker_version", str),
                   topic=required_field(name, document, "topic", str),
                   partition=required_field(name, document, "partition", int),
                   offset=required_field(name, document, "offset", int), original=original, **optional_text,
                   job_id=optional_field(name, document, "job_id", str),
                   envelope_index=optional_field(name, document, "envelope_index", int),
                   time_ms=optional_field(name, document, "time_ms", int),
                   reason_code=read_code(document.get("reason_code")),
                   batch_index=optional_field(name, document, "batch_index", int))


@dataclass(frozen=True, slots=True)
class ConflictNotice:
    """An event id that came back with other content (``content_hash`` differs from the one seen before)."""

    tenant: str
    source: str
    event_id: str
    fact_index: int
    previous_content_hash: str
    content_hash: str
    topic: str
    partition: int
    offset: int
    worker_version: str

    def to_json(self) -> bytes:
        return orjson.dumps(record_fields(self))

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        name = "conflict notice"
        document = json_record(name, data)
        text = {key: required_field(name, document, key, str) for key in (
            "tenant", "source", "event_id", "previous_content_hash", "content_hash", "topic", "worker_version")}
        numbers = {key: required_field(name, document, key, int) for key in ("fact_index", "partition", "offset")}
        return cls(**text, **numbers)
