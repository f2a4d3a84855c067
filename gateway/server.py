"""Serving the gateway's app: the connection-level settings of aiohttp's HTTP server, and the answer to a request
that cannot be parsed.

- ``handler_args``: what every connection gets (``web.Application(handler_args=...)``, so the production server,
  the tests' server and the benches' agree). Bodies are not decoded by aiohttp (``auto_decompress=False``: it
  would inflate them inside its protocol parser, on the event loop, before any handler could check the token;
  ``gateway.body`` decodes them in bounded slices after authentication). A body left unread when the answer is
  ready is not drained (``lingering_time=0``): the connection is closed after the answer, so a refused caller
  (a wrong token, a body too large) costs no more reading. ``keepalive_timeout`` is the header timeout: a
  connection whose next request head is not complete that many seconds after it opened or after its previous
  answer is closed (aiohttp's keep-alive timer closes a connection that waits for a request head).
- ``GatewayRequestHandler``: aiohttp's own 400 for a request it cannot parse (a header longer than
  ``max_field_size``, a request line longer than ``max_line_size``...) quotes the first 100 bytes of the offending
  line, in the answer and in the logged traceback; this one names the limit only, in both.
- ``GatewayRunner`` serves an app with that handler; ``serve`` runs it on a TCP port.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8190  # a request line, and one header line (aiohttp's defaults, named here to be quoted)


def handler_args(settings: GatewaySettings) -> dict[str, Any]:
    return {"auto_decompress": False, "lingering_time": 0, "keepalive_timeout": settings.header_timeout_seconds,
            "max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES}


def unparsable_request_message(error: BaseException) -> str:
    """What a client and the log are told about a request aiohttp could not parse: never a byte of it."""
    if isinstance(error, LineTooLong):
        return f"bad request: a request line or header line is longer than {MAX_LINE_BYTES} bytes"
    if isinstance(error, BadStatusLine):
        return "bad request: the request line is not HTTP"
    if isinstance(error, BadHttpMessage):
        return f"bad request: the request is not valid HTTP/1.1 ({type(error).__name__})"
    return f"bad request: the request could not be parsed ({type(error).__name__})"


class GatewayRequestHandler(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        text = unparsable_request_message(exc)
        log.info("%s from %s: answered %s", text, request.remote, status)
        response = web.Response(status=status, text=text + "\n", content_type="text/plain")
        response.force_close()
        return response


class GatewayServer(web.Server):
    def __call__(self) -> RequestHandler:
        # web.Server builds aiohttp's RequestHandler with these same arguments (its _loop and _kwargs)
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are ``GatewayRequestHandler``s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GatewayServer  # the same server (the app's handler and factory), its connections ours
        return server


@asynccontextmanager
async def serve(app: web.Application, host: str, port: int, **runner_options: Any) -> AsyncIterator[GatewayRunner]:
    runner = GatewayRunner(app, access_log=None, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield runner
    finally:
        await runner.cleanup()
