"""The senders' read API contract (``GET /caliper/events``), shared by the gateway and the sink.

The gateway turns HTTP query parameters into an ``EventQuery`` (answering 400 for bad ones) and asks an
``EventReader`` for the page; the sink implements the reader over its tables (``sinks.read_model``), either in
process (a ClickHouse server) or through its HTTP endpoint (embedded ClickHouse, owned by the sink process).
Neither side imports the other: this module is the whole contract between them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

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

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "limit": self.limit, "offset": self.offset, "count": len(self.events)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventPage:
        return cls(events=list(data.get("events", [])), limit=int(data.get("limit", DEFAULT_PAGE_SIZE)),
                   offset=int(data.get("offset", 0)))


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
