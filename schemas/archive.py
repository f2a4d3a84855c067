"""The raw archive's contract: one archived event, as the sink streams it to ``caliper-pipeline renormalize``.

The sink keeps every accepted event (the raw topics) in ClickHouse (``raw_events``, ``sinks.archive``) and serves a
tenant's archived events as JSON lines (``POST /archive/raw-events``, admin token): one ``ArchivedEvent`` per line,
``to_json`` / ``from_json``. ``raw_event()`` gives back the ``RawEvent`` the normalizers take, so a re-derivation sees
exactly what the streams worker saw (the payload's bytes, the tenant's time zone, the send and received times).
A request names its range by when the events were received: ``[from_ms, to_ms)``, UTC epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import orjson

from schemas.errors import PipelineError
from schemas.records import RawEvent

ARCHIVE_PAGE_ROWS = 5000  # rows the sink reads from ClickHouse at a time while streaming


class ArchiveRecordError(PipelineError):
    """A line of the archive stream that is not an archived event; says which field is wrong."""


_TEXT = ("tenant", "client_id", "source", "event_id", "event_type", "profile", "student_id", "sensor",
         "tenant_timezone", "content_hash", "payload")
_INTEGERS = ("received_time_ms", "envelope_index")


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One archived version of an event: the RawEvent's fields and the content hash of its payload."""

    tenant: str
    client_id: str
    source: str
    event_id: str
    event_type: str
    profile: str
    student_id: str
    sensor: str
    send_time_ms: int | None
    received_time_ms: int
    envelope_index: int
    tenant_timezone: str
    content_hash: str
    payload: str  # the event's JSON as the gateway published it

    def raw_event(self) -> RawEvent:
        return RawEvent(tenant=self.tenant, client_id=self.client_id, source=self.source, event_id=self.event_id,
                        event_type=self.event_type, profile=self.profile, student_id=self.student_id,
                        sensor=self.sensor, send_time_ms=self.send_time_ms or 0,
                        received_time_ms=self.received_time_ms, envelope_index=self.envelope_index,
                        payload=self.payload.encode(), tenant_timezone=self.tenant_timezone)

    def to_json(self) -> bytes:
        return orjson.dumps({name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        try:
            document: Any = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ArchiveRecordError(f"an archived event line is not JSON: {error}") from error
        if not isinstance(document, dict):
            raise ArchiveRecordError("an archived event line is not a JSON object")
        values: dict[str, Any] = {}
        for name in _TEXT:
            if not isinstance(document.get(name), str):
                raise ArchiveRecordError(f"archived event: {name!r} must be a string")
            values[name] = document[name]
        for name in _INTEGERS:
            value = document.get(name)
            if type(value) is not int:
                raise ArchiveRecordError(f"archived event: {name!r} must be an integer")
            values[name] = value
        send = document.get("send_time_ms")
        if send is not None and type(send) is not int:
            raise ArchiveRecordError("archived event: 'send_time_ms' must be an integer or null")
        return cls(send_time_ms=send, **values)
