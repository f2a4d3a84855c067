"""An analyst's answer, assembled from the engine's stream and bounded in bytes as it is written.

The size of an answer is only known once it is rendered: inside the engine a constant or low-cardinality column
is small (``SELECT repeat('x', 1000) FROM numbers(900000)`` is a few kilobytes there, 900 MB once written), so the
engine's ``max_result_bytes`` does not bound it. The sink therefore streams the rendered result and stops it as
soon as the bytes written pass the limit (``QueryLimitError``, limit ``max_result_bytes``): at most the limit
plus one piece of it is ever held.

A server streams one document in pieces, which are simply joined. The embedded engine (chDB) streams a result
one block at a time, each block rendered as a document of its own; they are joined into one document:

- ``JSONEachRow``, ``Native`` (a sequence of blocks itself) and the other formats without header or footer:
  joined as they are;
- ``TabSeparatedWithNames`` / ``CSVWithNames`` (``...WithNamesAndTypes``, ``JSONCompactEachRowWith...``,
  ``RowBinaryWithNames...``): the header (names, types) of every block after the first is dropped;
- ``JSON`` (``JSONCompact``, ``JSONStrings`` ...): the rows of every block go into the first block's ``data``,
  and the footer says how many rows there are in all (its ``statistics`` are the engine's for the last block);
- ``Arrow``, ``ArrowStream``, ``Parquet`` (a file or stream per block): each block's record batches are written
  to one file or stream (pyarrow), as they come; the bound is on the bytes written;
- ``PrettyCompactMonoBlock`` (for people): one table per block.

What a block stream does not carry: the totals row of ``WITH TOTALS`` and JSON's ``rows_before_limit_at_least``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sinks.errors import QueryLimitError

LIMIT_NAME = "max_result_bytes"
_JSON_DATA_OPEN = b'\n\t"data":\n\t[\n'  # strings escape control characters: only the envelope has these bytes
_JSON_DATA_CLOSE = b'\n\t],\n\n\t"'
_JSON_ROWS = re.compile(rb'\n\t"rows": (\d+),')
JSON_DOCUMENTS = frozenset({"JSON", "JSONCompact", "JSONStrings", "JSONCompactStrings"})
# formats whose every block starts with the same header: how many text lines it has
HEADER_LINES = {"TabSeparatedWithNames": 1, "TabSeparatedWithNamesAndTypes": 2, "CSVWithNames": 1,
                "CSVWithNamesAndTypes": 2, "JSONCompactEachRowWithNames": 1, "JSONCompactEachRowWithNamesAndTypes": 2}
BINARY_HEADERS = {"RowBinaryWithNames": 1, "RowBinaryWithNamesAndTypes": 2}  # lists of strings in the header
ARROW_FILES = frozenset({"Arrow", "ArrowStream", "Parquet"})


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
    if blockwise and fmt in ARROW_FILES:
        return _join_arrow(pieces, fmt, limit)
    if not blockwise or fmt not in (JSON_DOCUMENTS | HEADER_LINES.keys() | BINARY_HEADERS.keys()):
        seen = False
        for piece in pieces:
            seen = True
            answer.add(piece)
        return answer.buffer if seen else None
    if fmt in JSON_DOCUMENTS:
        return _join_json(pieces, answer)
    header: bytes | None = None
    for piece in pieces:
        if header is None:
            header = piece[:_header_end(piece, fmt)]
            answer.add(piece)
        elif piece.startswith(header):
            answer.add(memoryview(piece)[len(header):])
        else:  # every block repeats the first block's names: anything else is a format this code does not know
            raise ValueError(f"a {fmt} block without the names line of the first block")
    return answer.buffer if header is not None else None


def _header_end(piece: bytes, fmt: str) -> int:
    """Where a block's header ends. TSV and JSON escape newlines in names; CSV quotes names, and a quoted name may
    hold a newline: a line ends at the first newline outside quotes. RowBinary's header is a count and as many
    length-prefixed strings per list (names, types)."""
    if fmt in BINARY_HEADERS:
        count, at = _varint(piece, 0)
        for _ in range(count * BINARY_HEADERS[fmt]):
            length, at = _varint(piece, at)
            at += length
        return at
    at = 0
    for _ in range(HEADER_LINES[fmt]):
        if not fmt.startswith("CSV"):
            at = piece.index(b"\n", at) + 1
            continue
        quoted = False
        for index in range(at, len(piece)):
            if piece[index] == 0x22:  # '"' ("" inside quotes toggles twice)
                quoted = not quoted
            elif piece[index] == 0x0A and not quoted:
                at = index + 1
                break
        else:
            raise ValueError(f"a {fmt} block without its header")
    return at


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``at``, and where it ends."""
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


class _CountingSink(io.RawIOBase):
    """A writable file holding what pyarrow writes, refused once it passes the limit."""

    def __init__(self, answer: _Bounded) -> None:
        self.answer = answer

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.answer.add(view)
        return view.nbytes


def _join_arrow(pieces: Iterable[bytes], fmt: str, limit: int) -> bytearray | None:
    """One Arrow file, Arrow stream or Parquet file from one per block, each block's batches written as they come."""
    answer = _Bounded(limit)
    sink = pa.PythonFile(_CountingSink(answer), mode="w")
    writer: Any = None
    for piece in pieces:
        if fmt == "Parquet":
            table = pq.read_table(pa.BufferReader(piece))
        else:
            reader = pa.ipc.open_file(piece) if fmt == "Arrow" else pa.ipc.open_stream(piece)
            table = reader.read_all()
        if writer is None:
            writer = (pq.ParquetWriter(sink, table.schema) if fmt == "Parquet" else
                      pa.ipc.new_file(sink, table.schema) if fmt == "Arrow" else pa.ipc.new_stream(sink, table.schema))
        writer.write_table(table)
    if writer is None:
        return None
    writer.close()
    return answer.buffer


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
