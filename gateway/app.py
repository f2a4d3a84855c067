"""The gateway's aiohttp application: the only door of the pipeline.

Resources live on the app under ``web.AppKey``s and are opened/closed by ``cleanup_ctx``; one error middleware
turns every ``GatewayError`` into the JSON of the endpoint's own contract (Timeback's ``{status, message,
errors}`` or the hub's ``{"message": [...]}``). An event is acknowledged only after Kafka acknowledged it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.clients import ClientRegistry
from gateway.errors import (
    GatewayError,
    InvalidPayloadError,
    MalformedJsonError,
    PayloadTooLargeError,
    RateLimitedError,
    UnsupportedDataVersionError,
    UnsupportedMediaTypeError,
)
from gateway.event_loop import new_event_loop
from gateway.ingest import envelope_events, hub_event
from gateway.metrics import GatewayMetrics
from gateway.openapi import openapi_document
from gateway.publisher import EventPublisher
from gateway.ratelimit import RateLimiter
from gateway.read_api import read_events
from gateway.settings import INGEST_SCOPE, READ_SCOPE, GatewaySettings
from gateway.tokens import Caller, TokenIssuer
from schemas.caliper import CALIPER_CONTEXT_V1P2, validate_envelope
from schemas.errors import FieldProblem
from schemas.hub import validate_hub_event
from schemas.kafka import KafkaSettings
from sinks.query_client import SqlClient

SETTINGS = web.AppKey("settings", GatewaySettings)
PUBLISHER = web.AppKey("publisher", EventPublisher)
REGISTRY = web.AppKey("registry", ClientRegistry)
TOKENS = web.AppKey("tokens", TokenIssuer)
LIMITER = web.AppKey("limiter", RateLimiter)
METRICS = web.AppKey("metrics", GatewayMetrics)
READER = web.AppKey("reader", SqlClient)
CALLER = web.RequestKey("caller", Caller)
BODY = web.RequestKey("body", bytes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNSUPPORTED_VERSION_PREFIX = "unsupported dataVersion"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _is_hub(request: web.Request) -> bool:
    return request.path.startswith("/hub/")


def _error_body(request: web.Request, error: GatewayError) -> dict[str, Any]:
    if _is_hub(request):
        lines = [_hub_line(p) for p in error.problems] or [error.message]
        return {"message": lines}
    errors = [{"path": p.path, "message": p.message} for p in error.problems] or None
    return {"status": "error", "message": error.message, "errors": errors}


def _hub_line(problem: FieldProblem) -> str:
    """One line of the hub's 400 answer: "Field <path> not informed", or a message that names the field."""
    if problem.missing:
        return f"Field {problem.path} not informed"
    if problem.path and problem.path in problem.message:
        return problem.message
    return f"Field {problem.path}: {problem.message}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        response = _answer_error(request, PayloadTooLargeError(
            f"body larger than {request.app[SETTINGS].max_body_bytes} bytes"))
    except GatewayError as error:
        response = _answer_error(request, error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = _answer_error(request, _http_error(error))
    metrics.request_done(endpoint, response.status, time.perf_counter() - started)
    return response


def _http_error(error: web.HTTPException) -> GatewayError:
    wrapped = GatewayError(error.reason)
    wrapped.status = error.status
    wrapped.reason = error.reason.lower().replace(" ", "_")
    return wrapped


def _answer_error(request: web.Request, error: GatewayError) -> web.Response:
    request.app[METRICS].rejects.labels(error.reason).inc()
    if request.method == "POST" and isinstance(
            error, InvalidPayloadError | MalformedJsonError | UnsupportedDataVersionError):  # rejected events
        caller = request.get(CALLER)
        request.app[PUBLISHER].record_rejection(
            tenant=caller.tenant if caller else "", client_id=caller.client_id if caller else "",
            endpoint=request.path, status=error.status,
            problems=[{"path": p.path, "message": p.message} for p in error.problems],
            body=request.get(BODY, b""))
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    if error.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="caliper"'}
    return _json(_error_body(request, error), status=error.status, headers=headers)


async def _authorized_json(request: web.Request) -> tuple[Caller, Any]:
    """Auth, content type, size and JSON checks shared by the ingest endpoints."""
    caller = request.app[TOKENS].verify(request.headers.get("Authorization"), INGEST_SCOPE)
    request[CALLER] = caller
    if request.content_type != "application/json":
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, not {request.content_type!r}")
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"body of {request.content_length} bytes is larger than {limit} bytes")
    body = await request.read()
    request[BODY] = body
    try:
        return caller, orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedJsonError(f"malformed JSON: {error}",
                                 problems=[FieldProblem(path="", message=f"malformed JSON: {error}")]) from error


def _check_rate(request: web.Request, caller: Caller, events: int) -> None:
    wait = request.app[LIMITER].acquire(caller.client_id, events, caller.rate_limit_per_second)
    if wait is not None:
        raise RateLimitedError(f"rate limit of client {caller.client_id} exceeded", retry_after=wait)


