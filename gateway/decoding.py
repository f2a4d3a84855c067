"""Decoding a request body's ``Content-Encoding`` incrementally, in bounded slices.

aiohttp's server does not decode bodies (``gateway.server``: ``auto_decompress=False``); ``ContentDecoder`` does,
after the caller was authenticated: each compressed chunk is inflated at most ``SLICE_BYTES`` at a time
(``zlib`` ``max_length``), so the reader can stop at the decoded-size cap or the compression-ratio cap without
inflating the rest, and yield to the event loop between slices. gzip and x-gzip (RFC 9110 8.4.1.3: the same
coding) are gzip; deflate is the zlib format, or raw deflate as some clients send it (aiohttp accepted both);
identity passes through; anything else is refused before the body is read.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from gateway.errors import UnreadableBodyError, UnsupportedMediaTypeError
from schemas.errors import FieldProblem
from schemas.reasons import ReasonCode

SLICE_BYTES = 64 * 1024  # decoded bytes per step
ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")
GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS
RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


def content_encoding(header: str | None) -> str:
    """The request's coding, lower-cased; 415 naming ``Content-Encoding`` for one the gateway does not decode."""
    encoding = (header or "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        rule = "unsupported content coding; accepted: gzip, x-gzip, deflate, identity"
        raise UnsupportedMediaTypeError(f"Content-Encoding: {rule}", problems=[FieldProblem("Content-Encoding", rule)])
    return encoding


class ContentDecoder:
    """Feed the body's chunks as they arrive (``slices``), then ``finish``: raises ``UnreadableBodyError``
    (400, naming the coding) for bytes that are not of the declared coding, a truncated stream or bytes after
    its end."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._inflater: zlib._Decompress | None = None
        self.consumed = 0  # bytes of the body as sent that were decoded so far (the ratio's denominator)

    def _unreadable(self, what: str) -> UnreadableBodyError:
        message = f"the body (Content-Encoding: {self.encoding}) could not be decoded: {what}"
        return UnreadableBodyError(message, problems=[FieldProblem("body", message, code=ReasonCode.UNREADABLE_BODY)])

    def slices(self, chunk: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``chunk``, at most ``SLICE_BYTES`` at a time."""
        if self.encoding == "identity":
            for start in range(0, len(chunk), SLICE_BYTES):
                piece = chunk[start:start + SLICE_BYTES]
                self.consumed += len(piece)
                yield piece
            return
        if not chunk:
            return
        if self._inflater is None:
            wbits = GZIP_WBITS if self.encoding in ("gzip", "x-gzip") else (
                ZLIB_WBITS if chunk[0] & 0x0F == 8 else RAW_DEFLATE_WBITS)  # zlib's header names method 8
            self._inflater = zlib.decompressobj(wbits)
        inflater = self._inflater
        if inflater.eof:
            raise self._unreadable("bytes after the end of the compressed data")
        data = chunk
        while True:
            try:
                out = inflater.decompress(data, SLICE_BYTES)
            except zlib.error as error:
                raise self._unreadable(str(error)) from error
            self.consumed += len(data) - len(inflater.unconsumed_tail)
            if out:
                yield out
            data = inflater.unconsumed_tail
            if inflater.eof:
                if data or inflater.unused_data:
                    raise self._unreadable("bytes after the end of the compressed data")
                return
            if not data and len(out) < SLICE_BYTES:  # all input consumed, nothing more pending
                return

    def finish(self) -> None:
        if self.encoding == "identity":
            return
        if self._inflater is None or not self._inflater.eof:
            raise self._unreadable("the compressed data is truncated" if self._inflater else "the body is empty")
