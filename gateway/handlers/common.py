"""What the ingest handlers share: the token, the body (within the request's and the gateway's bounds), the
per-client event budget, the size of each event as published, and publishing."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web

from gateway.body import Reservation, read_body
from gateway.errors import (
    InvalidPayloadError,
    MalformedJsonError,
    PayloadTooLargeError,
    RateLimitedError,
    ReadsBusyError,
    ReadsUnavailableError,
    UnsupportedMediaTypeError,
)
from gateway.keys import (
    BODY,
    BODY_BUDGET,
    CALLER,
    JOB_IDS,
    LIMITER,
    METRICS,
    PUBLISHER,
    READ_LIMITER,
    SETTINGS,
    TOKENS,
    shared,
)
from gateway.publisher import EncodedEvent
from gateway.settings import INGEST_SCOPE, READ_SCOPE
from gateway.tokens import Caller
from schemas.errors import FieldProblem
from schemas.jobs import JobRecord
from schemas.limits import ValidationLimits, depth_problem
from schemas.read_api import ReadBusyError, ReadUnavailableError
from schemas.reasons import ReasonCode

MAX_PROBLEMS = 100
T = TypeVar("T")
log = logging.getLogger(__name__)


def authorize(request: web.Request, scope: str) -> Caller:
    """The caller of the request's bearer token, verified before any byte of the body is read or decoded: a
    refused request never holds body memory, and its unread body is not drained (``gateway.server``)."""
    caller = shared(request)[TOKENS].verify(request.headers.get("Authorization"), scope)
    request[CALLER] = caller
    return caller


def authorize_read(request: web.Request) -> Caller:
    """The caller of a read (its token, with the read scope), charged one read of its client's read rate: 429
    with ``Retry-After`` past it (a client's reads cannot crowd out the others' or the loading of events)."""
    caller = authorize(request, READ_SCOPE)
    wait = shared(request)[READ_LIMITER].take(caller.client_id)
    if wait is not None:
        raise RateLimitedError(f"read rate limit of client {caller.client_id} exceeded", retry_after=wait)
    return caller


async def ask_reader(request: web.Request, what: str, read: Awaitable[T]) -> T:
    """The read side's answer: 429 when it serves as many reads of this tenant (or in all) as it may, 503 when it
    cannot answer (both with ``Retry-After``)."""
    try:
        return await read
    except ReadBusyError as error:
        raise ReadsBusyError(f"too many reads of this tenant at once; retry in {error.retry_after} s",
                             retry_after=error.retry_after) from error
    except ReadUnavailableError as error:
        log.warning("the read side cannot answer: %s", error)
        raise ReadsUnavailableError(f"the {what} store cannot answer now; retry later",
                                    retry_after=shared(request)[SETTINGS].retry_after_seconds) from error


@contextlib.asynccontextmanager
async def ingest_body(request: web.Request, count_of: Callable[[Any], int], *,
                      charge: bool = True) -> AsyncIterator[tuple[Caller, Any]]:
    """The caller of an ingest request (its token, with the ingest scope) and its body as JSON, held against the
    gateway's memory budget for bodies until the block ends; the events and entities it carries (``count_of``)
    are checked against the request's limit and (``charge``) charged to the client's rate."""
    caller = authorize(request, INGEST_SCOPE)
    async with shared(request)[BODY_BUDGET].hold(caller, request.remote) as reservation:
        payload = await read_json(request, reservation)
        check_event_count(request, caller, count_of(payload), charge=charge)
        yield caller, payload


async def read_json(request: web.Request, reservation: Reservation) -> Any:
    """The body parsed as JSON: Content-Type, encoding, size, syntax and nesting depth (``max_json_depth``, whatever
    the endpoint and its validator; the envelope itself is level 1) checked."""
    if request.content_type != "application/json":
        raise UnsupportedMediaTypeError("Content-Type must be application/json")
    settings = shared(request)[SETTINGS]
    body = await read_body(request, reservation, settings.max_body_bytes, settings)
    request[BODY] = body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedJsonError(f"malformed JSON: {error}",
                                 problems=[FieldProblem(path="", message=f"malformed JSON: {error}",
                                                        code=ReasonCode.MALFORMED_JSON)]) from error
    problem = depth_problem(payload, _depth_limit(settings.max_json_depth))  # before anything walks it recursively
    if problem is not None:
        raise InvalidPayloadError(problem.message, problems=[problem])
    return payload


@functools.cache
def _depth_limit(max_depth: int) -> ValidationLimits:
    return ValidationLimits(max_depth=max_depth)


def check_event_count(request: web.Request, caller: Caller, count: int, *, charge: bool) -> None:
    """Limits on how many events (and entities) one request may carry, then (``charge``) the client's rate: 413
    when the request can never pass, 429 (with ``Retry-After``) when it can later."""
    settings = shared(request)[SETTINGS]
    if count > settings.max_events_per_envelope:
        raise PayloadTooLargeError(
            f"the envelope holds {count} events and entities; at most {settings.max_events_per_envelope} per request",
            problems=[FieldProblem("data", f"{count} items; at most {settings.max_events_per_envelope} per request")])
    limiter = shared(request)[LIMITER]
    capacity = int(limiter.capacity(caller.rate_limit_per_second))
    if count > capacity:
        raise PayloadTooLargeError(
            f"the envelope holds {count} events and entities; client {caller.client_id} may send at most "
            f"{capacity} at once (its rate limit); split it", problems=[FieldProblem(
                "data", f"{count} items; this client may send at most {capacity} at once")])
    if charge:
        wait = limiter.acquire(caller.client_id, count, caller.rate_limit_per_second)
        if wait is not None:
            raise RateLimitedError(f"rate limit of client {caller.client_id} exceeded", retry_after=wait)


def check_event_sizes(request: web.Request, messages: Sequence[EncodedEvent],
                      path_of: Callable[[int], str]) -> None:
    """413 naming every event (``path_of(index)``) larger, as published, than Kafka takes."""
    limit = shared(request)[SETTINGS].max_event_bytes
    problems = [FieldProblem(path_of(index), f"this event is {message.size} bytes once encoded; the limit of one "
                                             f"event is {limit} bytes (a Kafka message)")
                for index, message in enumerate(messages) if message.size > limit]
    if problems:
        raise PayloadTooLargeError(f"{len(problems)} event(s) larger than {limit} bytes; nothing was accepted",
                                   problems=problems[:MAX_PROBLEMS])


def job_location(job_id: str) -> str:
    """The job's URL (the ``Location`` of an accepted request): ``GET`` it, or its ``/status``, for the status."""
    return f"/jobs/{job_id}"


def new_job(request: web.Request, caller: Caller) -> tuple[int, str]:
    """When the request is received (epoch milliseconds) and the id of the job it becomes if it is accepted
    (``schemas.jobs``: bound to the caller's tenant)."""
    received_ms = int(time.time() * 1000)
    return received_ms, shared(request)[JOB_IDS].issue(caller.tenant, received_ms)


async def publish(request: web.Request, messages: list[EncodedEvent], jobs: Sequence[JobRecord] = ()) -> None:
    """Return once Kafka acknowledged every event and the job's records, in one transaction (else
    ``KafkaUnavailableError``, answered 503)."""
    metrics = shared(request)[METRICS]
    started = time.perf_counter()
    await shared(request)[PUBLISHER].publish(messages, jobs)
    metrics.publish_latency.observe(time.perf_counter() - started)
    if len(messages) == 1:
        metrics.events_accepted(messages[0].source.value, 1)
    else:
        for source, count in Counter(item.source.value for item in messages).items():
            metrics.events_accepted(source, count)
