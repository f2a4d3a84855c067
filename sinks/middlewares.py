"""Who may call the sink's routes: its credentials (the operator's tokens, the school credentials of
``sinks.analysts``), checked per route by one middleware that also answers every error as JSON.

Credentials are ``Authorization: Bearer <token>``: the operator's analyst token (every tenant), a school credential
``<id>:<secret>`` (its tenants), the reader token (the gateway's: the read API answers events as sent, so no
analyst credential reaches it) and the admin token; a route whose tokens are all unset refuses every caller.
ClickHouse's HTTP interface takes a user name and password instead (``clickhouse_user``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sinks.analysts import (
    ADMINISTRATOR,
    ANALYST_ID,
    OPERATOR,
    OPERATOR_USERS,
    Analyst,
    AnalystRegistry,
    authenticate_bearer,
)
from sinks.process import SINK_PROCESS
from sinks.settings import SinkSettings

log = logging.getLogger("sinks.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# roles of a route: who may call it (ADMIN may call every route)
ANALYST, SCHOOL, READER, ADMIN = "analyst", "school", "reader", "admin"
ACCEPTED = {SCHOOL: {ADMIN, ANALYST, SCHOOL}, ANALYST: {ADMIN, ANALYST}, READER: {ADMIN, READER}, ADMIN: {ADMIN}}


REQUIRED_ROLE = web.AppKey("required_role", dict)
ANALYSTS = web.AppKey("analysts", AnalystRegistry)
# school credentials checked at once (one scrypt each, in the default executor's threads): a flood of wrong secrets
# waits on the event loop instead of taking the threads /readyz's ping and the erasure need
SECRET_CHECKS = web.AppKey("secret_checks", asyncio.Semaphore)
MAX_SECRET_CHECKS = 2
PRINCIPAL = web.RequestKey("analyst", Analyst)  # who runs /sql (the admin, the operator's analyst, a school's)


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def operator_role(token: str, settings: SinkSettings) -> str | None:
    """The role of one of the operator's tokens (admin, reader, analyst), else None."""
    offered = token.encode("utf-8", "surrogateescape")
    for role, configured in ((ADMIN, settings.admin_token), (READER, settings.reader_token),
                             (ANALYST, settings.analyst_token)):
        expected = configured.get_secret_value().encode()
        if expected and hmac.compare_digest(expected, offered):
            return role
    return None


async def _offered(request: web.Request) -> tuple[str, Analyst | None] | None:
    """The caller's role and, for an analyst, who it is (a school credential costs a scrypt, in a thread, unless
    verified before); None without a valid credential."""
    token = bearer_token(request)
    if token is None:
        return None
    settings = request.app[SINK_PROCESS].settings
    role = operator_role(token, settings)
    if role is not None:
        return role, {ADMIN: ADMINISTRATOR, ANALYST: OPERATOR}.get(role)
    if ":" not in token:
        return None
    async with request.app[SECRET_CHECKS]:
        analyst = await asyncio.to_thread(authenticate_bearer, request.app[ANALYSTS],
                                          settings.analyst_token.get_secret_value(), token)
    return (SCHOOL, analyst) if analyst is not None else None


async def clickhouse_user(app: web.Application, user: str, secret: str) -> Analyst | None:
    """The analyst a ClickHouse client's user and password are: a user of ``OPERATOR_USERS`` with the operator's
    analyst token (or the admin token: both read the analysts' tables only there), else a school credential's id
    and secret (a scrypt in a thread, as many at once as the bearer tokens')."""
    if user.lower() in OPERATOR_USERS:
        role = operator_role(secret, app[SINK_PROCESS].settings)
        return {ADMIN: ADMINISTRATOR, ANALYST: OPERATOR}.get(role or "")
    if not ANALYST_ID.fullmatch(user):
        return None
    async with app[SECRET_CHECKS]:
        return await asyncio.to_thread(app[ANALYSTS].verify, user, secret)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Credentials per route, and every error as JSON (the catch-all keeps internals out of the answer)."""
    route = request.match_info.route.resource
    needed = request.app[REQUIRED_ROLE].get(route.canonical if route is not None else "", ADMIN)
    try:
        if needed is not None and request.match_info.http_exception is None:
            offered = await _offered(request)
            if offered is None or offered[0] not in ACCEPTED[needed]:
                what = "an analyst credential" if needed == SCHOOL else f"the {needed} token"
                return error_response(401, f"{what} is required (Authorization: Bearer <token>)",
                              {"WWW-Authenticate": 'Bearer realm="caliper-sink"'})
            if offered[1] is not None:
                request[PRINCIPAL] = offered[1]
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(error.status, error.reason, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; see the sink's log")


