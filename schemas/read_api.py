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
from schemas.timeback_read import pagination, stored_event_id

# the sink's read API (``sinks.http``), which the gateway calls when only the sink may open ClickHouse
# (``gateway.read_client``): POST an EventQuery as JSON / ``{"tenant", "job_id"}``
READ_EVENTS_PATH = "/read/events"
READ_JOBS_PATH = "/read/jobs"

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
    actor_email: str = ""  # the actor's email as sent (actor.email)
    event_id: str = ""  # one event, by its canonical id (``schemas.event_identity.canonical_id``)
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
    """The events of one page (JSON objects) and the page's bounds: ``total`` events pass the query's filters
    (wherever the page starts), of which ``position`` come before the page (its offset, or where its cursor is)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    next_cursor: str | None = None  # the cursor of the next page; None when this page is the last
    total: int = 0
    position: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "limit": self.limit, "offset": self.offset, "count": len(self.events),
                "next_cursor": self.next_cursor, "total": self.total, "position": self.position}

    def pagination(self) -> dict[str, Any]:
        """The Timeback API's ``pagination`` of this page."""
        return pagination(self.total, self.limit, self.position)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventPage:
        cursor = data.get("next_cursor")
        return cls(events=list(data.get("events", [])), limit=int(data.get("limit", DEFAULT_PAGE_SIZE)),
                   offset=int(data.get("offset", 0)), next_cursor=cursor if isinstance(cursor, str) else None,
                   total=int(data.get("total", 0)), position=int(data.get("position", 0)))


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


class ReadBusyError(ReadUnavailableError):
    """The read side is serving as many reads as it may (for this tenant, or in all): 429, retry after
    ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EventReader(Protocol):
    """What the gateway needs from the read side: the events (and, ``JobReader``, the jobs' status)."""

    async def read_events(self, query: EventQuery) -> EventPage:
        """The page ``query`` names; raises ``ReadUnavailableError`` when the store cannot answer."""
        ...

    async def read_job(self, tenant: str, job_id: str) -> JobStatus | None:
        """The status of one job of ``tenant`` (delivery receipts); None when the read side has no record of it
        (yet); raises ``ReadUnavailableError`` when the store cannot answer."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# -- delivery receipts: the status of a job (``GET /jobs/{jobId}/status``) --------------------------------------

PROCESSING, COMPLETED, COMPLETED_WITH_ERRORS = "processing", "completed", "completed_with_errors"
WAITING, ACTIVE, FAILED = "waiting", "active", "failed"  # the Timeback job states besides ``completed``


@dataclass(frozen=True, slots=True)
class FailedEventReceipt:
    """One event of a job that will not be loaded as sent: where it failed (``streams``: dead-lettered;
    ``sink``: refused at load) and why."""

    index: int  # the event's position in the request (data[index])
    event_id: str
    stage: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "eventId": self.event_id, "stage": self.stage, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FailedEventReceipt:
        return cls(index=int(data["index"]), event_id=str(data["eventId"]), stage=str(data["stage"]),
                   reason=str(data["reason"]))


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What became of the events of one job (``schemas.jobs``), as the read side knows it now.

    ``status`` is ``processing`` until every event of the job is accounted for (its facts loaded, dead-lettered,
    or refused at load), then ``completed``, or ``completed_with_errors`` when some were not loaded. An event
    loaded after it failed (a replay) counts as loaded. ``accepted`` is None while the job's record itself is not
    loaded yet. ``event_ids`` are given once the job is complete, ``loaded_ids`` (those of them loaded) too.

    The same answer carries the Timeback API's job (``job``, what the Timeback SDK's ``jobs.get_status`` parses):
    ``state`` is ``waiting`` while the job's record is not loaded, ``active`` while events are still on their way,
    ``completed`` when every event is loaded, and ``failed`` when some were not (``returnValue.status`` is then
    ``error``). ``failed`` rather than ``completed`` with an error status: the SDK's ``wait_for_completion``
    returns on ``completed`` without looking at ``returnValue`` (its contract: it returns "only on success"), and
    raises ``JobFailedError`` on ``failed``; so a sender waiting for its job learns that events were lost, then
    reads why from ``failures``. ``returnValue.results`` names the loaded events (``allocatedId``: the numeric
    id of ``schemas.timeback_read.stored_event_id``, as a string).
    """

    job_id: str
    status: str
    accepted: int | None
    entities: int = 0
    loaded: int = 0
    dead_lettered: int = 0
    rejected_at_load: int = 0
    received_time: str | None = None  # ISO 8601 UTC
    event_ids: list[str] | None = None
    failures: list[FailedEventReceipt] = field(default_factory=list)
    loaded_ids: list[str] | None = None

    @property
    def state(self) -> str:
        """The Timeback job state of this status (see the class docstring)."""
        if self.status == PROCESSING:
            return WAITING if self.accepted is None else ACTIVE
        return FAILED if self.status == COMPLETED_WITH_ERRORS else COMPLETED

    def timeback_job(self) -> dict[str, Any]:
        """The Timeback API's ``job`` object of this status."""
        return_value = None
        if self.status != PROCESSING:
            return_value = {"status": "error" if self.status == COMPLETED_WITH_ERRORS else "success",
                            "results": [{"allocatedId": str(stored_event_id(event_id)), "externalId": event_id}
                                        for event_id in self.loaded_ids or ()]}
        return {"id": self.job_id, "state": self.state, "returnValue": return_value,
                "processedOn": self.received_time}

    @property
    def processing(self) -> int | None:
        if self.accepted is None:
            return None
        return max(0, self.accepted - self.loaded - self.dead_lettered - self.rejected_at_load)

    def to_json(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id, "status": self.status, "receivedTime": self.received_time,
            "counts": {"accepted": self.accepted, "entities": self.entities, "loaded": self.loaded,
                       "deadLettered": self.dead_lettered, "rejectedAtLoad": self.rejected_at_load,
                       "processing": self.processing},
            "eventIds": self.event_ids, "failures": [failure.to_json() for failure in self.failures],
            "job": self.timeback_job(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobStatus:
        counts = data["counts"]
        accepted = counts.get("accepted")
        ids = data.get("eventIds")
        return_value = (data.get("job") or {}).get("returnValue")
        loaded = None if not return_value else [str(result["externalId"]) for result in return_value["results"]]
        return cls(job_id=str(data["jobId"]), status=str(data["status"]),
                   accepted=None if accepted is None else int(accepted), entities=int(counts.get("entities", 0)),
                   loaded=int(counts["loaded"]), dead_lettered=int(counts["deadLettered"]),
                   rejected_at_load=int(counts["rejectedAtLoad"]), received_time=data.get("receivedTime"),
                   event_ids=None if ids is None else [str(i) for i in ids],
                   failures=[FailedEventReceipt.from_json(f) for f in data.get("failures", [])], loaded_ids=loaded)

