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
        for name, kind, optional, default in _FIELD_SPECS:
            value = document.get(name)
            if type(value) is kind:  # the usual case, checked at once (a bool is not exactly an int)
                values[name] = value
            elif optional:
                value = optional_field(_RECORD, document, name, kind)
                values[name] = default if value is None else value
            else:
                values[name] = required_field(_RECORD, document, name, kind)
        values["payload"] = values["payload"].encode()
        return cls(event=RawEvent(**values), content_hash=required_field(_RECORD, document, "content_hash", str))


# RawEvent's fields as a line holds them: name, JSON type, whether it may be absent or null, and its value then
# (a field added after the first version: its default; ``send_time_ms``: 0, the archive's "no send time")
_FIELD_SPECS = tuple(
    (field.name, _KINDS[str(field.type)], field.default is not MISSING or field.name == "send_time_ms",
     0 if field.default is MISSING else field.default)
    for field in fields(RawEvent))
