"""The gateway's URLs: the root app (Caliper endpoints, service endpoints) and two sub-apps with answer formats
of their own, the hub (``/hub/``) and the token endpoint (``/oauth2/``). (Bodies are limited by the root app's
``client_max_size``: aiohttp builds every request, a sub-app's too, with the root app's.)"""

from __future__ import annotations

from aiohttp import web

from gateway.handlers.caliper import get_endpoint_config, post_caliper_event, post_caliper_validate
from gateway.handlers.hub import post_hub_event
from gateway.handlers.jobs import get_job_status
from gateway.handlers.read import get_event, get_events
from gateway.handlers.service import get_health, get_metrics, get_openapi, get_ready
from gateway.handlers.token import post_token
from gateway.middlewares import error_middleware
from gateway.responses import hub_error_body, oauth_error_body

BEARER_CHALLENGE = 'Bearer realm="caliper"'
BASIC_CHALLENGE = 'Basic realm="caliper"'


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/caliper/event", post_caliper_event)
    app.router.add_post("/caliper/event/validate", post_caliper_validate)
    app.router.add_get("/caliper/event", get_endpoint_config)
    app.router.add_get("/caliper/events", get_events)
    app.router.add_get("/caliper/events/{eventId:.+}", get_event)  # a Caliper id may hold slashes
    app.router.add_get("/jobs/{jobId}", get_job_status)
    app.router.add_get("/jobs/{jobId}/status", get_job_status)
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/readyz", get_ready)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/openapi.json", get_openapi)
    app.add_subapp("/hub/", hub_app())
    app.add_subapp("/oauth2/", oauth_app())


def hub_app() -> web.Application:
    """The hub's door: its errors are ``{"message": [...]}``, one line per problem."""
    hub = web.Application(middlewares=[error_middleware(hub_error_body, BEARER_CHALLENGE)])
    hub.router.add_post("/v1/events", post_hub_event)
    return hub


def oauth_app() -> web.Application:
    """The token endpoint: its errors follow RFC 6749 section 5.2."""
    oauth = web.Application(middlewares=[error_middleware(oauth_error_body, BASIC_CHALLENGE)])
    oauth.router.add_post("/token", post_token)
    return oauth
