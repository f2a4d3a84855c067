"""The senders' read API contract (``GET /caliper/events``), shared by the gateway and the sink.

The gateway turns HTTP query parameters into an ``EventQuery`` (answering 400 for bad ones) and asks an
``EventReader`` for the page; the sink implements the reader over its raw archive (``sinks.read_model``), either in
process (a ClickHouse server) or through its HTTP endpoint (embedded ClickHouse, owned by the sink process).
Neither side imports the other: this module is the whole contract between them.

A page holds the CURRENT version of each event (the newest send time, then the received time, as for facts),
newest event time first, each as it was sent (``event``) with the times the pipeline knows in ISO 8601 UTC
(``...Z``) and how many versions it has (``versions``: more than 1 for a corrected event). Pages follow each other
by ``offset`` or, better, by the opaque ``cursor`` of the previous page's ``next_cursor``: the position after its
last event (``encode_cursor``), so a page never repeats or skips an event when new ones arrive meanwhile.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from schemas.errors import PipelineError

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_OFFSET = 10_000_000


@dataclass(frozen=True, slots=True)
class EventQuery:
    """One page of one tenant's events, newest first. Every filter is optional (empty / None = no filter)."""

    tenant: str
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    sensor: str = ""
    actor_id: str = ""
    start_ms: int | None = None  # event time >= start (UTC epoch ms)
    end_ms: int | None = None  # event time < end
    event_type: str = ""
    profile: str = ""
    # the cursor: only events after (event time, event id) = (after_time_ms, after_event_id) in the page's order
    after_time_ms: int | None = None
    after_event_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventQuery:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True, slots=True)
class EventPage:
    """The events of one page (JSON objects) and the page's bounds."""

    events: list[dict[str, Any]] = field(default_factory=list)
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    next_cursor: str | None = None  # the cursor of the next page; None when this page is the last

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "limit": self.limit, "offset": self.offset, "count": len(self.events),
                "next_cursor": self.next_cursor}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventPage:
        cursor = data.get("next_cursor")
        return cls(events=list(data.get("events", [])), limit=int(data.get("limit", DEFAULT_PAGE_SIZE)),
                   offset=int(data.get("offset", 0)), next_cursor=cursor if isinstance(cursor, str) else None)


MAX_CURSOR_LENGTH = 4096


def encode_cursor(event_time_ms: int, event_id: str) -> str:
    """The opaque cursor of a position in the page order (after this event)."""
    return base64.urlsafe_b64encode(orjson.dumps([event_time_ms, event_id])).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(event time ms, event id)`` of a cursor; ValueError when it is not one this API gave."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("not a cursor of this API")
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as error:
        raise ValueError("not a cursor of this API") from error
    if (not isinstance(position, list) or len(position) != 2 or type(position[0]) is not int
            or not isinstance(position[1], str) or not -(2**62) < position[0] < 2**62):
        raise ValueError("not a cursor of this API")
    return position[0], position[1]


class ReadUnavailableError(PipelineError):
    """The store behind the read API cannot answer now (the caller answers 503 and retries later)."""


class EventReader(Protocol):
    """What the gateway needs from the read side."""

    async def read_events(self, query: EventQuery) -> EventPage:
        """The page ``query`` names; raises ``ReadUnavailableError`` when the store cannot answer."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
