"""The gateway's middlewares: request metrics (outermost, on the root app) and ONE error middleware, mounted
on the root app and on each sub-app with that app's answer format (``gateway.responses``).

The error middleware turns every ``GatewayError`` and every aiohttp ``HTTPException`` of status >= 400 into the
JSON of the endpoint's contract (405 keeps its ``Allow`` header, 404 is JSON too), and has a catch-all branch:
an exception nobody expected is logged with its traceback and answered 500 in the same JSON format, with a
generic message that gives away no internals. No exception escapes as aiohttp's plain-text 500.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.errors import GatewayError, HttpError, InternalError, PayloadTooLargeError
from gateway.keys import BODY, CALLER, DRY_RUN, METRICS, PUBLISHER, SETTINGS, shared
from gateway.responses import ErrorRenderer, json_response
from schemas.errors import problems_code
from schemas.side_topics import REJECTED_BODY_LIMIT, RejectedRequest

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error: the gateway could not answer this request (the gateway's log has the details)"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    endpoint = resource.canonical if resource is not None else "unmatched"
    shared(request)[METRICS].request_done(endpoint, response.status, time.perf_counter() - started)
    return response


def error_middleware(render: ErrorRenderer, www_authenticate: str) -> Middleware:
    """The error middleware of one app: ``render`` gives the app's error body, ``www_authenticate`` the
    challenge of its 401 answers."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as error:
            return answer_error(request, error, render, www_authenticate)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return answer_error(request, from_http_exception(request, error), render, www_authenticate)
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return answer_error(request, InternalError(INTERNAL_MESSAGE), render, www_authenticate)

    return middleware


def from_http_exception(request: web.Request, error: web.HTTPException) -> GatewayError:
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        limit = shared(request)[SETTINGS].max_body_bytes
        return PayloadTooLargeError(f"body larger than {limit} bytes")
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = sorted(error.allowed_methods)
        return HttpError(405, "method_not_allowed",
                         f"method {request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
                         headers={"Allow": ", ".join(allowed)})
    if isinstance(error, web.HTTPNotFound):
        return HttpError(404, "not_found", f"no endpoint at {request.path}")
    return HttpError(error.status, error.reason.lower().replace(" ", "_"), error.reason)


def answer_error(request: web.Request, error: GatewayError, render: ErrorRenderer,
                 www_authenticate: str) -> web.Response:
    shared(request)[METRICS].rejects.labels(error.reason).inc()
    if error.records_rejection and request.method == "POST" and not request.get(DRY_RUN):
        caller = request.get(CALLER)
        shared(request)[PUBLISHER].record_rejection(RejectedRequest.of(
            tenant=caller.tenant if caller else "", client_id=caller.client_id if caller else "",
            endpoint=request.path, status=error.status, problems=[(p.path, p.message) for p in error.problems],
            reason_code=problems_code(error.problems),
            body=bytes((request.get(BODY) or b"")[:REJECTED_BODY_LIMIT + 1])))  # + 1: "truncated" stays right
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", www_authenticate)
    response = json_response(render(error), status=error.status, headers=headers or None)
    if error.close_connection or not request.content.is_eof():
        response.force_close()  # "Connection: close": an unread body is not drained (gateway.server)
    return response
