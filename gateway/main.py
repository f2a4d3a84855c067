"""Building and running the gateway's aiohttp application: the only door of the pipeline.

Resources live on the root app under ``gateway.keys`` and are opened/closed by ``cleanup_ctx``; the routes
(``gateway.routes``) mount the hub and the token endpoint as sub-apps, each with its own error format. An event
is acknowledged only after Kafka acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.body import BodyBudget
from gateway.clients import ClientRegistry
from gateway.event_loop import new_event_loop
from gateway.keys import (
    BODY_BUDGET,
    JOB_IDS,
    LIMITER,
    METRICS,
    PUBLISHER,
    READ_LIMITER,
    READER,
    REGISTRY,
    SETTINGS,
    TOKEN_GUARD,
    TOKENS,
)
from gateway.metrics import GatewayMetrics, TransactionCollector
from gateway.middlewares import error_middleware, metrics_middleware
from gateway.publisher import EventPublisher
from gateway.ratelimit import RateLimiter, TokenBuckets
from gateway.responses import caliper_error_body
from gateway.routes import BEARER_CHALLENGE, setup_routes
from gateway.server import handler_args, serve
from gateway.settings import GatewaySettings
from gateway.token_guard import TokenGuard
from gateway.tokens import TokenIssuer
from schemas.jobs import JobIds
from schemas.kafka import KafkaSettings
from schemas.read_api import EventReader


def build_app(settings: GatewaySettings, kafka: KafkaSettings, *, publisher: EventPublisher | None = None,
              reader: EventReader | None = None) -> web.Application:
    """The gateway; ``publisher`` replaces the Kafka producer (tests), ``reader`` serves ``GET /caliper/events``
    (none: that endpoint answers 404). Raises ``DevelopmentSecretError`` for a signing secret anyone may know."""
    settings.check_signing_secrets()
    app = web.Application(middlewares=[metrics_middleware, error_middleware(caliper_error_body, BEARER_CHALLENGE)],
                          client_max_size=settings.max_body_bytes, handler_args=handler_args(settings))
    registry = ClientRegistry(settings.clients_file)
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app[TOKENS] = TokenIssuer(settings.verification_secrets, settings.jwt_issuer, settings.token_ttl_seconds,
                              registry, max_ttl_seconds=settings.max_token_ttl_seconds)
    app[TOKEN_GUARD] = TokenGuard(settings)
    app[LIMITER] = RateLimiter(settings.default_rate_limit_per_second, settings.rate_limit_burst_seconds)
    app[READ_LIMITER] = TokenBuckets(settings.read_requests_per_second, settings.read_requests_burst)
    app[BODY_BUDGET] = BodyBudget(settings.max_inflight_body_bytes, settings.retry_after_seconds,
                                  settings.max_inflight_body_share)
    app[METRICS] = GatewayMetrics()
    app[JOB_IDS] = JobIds(settings.verification_secrets)
    app[PUBLISHER] = publisher or EventPublisher(kafka, settings)
    app[METRICS].registry.register(TransactionCollector(lambda: app[PUBLISHER].transaction_stats))
    if reader is not None:
        app[READER] = reader

    async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
        await app[PUBLISHER].start()
        yield
        await app[PUBLISHER].stop()

    async def close_resources(app: web.Application) -> None:
        app[TOKEN_GUARD].close()
        if READER in app:
            await app[READER].close()

    app.cleanup_ctx.append(kafka_producer)
    app.on_cleanup.append(close_resources)
    setup_routes(app)
    return app


# Python's cyclic garbage collector, as the gateway allocates: a 100-event envelope parses into ~2,000 containers,
# so the default first-generation threshold (700) ran a collection several times per request, and every few
# seconds a full collection walked the whole heap (aiohttp, aiokafka, pydantic: ~100,000 objects) for ~50 ms, a
# pause every request in flight waits out. Measured under bench gateway (docs/benchmarks.md, "Gateway
# throughput"): 7.6% of the gateway's CPU in collections, full ones of 40-60 ms; after ``freeze`` at start-up
# (the start-up objects leave the collector's view for good) and a threshold of 20,000: 0.5%, full ones < 1 ms.
# Request data has no reference cycles; what does is still collected, later.
GC_FIRST_GENERATION_THRESHOLD = 20_000


async def tune_garbage_collector(app: web.Application) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
    gc.callbacks.append(app[METRICS].gc_callback)  # gateway_gc_pause_seconds


async def untune_garbage_collector(app: web.Application) -> None:
    if app[METRICS].gc_callback in gc.callbacks:
        gc.callbacks.remove(app[METRICS].gc_callback)


def run_gateway(settings: GatewaySettings, kafka: KafkaSettings, reader: EventReader | None = None) -> None:
    app = build_app(settings, kafka, reader=reader)
    app.on_startup.append(tune_garbage_collector)  # after the Kafka producers started (cleanup_ctx runs first)
    app.on_cleanup.append(untune_garbage_collector)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)

    async def serve_until_stopped() -> None:
        async with serve(app, settings.host, settings.port, handle_signals=True):
            await asyncio.Event().wait()  # until SIGINT/SIGTERM (GracefulExit), then the app's cleanup

    main = loop.create_task(serve_until_stopped())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):  # raised out of the loop by the signal handler
        main.cancel()  # leaves serve(): the runner's cleanup stops the Kafka producers
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
