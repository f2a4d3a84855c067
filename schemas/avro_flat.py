"""A fast Avro binary writer for flat records: every field a string, bytes, long, int, boolean or double, or an
optional one of these (a union of ``"null"`` and one of them, e.g. ``["null", "string"]`` with ``"default": null``).

fastavro's ``schemaless_writer`` costs ~5-8 us for a RawEvent (13 fields), mostly per-call set-up (a writer
object, a buffer, the walk of the parsed schema); the gateway encodes one RawEvent per accepted event, so that
was a fifth of its cost per event. ``FlatRecordWriter`` is built once from the parsed schema (so it follows the
schema's field order and types, and refuses a schema it cannot write: the caller keeps fastavro then) and
encodes a tuple of field values in field order with one ``b"".join``. Avro's binary encoding (specification,
"Binary Encoding"): long and int are zig-zag varints, string and bytes a long length then the bytes, boolean one
byte, double 8 bytes little-endian; a union value is the branch's index (a long) then the value.

A field added to a flat schema as an optional field (the way a schema evolves compatibly) keeps the schema flat:
the writer follows it, and ``defaults`` gives the value of a field a writer is not told (its schema default).

``tests/unit/test_avro_flat.py`` checks that it writes byte for byte what fastavro writes (random records,
extreme longs, non-ASCII strings), and ``caliper-pipeline bench gateway-steps`` prints both speeds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Final

from schemas.avro_fast import SMALL_VARINTS, pack_double, varint
from schemas.errors import SchemaEncodingError

_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1
_SMALL_VARINTS: Final = SMALL_VARINTS  # varints of 0..127: one byte each
_pack_double: Final = pack_double
_varint: Final = varint  # the varint of a non-negative (already zig-zagged) number


def _long(value: Any, low: int = _LONG_MIN, high: int = _LONG_MAX) -> bytes:
    if type(value) is not int or not low <= value <= high:  # bool is not an Avro long here (fastavro agrees)
        raise SchemaEncodingError(f"expected an integer in [{low}, {high}], got {type(value).__name__}")
    return _varint((value << 1) ^ (value >> 63))


def _int(value: Any) -> bytes:
    return _long(value, _INT_MIN, _INT_MAX)


def _string(value: Any) -> bytes:
    if type(value) is not str:
        raise SchemaEncodingError(f"expected a string, got {type(value).__name__}")
    data = value.encode()  # a lone surrogate raises UnicodeEncodeError, as in fastavro
    return _varint(len(data) << 1) + data


def _bytes(value: Any) -> bytes:
    if type(value) is not bytes:
        raise SchemaEncodingError(f"expected bytes, got {type(value).__name__}")
    return _varint(len(value) << 1) + value


def _boolean(value: Any) -> bytes:
    if type(value) is not bool:
        raise SchemaEncodingError(f"expected a boolean, got {type(value).__name__}")
    return b"\x01" if value else b"\x00"


def _double(value: Any) -> bytes:
    if type(value) is not float and type(value) is not int:
        raise SchemaEncodingError(f"expected a number, got {type(value).__name__}")
    return _pack_double(value)


_FIELD_WRITERS: Final[dict[str, Callable[[Any], bytes]]] = {
    "string": _string, "bytes": _bytes, "long": _long, "int": _int, "boolean": _boolean, "double": _double,
}


def _optional(writer: Callable[[Any], bytes], null_index: int) -> Callable[[Any], bytes]:
    """The writer of a union of "null" (branch ``null_index``) and the type that ``writer`` writes."""
    null, present = _varint(null_index << 1), _varint((1 - null_index) << 1)

    def write(value: Any) -> bytes:
        return null if value is None else present + writer(value)

    return write


def _field_writer(avro_type: Any) -> Callable[[Any], bytes] | None:
    """The writer of a field of this (parsed) type, None when the type is not flat."""
    if isinstance(avro_type, str):
        return _FIELD_WRITERS.get(avro_type)
    if isinstance(avro_type, list) and len(avro_type) == 2 and "null" in avro_type:
        other = avro_type[1 - avro_type.index("null")]
        writer = _FIELD_WRITERS.get(other) if isinstance(other, str) else None
        return _optional(writer, avro_type.index("null")) if writer is not None else None
    return None


class FlatRecordWriter:
    """Writes the Avro binary body of one flat record schema; ``of(schema)`` is None for any other schema."""

    __slots__ = ("_writers", "defaults", "field_names")

    def __init__(self, field_names: tuple[str, ...], writers: tuple[Callable[[Any], bytes], ...],
                 defaults: dict[str, Any] | None = None) -> None:
        self.field_names = field_names
        self._writers = writers
        self.defaults = defaults or {}  # field name -> its schema default, for the fields that have one

    @classmethod
    def of(cls, parsed_schema: Any) -> FlatRecordWriter | None:
        if not isinstance(parsed_schema, dict) or parsed_schema.get("type") != "record":
            return None
        names, writers, defaults = [], [], {}
        for field in parsed_schema["fields"]:
            writer = _field_writer(field["type"])
            if writer is None:
                return None
            names.append(field["name"])
            writers.append(writer)
            if "default" in field:
                defaults[field["name"]] = field["default"]
        return cls(tuple(names), tuple(writers), defaults)

    def write(self, values: Sequence[Any]) -> bytes:
        """The body of the record whose field values are ``values``, in the schema's field order."""
        if len(values) != len(self._writers):
            raise SchemaEncodingError(f"{len(values)} values for {len(self._writers)} fields")
        return b"".join([write(value) for write, value in zip(self._writers, values, strict=True)])

    def bind(self, prefix: bytes = b"", **constants: Any) -> Callable[..., bytes]:
        """A writer of the records whose fields named in ``constants`` have these values (the fields of one
        request: tenant, client, receive time...): their encoding is computed once, here. The function returned
        takes the other fields' values, in field order, and returns ``prefix`` (a message header) + the body."""
        make, runs = self._layout(tuple(constants))
        plan: list[Any] = []
        for run, writer in runs:  # each run of constant fields, then the writer of the next variable field
            plan.append(prefix + b"".join([write(constants[name]) for name, write in run]) if not plan else
                        b"".join([write(constants[name]) for name, write in run]))
            if writer is not None:
                plan.append(writer)
        return make(*plan)

    @functools.cache  # noqa: B019 - one entry per (writer, constant fields): a handful, for the process's life
    def _layout(self, constant_names: tuple[str, ...]) -> tuple[Callable[..., Callable[..., bytes]], list[Any]]:
        """For one choice of constant fields: the runs of constant fields, each followed by the writer of a
        variable field (None after the last run), and straight-line code compiled once, ``make(c0, w0, c1, ...,
        cN)`` returning ``write(v0, ...) = join((c0, w0(v0), c1, ..., cN))``."""
        unknown = set(constant_names) - set(self.field_names)
        if unknown:
            raise SchemaEncodingError(f"no field {sorted(unknown)} in the record")
        runs: list[Any] = []
        run: list[tuple[str, Callable[[Any], bytes]]] = []
        for name, writer in zip(self.field_names, self._writers, strict=True):
            if name in constant_names:
                run.append((name, writer))
            else:
                runs.append((run, writer))
                run = []
        runs.append((run, None))
        steps = 2 * len(runs) - 1
        parameters = ", ".join(f"p{index}" for index in range(steps))
        values = ", ".join(f"v{index}" for index in range(1, steps, 2))
        terms = ", ".join(f"p{index}" if index % 2 == 0 else f"p{index}(v{index})" for index in range(steps))
        namespace: dict[str, Any] = {"join": b"".join}
        exec(f"def make({parameters}):\n    def write({values}):\n        return join(({terms},))\n"
             f"    return write\n", namespace)
        return namespace["make"], runs
