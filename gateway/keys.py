"""The typed keys of the gateway's shared state: resources on the app (``web.AppKey``), per-request facts
(``web.RequestKey``). Every module reads the app's resources through these keys, never through strings."""

from __future__ import annotations

from aiohttp import web

from gateway.body import BodyBudget
from gateway.clients import ClientRegistry
from gateway.metrics import GatewayMetrics
from gateway.publisher import EventPublisher
from gateway.ratelimit import RateLimiter, TokenBuckets
from gateway.settings import GatewaySettings
from gateway.token_guard import TokenGuard
from gateway.tokens import Caller, TokenIssuer
from schemas.jobs import JobIds
from schemas.read_api import EventReader

SETTINGS = web.AppKey("settings", GatewaySettings)
PUBLISHER = web.AppKey("publisher", EventPublisher)
REGISTRY = web.AppKey("registry", ClientRegistry)
TOKENS = web.AppKey("tokens", TokenIssuer)
LIMITER = web.AppKey("limiter", RateLimiter)
READ_LIMITER = web.AppKey("read_limiter", TokenBuckets)  # read requests per client
METRICS = web.AppKey("metrics", GatewayMetrics)
READER = web.AppKey("reader", EventReader)
TOKEN_GUARD = web.AppKey("token_guard", TokenGuard)
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
JOB_IDS = web.AppKey("job_ids", JobIds)

CALLER = web.RequestKey("caller", Caller)  # who called, once the token is verified
BODY = web.RequestKey("body", bytearray)  # the request body, once read (kept for the rejected-requests topic)
DRY_RUN = web.RequestKey("dry_run", bool)  # a check only (``/caliper/event/validate``): its refusals are not recorded


def shared(request: web.Request) -> web.Application:
    """The app that holds the resources above: the root app (sub-apps hold none of them). The same lookups as
    ``request.config_dict``, which builds a chain of the request's apps on every access (~10 per ingest request,
    ~3 % of the gateway's CPU under ``bench gateway``)."""
    return request.match_info.apps[0]
