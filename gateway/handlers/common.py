"""What every ingest handler does first: verify the token, then read the body as JSON."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import MalformedJsonError, PayloadTooLargeError, RateLimitedError, UnsupportedMediaTypeError
from gateway.keys import BODY, CALLER, LIMITER, METRICS, PUBLISHER, SETTINGS, TOKENS
from gateway.publisher import OutgoingEvent
from gateway.tokens import Caller
from schemas.errors import FieldProblem


def authorize(request: web.Request, scope: str) -> Caller:
    caller = request.config_dict[TOKENS].verify(request.headers.get("Authorization"), scope)
    request[CALLER] = caller
    return caller


async def read_json(request: web.Request) -> Any:
    """The body parsed as JSON (Content-Type, size and syntax checked)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, not {request.content_type!r}")
    limit = request.config_dict[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"body of {request.content_length} bytes is larger than {limit} bytes")
    body = await request.read()
    request[BODY] = body
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedJsonError(f"malformed JSON: {error}",
                                 problems=[FieldProblem(path="", message=f"malformed JSON: {error}")]) from error


def check_rate(request: web.Request, caller: Caller, events: int) -> None:
    wait = request.config_dict[LIMITER].acquire(caller.client_id, events, caller.rate_limit_per_second)
    if wait is not None:
        raise RateLimitedError(f"rate limit of client {caller.client_id} exceeded", retry_after=wait)


async def publish(request: web.Request, outgoing: list[OutgoingEvent]) -> None:
    """Return once Kafka acknowledged every event (else ``KafkaUnavailableError``, answered 503)."""
    metrics = request.config_dict[METRICS]
    started = time.perf_counter()
    await request.config_dict[PUBLISHER].publish(outgoing)
    metrics.publish_latency.observe(time.perf_counter() - started)
    for source, count in Counter(item.source.value for item in outgoing).items():
        metrics.events_accepted(source, count)
