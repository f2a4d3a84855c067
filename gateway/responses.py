"""The answer formats of the gateway's three contracts.

- Caliper and Timeback endpoints (``/caliper/...``, the service endpoints): ``{status, message, errors}``, each
  error ``{path, message}`` naming the field;
- the hub (``/hub/...``): ``{"message": [...]}``, one line per problem ("Field <path> not informed");
- the token endpoint (``/oauth2/...``): RFC 6749 section 5.2, ``{"error": code, "error_description": text}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from schemas.errors import FieldProblem

ErrorRenderer = Callable[[GatewayError], dict[str, Any]]

# RFC 6749 section 5.2 error codes, plus RFC 8628's "slow_down" for throttling
OAUTH_ERROR_CODES = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                               "unsupported_grant_type", "invalid_scope", "slow_down", "server_error"})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def caliper_error_body(error: GatewayError) -> dict[str, Any]:
    errors = [{"path": p.path, "message": p.message} for p in error.problems] or None
    return {"status": "error", "message": error.message, "errors": errors}


def hub_line(problem: FieldProblem) -> str:
    """One line of the hub's 400 answer: "Field <path> not informed", or a message that names the field."""
    if problem.missing:
        return f"Field {problem.path} not informed"
    if not problem.path or problem.path in problem.message:
        return problem.message
    return f"Field {problem.path}: {problem.message}"


def hub_error_body(error: GatewayError) -> dict[str, Any]:
    return {"message": [hub_line(p) for p in error.problems] or [error.message]}


def oauth_error_body(error: GatewayError) -> dict[str, Any]:
    if error.reason in OAUTH_ERROR_CODES:
        code = error.reason
    elif error.status == 429:
        code = "slow_down"
    elif error.status >= 500:
        code = "server_error"
    else:
        code = "invalid_request"
    return {"error": code, "error_description": error.message}
