"""``GET /caliper/events`` and ``GET /caliper/events/{eventId}``: a sender reads back its own tenant's events
through an ``EventReader``.

The query parameters become an ``schemas.read_api.EventQuery`` (every bad or unknown parameter answered 400,
named); the reader (the sink's read model over the raw archive, given to ``build_app``) answers the page: the
current version of each event, in the Timeback API's shape (``schemas.timeback_read``) with the event as it was
sent beside it. The answer's ``next`` is the link to the next page (the same filters and the page's cursor), null
on the last page; ``pagination`` is the Timeback API's (``total``, ``totalPages``, ``currentPage``, ``limit``).
One event is a page of one, filtered by its id: another tenant's event and an unknown id are the same 404. The
gateway knows no SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from gateway.errors import InvalidQueryError, NotFoundError
from gateway.handlers.common import ask_reader, authorize_read
from gateway.keys import READER
from gateway.responses import json_response
from schemas.coerce import time_to_ms
from schemas.errors import FieldProblem
from schemas.event_identity import canonical_id
from schemas.read_api import (
    DEFAULT_PAGE_SIZE,
    MAX_OFFSET,
    MAX_PAGE_SIZE,
    EventPage,
    EventQuery,
    EventReader,
    decode_cursor,
)

PARAMETERS = ("limit", "offset", "cursor", "sensor", "actorId", "actorEmail", "eventType", "profile", "startDate",
              "endDate")
FILTERS = {"sensor": "sensor", "actorId": "actor_id", "actorEmail": "actor_email", "eventType": "event_type",
           "profile": "profile"}
MAX_FILTER_LENGTH = 2048
UNKNOWN_EVENT = "no such event for this client's tenant"
_INTEGER = re.compile(r"-?[0-9]{1,12}")


def _integer(query: Mapping[str, str], name: str, default: int, low: int, high: int,
             problems: list[FieldProblem]) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        problems.append(FieldProblem(name, f"{name} must be an integer"))
        return default
    value = int(raw)
    if not low <= value <= high:
        problems.append(FieldProblem(name, f"{name} must be between {low} and {high}"))
    return value


def _time(query: Mapping[str, str], name: str, problems: list[FieldProblem]) -> int | None:
    if name not in query:
        return None
    moment = time_to_ms(query[name])  # present but empty is an error too, not "no filter"
    if moment is None:
        problems.append(FieldProblem(name, f"{name} must be an ISO 8601 date-time"))
    return moment


def parse_event_query(tenant: str, query: Mapping[str, str]) -> EventQuery:
    """The ``EventQuery`` of one request; raises ``InvalidQueryError`` naming every bad parameter."""
    problems = [FieldProblem(name, f"unknown query parameter {name[:40]!r}; accepted: {', '.join(PARAMETERS)}")
                for name in dict.fromkeys(query) if name not in PARAMETERS]
    getall = getattr(query, "getall", None)
    if getall is not None:
        problems += [FieldProblem(name, f"{name} is given more than once")
                     for name in PARAMETERS if len(getall(name, ())) > 1]
    limit = _integer(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE, problems)
    offset = _integer(query, "offset", 0, 0, MAX_OFFSET, problems)
    start_ms, end_ms = _time(query, "startDate", problems), _time(query, "endDate", problems)
    filters = {}
    for name, field in FILTERS.items():
        value = query.get(name, "")
        if len(value) > MAX_FILTER_LENGTH or "\x00" in value:
            problems.append(FieldProblem(name, f"{name} must be at most {MAX_FILTER_LENGTH} characters, without NUL"))
        filters[field] = value
    after: tuple[int | None, str] = (None, "")
    if "cursor" in query:
        try:
            after = decode_cursor(query["cursor"])
        except ValueError:
            problems.append(FieldProblem("cursor", "cursor must be the one of a previous page's next link, as given"))
        if query.get("offset", "0") != "0":
            problems.append(FieldProblem("offset", "offset cannot be combined with cursor (the cursor is a position)"))
    if problems:
        raise InvalidQueryError("invalid query parameters", problems=problems)
    return EventQuery(tenant=tenant, limit=limit, offset=offset, start_ms=start_ms, end_ms=end_ms,
                      after_time_ms=after[0], after_event_id=after[1], **filters)


def next_link(path: str, query: Mapping[str, str], page: EventPage) -> str | None:
    """The link to the page after ``page``: the same parameters, the page's cursor instead of offset/cursor."""
    if page.next_cursor is None:
        return None
    kept = [(name, value) for name, value in query.items() if name not in ("cursor", "offset")]
    return f"{path}?{urlencode([*kept, ('cursor', page.next_cursor)])}"


def _reader(request: web.Request) -> EventReader:
    reader: EventReader | None = request.config_dict.get(READER)
    if reader is None:
        raise NotFoundError("the read API is not configured on this gateway")
    return reader


async def get_events(request: web.Request) -> web.Response:
    caller = authorize_read(request)
    reader = _reader(request)
    query = parse_event_query(caller.tenant, request.query)
    page = await ask_reader(request, "event", reader.read_events(query))
    body = page.to_json()
    for internal in ("next_cursor", "total", "position"):
        del body[internal]
    return json_response({**body, "next": next_link(request.path, request.query, page),
                          "pagination": page.pagination()})


async def get_event(request: web.Request) -> web.Response:
    """``GET /caliper/events/{eventId}``: the current version of one event of the caller's tenant, by the Caliper
    id it was sent with (``urn:uuid:`` ids in any case), as ``{"event": ...}`` (one item of a page); 404 when the
    tenant has no such event."""
    caller = authorize_read(request)
    reader = _reader(request)
    event_id = request.match_info["eventId"]
    if len(event_id) > MAX_FILTER_LENGTH or "\x00" in event_id:
        raise InvalidQueryError("invalid event id", problems=[FieldProblem(
            "eventId", f"eventId must be at most {MAX_FILTER_LENGTH} characters, without NUL")])
    query = EventQuery(tenant=caller.tenant, limit=1, event_id=canonical_id(event_id))
    page = await ask_reader(request, "event", reader.read_events(query))
    if not page.events:
        raise NotFoundError(UNKNOWN_EVENT)
    return json_response({"event": page.events[0]})
