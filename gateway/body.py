"""Reading a request body within bounds, and the first checks on the parsed JSON.

- ``BodyBudget``: the bytes of request bodies held in memory by all concurrent requests together. A request whose
  ``Content-Length`` does not fit is answered 503 (``Retry-After``) before its body is read; a chunked or
  compressed body is counted as it is read, and refused the same way when it stops fitting. A request holds its
  share until its answer is ready (its parsed JSON lives that long).
- ``read_body``: ``Content-Encoding`` identity, gzip or deflate (decoded by aiohttp; anything else is 415), at most
  ``max_body_bytes`` after decoding (413), a body that cannot be decoded is a 400 naming the encoding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import PayloadTooLargeError, ServerBusyError, UnreadableBodyError, UnsupportedMediaTypeError
from schemas.errors import FieldProblem

DECODED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


class BodyBudget:
    """Bytes of request bodies in memory across concurrent requests, at most ``limit``."""

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.in_use = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[Reservation]:
        reservation = Reservation(self)
        try:
            yield reservation
        finally:
            self.in_use -= reservation.bytes
            reservation.bytes = 0


class Reservation:
    """One request's share of the ``BodyBudget``."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def grow_to(self, size: int) -> None:
        extra = size - self.bytes
        if extra <= 0:
            return
        budget = self.budget
        if budget.in_use + extra > budget.limit and budget.in_use > 0:  # a lone request always gets its turn
            raise ServerBusyError("the gateway is reading too many request bodies at once; retry later",
                                  retry_after=budget.retry_after)
        budget.in_use += extra
        self.bytes = size


async def read_body(request: web.Request, reservation: Reservation, max_bytes: int) -> bytearray:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in DECODED_ENCODINGS:
        rule = "unsupported content coding; accepted: gzip, deflate, identity"
        raise UnsupportedMediaTypeError(f"Content-Encoding: {rule}", problems=[FieldProblem("Content-Encoding", rule)])
    declared = request.content_length
    if declared is not None:
        if declared > max_bytes:
            raise PayloadTooLargeError(f"body of {declared} bytes is larger than {max_bytes} bytes")
        reservation.grow_to(declared)
    body = bytearray()
    try:
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > max_bytes:
                raise PayloadTooLargeError(f"body larger than {max_bytes} bytes" +
                                           (" once decoded" if encoding != "identity" else ""))
            reservation.grow_to(len(body))
    except RequestPayloadError as error:
        what = "the body" if encoding == "identity" else f"the body (Content-Encoding: {encoding})"
        raise UnreadableBodyError(f"{what} could not be read: {str(error).splitlines()[-1].strip()}",
                                  problems=[FieldProblem("body", f"{what} could not be read or decoded")]) from error
    return body
