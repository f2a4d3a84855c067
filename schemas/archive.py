"""The raw archive's contract: one archived event, as the sink streams it to ``caliper-pipeline renormalize``.

The sink keeps every accepted event (the raw topics) in ClickHouse (``raw_events``, ``sinks.archive``) and serves a
tenant's archived events as JSON lines (``POST /archive/raw-events``, admin token): one ``ArchivedEvent`` per line,
``to_json`` / ``from_json``. It holds the ``RawEvent`` the normalizers take, so a re-derivation sees
exactly what the streams worker saw (the payload's bytes, the tenant's time zone, the send and received times).
A request names its range by when the events were received: ``[from_ms, to_ms)``, UTC epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Self

import orjson

from schemas.records import RAW_EVENT_FIELDS, RawEvent
from schemas.side_topics import json_record, optional_field, required_field

ARCHIVE_PAGE_ROWS = 5000  # rows the sink reads from ClickHouse at a time while streaming


_RECORD = "archived event"
_KINDS = {"str": str, "int": int, "bytes": str}  # RawEvent's field types as JSON (the payload as its text)


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One archived version of an event: the ``RawEvent`` the gateway published and its payload's content hash.

    Its line is the RawEvent's fields (the payload as text) and ``content_hash``: the field list is RawEvent's, so
    a field added there travels here too. A field added after the first version (one with a default) may be absent
    or null; ``send_time_ms`` may be null (the archive's "no send time", RawEvent's 0)."""

    event: RawEvent
    content_hash: str

    def to_json(self) -> bytes:
        values: dict[str, Any] = {name: getattr(self.event, name) for name in RAW_EVENT_FIELDS}
        values["payload"] = self.event.payload.decode()
        values["content_hash"] = self.content_hash
        return orjson.dumps(values)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        document = json_record(_RECORD, data)
        values: dict[str, Any] = {}
        for field in fields(RawEvent):
            kind = _KINDS[str(field.type)]
            has_default = field.default is not MISSING
            if has_default or field.name == "send_time_ms":
                value = optional_field(_RECORD, document, field.name, kind)
                values[field.name] = (field.default if has_default else 0) if value is None else value
            else:
                values[field.name] = required_field(_RECORD, document, field.name, kind)
        values["payload"] = values["payload"].encode()
        return cls(event=RawEvent(**values), content_hash=required_field(_RECORD, document, "content_hash", str))