async def _caliper_envelope(request: web.Request, *, publish: bool) -> web.Response:
    caller, payload = await _authorized_json(request)
    problems = [FieldProblem(path=e.path, message=e.message) for e in validate_envelope(payload)]
    if any(p.path == "dataVersion" and p.message.startswith(UNSUPPORTED_VERSION_PREFIX) for p in problems):
        raise UnsupportedDataVersionError("unsupported dataVersion", problems=problems)
    if problems:
        raise InvalidPayloadError(f"{len(problems)} problem(s) in the envelope; nothing was accepted",
                                  problems=problems)
    count = len(payload["data"])
    if not publish:
        return _json({"status": "success", "message": f"{count} events are valid", "errors": None})
    _check_rate(request, caller, count)
    received_ms = int(time.time() * 1000)
    outgoing = envelope_events(payload, caller, received_ms)
    await _publish(request, outgoing)
    return _json({"status": "success", "message": f"{count} events accepted", "errors": None})


async def _publish(request: web.Request, outgoing: list[Any]) -> None:
    started = time.perf_counter()
    await request.app[PUBLISHER].publish(outgoing)
    request.app[METRICS].publish_latency.observe(time.perf_counter() - started)
    for source, count in Counter(item.source.value for item in outgoing).items():
        request.app[METRICS].events_accepted(source, count)


async def post_caliper_event(request: web.Request) -> web.Response:
    return await _caliper_envelope(request, publish=True)


async def post_caliper_validate(request: web.Request) -> web.Response:
    return await _caliper_envelope(request, publish=False)


async def post_hub_event(request: web.Request) -> web.Response:
    caller, payload = await _authorized_json(request)
    event, problems = validate_hub_event(payload)
    if problems or event is None:
        raise InvalidPayloadError("invalid hub event", problems=problems)
    _check_rate(request, caller, 1)
    await _publish(request, [hub_event(payload, caller, int(time.time() * 1000))])
    return _json({"@context": CALIPER_CONTEXT_V1P2, "id": event.id})


async def post_token(request: web.Request) -> web.Response:
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _json({"error": "unsupported_grant_type"}, status=400)
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if not client_id and request.headers.get("Authorization", "").lower().startswith("basic "):
        import base64

        decoded = base64.b64decode(request.headers["Authorization"][6:]).decode(errors="replace")
        client_id, _, secret = decoded.partition(":")
    client = request.app[REGISTRY].authenticate(client_id, secret)
    if client is None:
        return _json({"error": "invalid_client"}, status=401)
    requested = set(str(form["scope"]).split()) if form.get("scope") else None
    token, granted = request.app[TOKENS].issue(client, requested)
    return _json({"access_token": token, "token_type": "Bearer", "expires_in": request.app[TOKENS].ttl_seconds,
                  "scope": " ".join(granted)})


async def get_events(request: web.Request) -> web.Response:
    caller = request.app[TOKENS].verify(request.headers.get("Authorization"), READ_SCOPE)
    request[CALLER] = caller
    reader = request.app.get(READER)
    if reader is None:
        raise web.HTTPNotFound(reason="the read API is not configured on this gateway")
    return await read_events(reader, reader.clickhouse.database, caller.tenant, request.query,
                             request.app[SETTINGS].retry_after_seconds)


async def get_endpoint_config(request: web.Request) -> web.Response:
    return _json({
        "caliper_maximum_payload_size": request.app[SETTINGS].max_body_bytes,
        "caliper_supported_versions": [CALIPER_CONTEXT_V1P2],
        "caliper_supported_extensions": {"endpoint_name": "caliper-pipeline gateway", "endpoint_version": "0.1.0",
                                         "profiles": ["TimebackProfile", "GradingProfile", "ReadingProfile"]},
    })


async def get_health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def get_ready(request: web.Request) -> web.Response:
    if await request.app[PUBLISHER].is_ready():
        return _json({"status": "ready", "kafka": "reachable"})
    return _json({"status": "not ready", "kafka": "unreachable"}, status=503)


async def get_metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.app[METRICS].registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def get_openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(request.app[SETTINGS]))


def build_app(settings: GatewaySettings, kafka: KafkaSettings, *, publisher: EventPublisher | None = None,
              reader: SqlClient | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    registry = ClientRegistry(settings.clients_file)
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app[TOKENS] = TokenIssuer(settings.jwt_secret.get_secret_value(), settings.jwt_issuer,
                              settings.token_ttl_seconds, registry)
    app[LIMITER] = RateLimiter(settings.default_rate_limit_per_second)
    app[METRICS] = GatewayMetrics()
    app[PUBLISHER] = publisher or EventPublisher(kafka, settings)
    if reader is not None:
        app[READER] = reader

    async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
        await app[PUBLISHER].start()
        yield
        await app[PUBLISHER].stop()

    app.cleanup_ctx.append(kafka_producer)
    app.router.add_post("/oauth2/token", post_token)
    app.router.add_post("/caliper/event", post_caliper_event)
    app.router.add_post("/caliper/event/validate", post_caliper_validate)
    app.router.add_get("/caliper/event", get_endpoint_config)
    app.router.add_get("/caliper/events", get_events)
    app.router.add_post("/hub/v1/events", post_hub_event)
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/readyz", get_ready)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/openapi.json", get_openapi)
    return app


def run_gateway(settings: GatewaySettings, kafka: KafkaSettings, reader: SqlClient | None = None) -> None:
    web.run_app(build_app(settings, kafka, reader=reader), loop=new_event_loop(), host=settings.host,
                port=settings.port, access_log=None,
                print=None, handle_signals=True)


