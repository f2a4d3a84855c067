"""Reading a request body within bounds: the memory all bodies hold together and each caller's share of it, the
time a body may take, its size once decoded and its compression ratio.

- ``BodyBudget``: the bytes of request bodies held in memory by all concurrent requests together. Only an
  authenticated request holds any (``hold`` takes its ``Caller``; the handlers verify the token first). A
  request whose ``Content-Length`` does not fit is answered 503 (``Retry-After``) before its body is read; a
  chunked or compressed body is counted as it is read (decoded), and refused the same way when it stops fitting.
  One client id, and one remote address, may hold at most ``share`` of the budget (429 with ``Retry-After``
  beyond), so one caller's slow or large bodies cannot take the others' room. A request holds its share until
  its answer is ready (its parsed JSON lives that long).
- ``read_body``: ``Content-Encoding`` identity, gzip, x-gzip or deflate (``gateway.decoding``; anything else is
  415), at most ``max_bytes`` after decoding (413) and at most ``max_compression_ratio`` times the bytes
  decoded so far as sent (413 naming ``Content-Encoding``, checked at every slice, so a bomb stops early); a
  body that stops arriving for ``body_timeout_seconds``, or that arrives slower than
  ``min_body_bytes_per_second`` on average once that first stretch is over, is answered 408 and its connection
  closed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.decoding import ContentDecoder, content_encoding
from gateway.errors import (
    BodyShareExceededError,
    ConnectionLostError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerBusyError,
    UnreadableBodyError,
)
from gateway.settings import GatewaySettings
from gateway.tokens import Caller
from schemas.errors import FieldProblem
from schemas.reasons import ReasonCode

RATIO_FLOOR_BYTES = 1024  # the ratio is checked against at least this many bytes as sent (tiny bodies vary)


class BodyBudget:
    """Bytes of request bodies in memory across concurrent requests, at most ``limit``; at most ``share`` of it
    per client id and per remote address."""

    def __init__(self, limit: int, retry_after: int, share: float = 1.0) -> None:
        self.limit = limit
        self.per_caller = max(1, int(limit * share))
        self.retry_after = retry_after
        self.in_use = 0
        self.held: Counter[str] = Counter()  # bytes held by "client:<id>" and by "address:<remote>"

    @asynccontextmanager
    async def hold(self, caller: Caller, address: str | None) -> AsyncIterator[Reservation]:
        reservation = Reservation(self, (f"client:{caller.client_id}", f"address:{address or ''}"))
        try:
            yield reservation
        finally:
            self.in_use -= reservation.bytes
            for key in reservation.keys:
                self.held[key] -= reservation.bytes
                if self.held[key] <= 0:
                    del self.held[key]
            reservation.bytes = 0


class Reservation:
    """One request's share of the ``BodyBudget``, counted against its caller's keys too."""

    def __init__(self, budget: BodyBudget, keys: tuple[str, ...]) -> None:
        self.budget = budget
        self.keys = keys
        self.bytes = 0

    def grow_to(self, size: int) -> None:
        extra = size - self.bytes
        if extra <= 0:
            return
        budget = self.budget
        if budget.in_use + extra > budget.limit and budget.in_use > 0:  # a lone request always gets its turn
            raise ServerBusyError("the gateway is reading too many request bodies at once; retry later",
                                  retry_after=budget.retry_after)
        for key in self.keys:
            held = budget.held[key]
            if held + extra > budget.per_caller and held > self.bytes:  # a caller's first body always may start
                who = key.replace(":", " ", 1)
                raise BodyShareExceededError(
                    f"{who} already has {held} bytes of request bodies being read; one caller may hold at most "
                    f"{budget.per_caller} bytes at once; retry later", retry_after=budget.retry_after)
        budget.in_use += extra
        for key in self.keys:
            budget.held[key] += extra
        self.bytes = size


async def read_body(request: web.Request, reservation: Reservation | None, max_bytes: int,
                    settings: GatewaySettings) -> bytearray:
    """The decoded body, at most ``max_bytes``; ``reservation`` (none: the body is too small to count) is grown
    as it is read."""
    encoding = content_encoding(request.headers.get("Content-Encoding"))
    declared = request.content_length
    if declared is not None:
        if declared > max_bytes:
            raise PayloadTooLargeError(f"body of {declared} bytes is larger than {max_bytes} bytes")
        if reservation is not None:
            reservation.grow_to(declared)
    decoder = ContentDecoder(encoding)
    coded = f" (Content-Encoding: {encoding})" if encoding != "identity" else ""
    body = bytearray()
    received = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    timeout, min_rate = settings.body_timeout_seconds, settings.min_body_bytes_per_second
    try:
        while True:
            now = loop.time()
            # the next bytes within the timeout, and the body as a whole no slower than the minimum rate
            deadline = min(now + timeout, started + timeout + received / min_rate)
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await request.content.readany()
            except TimeoutError as error:
                raise RequestTimeoutError(
                    f"the body{coded} arrived too slowly: {received} bytes in {now - started:.0f} s; the gateway "
                    f"waits at most {timeout:g} s for more and needs at least {min_rate} bytes/s on average"
                ) from error
            if not chunk:
                break
            received += len(chunk)
            for piece in decoder.slices(chunk):
                body += piece
                if len(body) > max_bytes:
                    raise PayloadTooLargeError(f"body larger than {max_bytes} bytes" +
                                               (f" once decoded{coded}" if coded else ""))
                if len(body) > settings.max_compression_ratio * max(decoder.consumed, RATIO_FLOOR_BYTES):
                    message = (f"the body{coded} decodes to more than {settings.max_compression_ratio} times "
                               "its compressed size; send it less compressed or uncompressed")
                    raise PayloadTooLargeError(message, problems=[FieldProblem("Content-Encoding", message)])
                if reservation is not None:
                    reservation.grow_to(len(body))
                if coded:
                    await asyncio.sleep(0)  # let the other requests run between decoded slices
        decoder.finish()
    except ConnectionResetError as error:  # aiohttp's "Connection lost": the caller went away mid-body
        raise ConnectionLostError(f"the connection was closed after {received} bytes of the body{coded}") from error
    except RequestPayloadError as error:
        what = f"the body{coded}"
        raise UnreadableBodyError(f"{what} could not be read: {str(error).splitlines()[-1].strip()}",
                                  problems=[FieldProblem("body", f"{what} could not be read or decoded",
                                                         code=ReasonCode.UNREADABLE_BODY)]) from error
    return body
