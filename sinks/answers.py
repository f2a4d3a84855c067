"""An analyst's answer, assembled from the engine's stream and bounded in bytes as it is written.

The size of an answer is only known once it is rendered: inside the engine a constant or low-cardinality column
is small (``SELECT repeat('x', 1000) FROM numbers(900000)`` is a few kilobytes there, 900 MB once written), so the
engine's ``max_result_bytes`` does not bound it. The sink therefore streams the rendered result and stops it as
soon as the bytes written pass the limit (``QueryLimitError``, limit ``max_result_bytes``): at most the limit
plus one piece of it is ever held.

A server streams one document in pieces, which are simply joined. The embedded engine (chDB) streams a result
one block at a time, each block rendered as a document of its own; they are joined into one document:

- ``JSONEachRow`` (and the other formats without header or footer): joined as they are;
- ``TabSeparatedWithNames`` / ``CSVWithNames``: the names line of every block after the first is dropped;
- ``JSON``: the rows of every block go into the first block's ``data``, and the footer says how many rows there
  are in all (its ``statistics`` are the engine's for the last block);
- ``PrettyCompactMonoBlock`` (for people): one table per block.

What a block stream does not carry: the totals row of ``WITH TOTALS`` and JSON's ``rows_before_limit_at_least``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sinks.errors import QueryLimitError

LIMIT_NAME = "max_result_bytes"
_JSON_DATA_OPEN = b'\n\t"data":\n\t[\n'  # strings escape control characters: only the envelope has these bytes
_JSON_DATA_CLOSE = b'\n\t],\n\n\t"'
_JSON_ROWS = re.compile(rb'\n\t"rows": (\d+),')


class _Bounded:
    """The answer's bytes, refused once they pass ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def add(self, data: bytes | bytearray | memoryview) -> None:
        if len(self.buffer) + len(data) > self.limit:
            raise QueryLimitError(
                f"the answer is larger than {self.limit} bytes (the sink's max_result_bytes, "
                "CALIPER_SINK__QUERIES__MAX_RESULT_BYTES): select fewer rows or columns, or aggregate",
                limit=LIMIT_NAME)
        self.buffer += data


def assemble(pieces: Iterable[bytes], fmt: str, limit: int, *, blockwise: bool) -> bytearray | None:
    """The answer in ``fmt`` from the engine's pieces (``blockwise``: one document per block, the embedded
    engine's stream), or ``None`` when the stream had none (no rows: the caller renders the empty answer).
    ``QueryLimitError`` once it passes ``limit`` bytes; the caller then closes the stream."""
    answer = _Bounded(limit)
    if not blockwise or fmt not in ("JSON", "TabSeparatedWithNames", "CSVWithNames"):
        seen = False
        for piece in pieces:
            seen = True
            answer.add(piece)
        return answer.buffer if seen else None
    if fmt == "JSON":
        return _join_json(pieces, answer)
    header: bytes | None = None
    for piece in pieces:
        if header is None:
            header = piece[:_names_line_end(piece, fmt)]
            answer.add(piece)
        elif piece.startswith(header):
            answer.add(memoryview(piece)[len(header):])
        else:  # every block repeats the first block's names: anything else is a format this code does not know
            raise ValueError(f"a {fmt} block without the names line of the first block")
    return answer.buffer if header is not None else None


def _names_line_end(piece: bytes, fmt: str) -> int:
    """Where the names line ends (after its newline). TSV escapes newlines in names; CSV quotes names, and a
    quoted name may hold a newline: the line ends at the first newline outside quotes."""
    if fmt == "TabSeparatedWithNames":
        return piece.index(b"\n") + 1
    quoted = False
    for index, byte in enumerate(piece):
        if byte == 0x22:  # '"' ("" inside quotes toggles twice)
            quoted = not quoted
        elif byte == 0x0A and not quoted:
            return index + 1
    raise ValueError("a CSVWithNames block without a names line")


def _join_json(pieces: Iterable[bytes], answer: _Bounded) -> bytearray | None:
    rows = 0
    footer = b""
    for piece in pieces:
        opened = piece.index(_JSON_DATA_OPEN) + len(_JSON_DATA_OPEN)
        closed = piece.rindex(_JSON_DATA_CLOSE)
        found = _JSON_ROWS.search(piece, closed)
        if found is None:
            raise ValueError("a JSON block without its row count")
        if not footer:
            answer.add(memoryview(piece)[:opened])
        elif closed > opened:
            answer.add(b",\n")
        answer.add(memoryview(piece)[opened:closed])
        rows += int(found.group(1))
        footer = piece[closed:found.start()] + b'\n\t"rows": %d,' % rows + piece[found.end():]
    if not footer:
        return None
    answer.add(footer)
    return answer.buffer
