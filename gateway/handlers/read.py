"""``GET /caliper/events``: a sender reads back its own tenant's events through an ``EventReader``.

The query parameters become an ``schemas.read_api.EventQuery`` (every bad or unknown parameter answered 400,
named); the reader (the sink's read model, given to ``build_app``) answers the page. The gateway knows no SQL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from aiohttp import web

from gateway.errors import InvalidQueryError, NotFoundError, ReadsUnavailableError
from gateway.handlers.common import authorize
from gateway.keys import READER, SETTINGS
from gateway.responses import json_response
from gateway.settings import READ_SCOPE
from schemas.coerce import time_to_ms
from schemas.errors import FieldProblem
from schemas.read_api import DEFAULT_PAGE_SIZE, MAX_OFFSET, MAX_PAGE_SIZE, EventQuery, ReadUnavailableError

log = logging.getLogger(__name__)
PARAMETERS = ("limit", "offset", "sensor", "actorId", "startDate", "endDate")
_INTEGER = re.compile(r"-?[0-9]{1,12}")


def _integer(query: Mapping[str, str], name: str, default: int, low: int, high: int,
             problems: list[FieldProblem]) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        problems.append(FieldProblem(name, f"{name} must be an integer, got {raw[:40]!r}"))
        return default
    value = int(raw)
    if not low <= value <= high:
        problems.append(FieldProblem(name, f"{name} must be between {low} and {high}, got {value}"))
    return value


def _time(query: Mapping[str, str], name: str, problems: list[FieldProblem]) -> int | None:
    if name not in query:
        return None
    moment = time_to_ms(query[name])  # present but empty is an error too, not "no filter"
    if moment is None:
        problems.append(FieldProblem(name, f"{name} must be an ISO 8601 date-time, got {query[name][:40]!r}"))
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
    if problems:
        raise InvalidQueryError("invalid query parameters", problems=problems)
    return EventQuery(tenant=tenant, limit=limit, offset=offset, sensor=query.get("sensor", ""),
                      actor_id=query.get("actorId", ""), start_ms=start_ms, end_ms=end_ms)


async def get_events(request: web.Request) -> web.Response:
    caller = authorize(request, READ_SCOPE)
    reader = request.config_dict.get(READER)
    if reader is None:
        raise NotFoundError("the read API is not configured on this gateway")
    query = parse_event_query(caller.tenant, request.query)
    try:
        page = await reader.read_events(query)
    except ReadUnavailableError as error:
        log.warning("the read API cannot answer: %s", error)
        raise ReadsUnavailableError("the event store cannot answer now; retry later",
                                    retry_after=request.config_dict[SETTINGS].retry_after_seconds) from error
    return json_response(page.to_json())
