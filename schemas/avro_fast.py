"""Avro binary encoding and decoding of the pipeline's flat records, compiled once per schema.

fastavro walks the schema for every record: per field a dict lookup of the value, a dispatch on the type's
name and, for a union, a validation of the value against each branch. For a 72-field learning fact that is
~0.35 us per field, ~25 us a fact: more than normalizing it. The records here are flat (strings, longs,
doubles, booleans, ``["null", X]`` unions, maps of doubles; bytes for the raw payload), so each schema is
turned into one generated function writing (or reading) its fields in order, the way the Avro specification
lays them out:

- long: zig-zag, then base-128 varint (least significant group first); string and bytes: length (a long)
  then the bytes; double: 8 bytes little-endian; boolean: one byte 0/1;
- ``["null", X]``: the branch index as a long (0 -> ``00``, 1 -> ``02``) then the value;
- map: a block count (long) and the entries (key string, value), then a 0 count; an empty map is only ``00``.

The varint and the double here are the pipeline's one definition of those encodings: ``schemas.avro_flat`` (the
gateway's RawEvent writer) and ``sinks.avro_container`` (the sink's container files) use them.

The generated code only takes the exact Python type of each field (``str``, ``int`` in int64 range, ``float``,
``bool``, ``None``, a ``dict`` of ``str`` -> ``float``); for anything else it gives up (``FastPathMiss``) and the
caller uses fastavro, which either encodes it (an ``int`` in a double field...) or raises its error. Likewise
the decoder reads only the newest schema's own messages and gives up on anything malformed. A property test
(``tests/unit/test_avro_fast.py``) checks bytes and records against fastavro's; ``bench schemas`` prints both
rates.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DOUBLE = struct.Struct("<d")


class FastPathMiss(Exception):  # a signal to take the general path, never an error for callers
    """The compiled coder does not handle this value; use fastavro."""


def varint(number: int) -> bytes:
    """The base-128 varint of a non-negative (already zig-zagged) number, least significant group first."""
    if number < 0x80:
        return SMALL_VARINTS[number]
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def zigzag_varint(number: int) -> bytes:
    """A long as Avro writes it."""
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise FastPathMiss
    return varint((number << 1) ^ (number >> 63))


SMALL_VARINTS = tuple(bytes((value,)) for value in range(0x80))  # every one-byte varint
_SMALL = SMALL_VARINTS
pack_double = _DOUBLE.pack  # an Avro double: 8 bytes little-endian


def read_varint(message: bytes, position: int) -> tuple[int, int]:
    """The long at ``position`` and the position after it (IndexError when the message ends inside it)."""
    byte = message[position]
    number = byte & 0x7F
    shift = 7
    position += 1
    while byte & 0x80:
        if shift > 63:
            raise FastPathMiss  # longer than any long: malformed
        byte = message[position]
        position += 1
        number |= (byte & 0x7F) << shift
        shift += 7
    if number >> 64:  # a tenth group with more than the 64th bit: not an int64 (fastavro decides)
        raise FastPathMiss
    return (number >> 1) ^ -(number & 1), position


def _type_name(avro_type: Any) -> str | None:
    """``string``, ``long``... or ``?string`` for ``["null", "string"]``, ``map:double``; None: not handled."""
    if isinstance(avro_type, str) and avro_type in ("string", "long", "int", "double", "boolean", "bytes"):
        return avro_type
    if isinstance(avro_type, list) and len(avro_type) == 2 and avro_type[0] == "null":
        inner = _type_name(avro_type[1])
        return f"?{inner}" if inner is not None and not inner.startswith(("?", "map", "array")) else None
    if isinstance(avro_type, dict) and avro_type.get("type") == "map" and avro_type.get("values") == "double":
        return "map:double"
    if isinstance(avro_type, dict) and avro_type.get("type") == "array" and avro_type.get("items") == "string":
        return "array:string"  # written only (an archive row's student keys); read by fastavro
    return None


def field_types(schema: dict[str, Any]) -> list[tuple[str, str]] | None:
    """(name, type name) of every field of a flat record schema; None when a field is not handled here."""
    if schema.get("type") != "record":
        return None
    found = []
    for avro_field in schema["fields"]:
        name = _type_name(avro_field["type"])
        if name is None or not str(avro_field["name"]).isidentifier():
            return None
        found.append((avro_field["name"], name))
    return found


# --- encoding ---------------------------------------------------------------------------------------------------

# Cheaper writes, each byte-identical to the plain encoding (tests/unit/test_avro_fast.py):
# - a long in 0..63 is one precomputed byte (counts, indexes, small scores); other longs and every string go
#   through a bounded cache of their encodings, one per compiled encoder (``_EncodingCache``): the fields that
#   repeat from record to record (tenant, source, type, profile, version, the envelope's send and receive times,
#   the derivation time shared by the facts of one millisecond) cost a dict lookup instead of encoding them,
#   ~0.05 us instead of 0.2-0.5 us; the exact type is checked before the lookup (``True == 1`` and a ``str``
#   subclass must not hit a cached entry);
# - consecutive required doubles are packed by one ``struct`` call.
_WRITE = {  # statements writing ``value`` (already read) into ``out``
    "string": ["if type(value) is not str: raise Miss", "out += STRINGS.get(value) or STRINGS.encode(value)"],
    "bytes": ["if type(value) is not bytes: raise Miss", "size = len(value)",
              "out += SMALL[size << 1] if size < 64 else varint(size)", "out += value"],
    "long": ["if type(value) is not int: raise Miss",
             "out += SMALL[value << 1] if 0 <= value < 64 else LONGS.get(value) or LONGS.encode(value)"],
    "int": ["if type(value) is not int or not -2147483648 <= value <= 2147483647: raise Miss",
            "out += varint(value)"],
    "double": ["if type(value) is not float: raise Miss", "out += pack_double(value)"],
    "boolean": ["if type(value) is not bool: raise Miss", "out += b'\\x01' if value else b'\\x00'"],
    "map:double": ["if type(value) is not dict: raise Miss", "if value:", "    out += varint(len(value))",
                   "    for key, item in value.items():",
                   "        if type(key) is not str or type(item) is not float: raise Miss",
                   "        data = key.encode()", "        out += varint(len(data))", "        out += data",
                   "        out += pack_double(item)", "out += b'\\x00'"],
    "array:string": ["if type(value) is not list: raise Miss", "if value:", "    out += varint(len(value))",
                     "    for item in value:", "        if type(item) is not str: raise Miss",
                     "        out += STRINGS.get(item) or STRINGS.encode(item)", "out += b'\\x00'"],
}


def _string_bytes(value: str) -> bytes:
    """An Avro string: its UTF-8 length (a long) then its bytes."""
    data = value.encode()
    size = len(data)
    return (_SMALL[size << 1] if size < 64 else zigzag_varint(size)) + data


class _EncodingCache(dict[Any, bytes]):
    """value -> its Avro encoding, for up to ``max_entries`` values: full, it starts again empty (cheaper than an
    LRU's bookkeeping; the repeating values are back after a few records)."""

    def __init__(self, encoder: Callable[[Any], bytes], max_entries: int = 4096, max_size: int = 256) -> None:
        super().__init__()
        self.encoder, self.max_entries, self.max_size = encoder, max_entries, max_size

    def encode(self, value: Any) -> bytes:
        encoded = self.encoder(value)
        if len(encoded) <= self.max_size:  # a long text (extensions_json) is not worth keeping
            if len(self) >= self.max_entries:
                self.clear()
            self[value] = encoded
        return encoded


def _double_runs(fields: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The fields in order, consecutive required doubles grouped (written by one ``struct`` call)."""
    runs: list[list[tuple[str, str]]] = []
    for name, kind in fields:
        if kind == "double" and runs and runs[-1][-1][1] == "double":
            runs[-1].append((name, kind))
        else:
            runs.append([(name, kind)])
    return runs


def compile_encoder(schema: dict[str, Any], *, attributes: bool,
                    cache_entries: int = 4096) -> Callable[[Any], bytes] | None:
    """``encode(record) -> body bytes`` for a flat record schema (None if it is not flat): the record's fields are
    read as attributes (``attributes=True``: a dataclass) or keys (a dict holding every field); up to
    ``cache_entries`` strings and as many longs keep their encoding."""
    fields = field_types(schema)
    if fields is None:
        return None
    namespace: dict[str, Any] = {"Miss": FastPathMiss, "SMALL": _SMALL, "varint": zigzag_varint,
                                 "pack_double": _DOUBLE.pack,
                                 "STRINGS": _EncodingCache(_string_bytes, cache_entries),
                                 "LONGS": _EncodingCache(zigzag_varint, cache_entries)}
    lines = ["def encode(record):", "    out = bytearray()"]
    for run in _double_runs(fields):
        if len(run) > 1:
            names = [f"d{index}" for index in range(len(run))]
            for local, (name, _) in zip(names, run, strict=True):
                lines.append(f"    {local} = {f'record.{name}' if attributes else f'record[{name!r}]'}")
            lines.append(f"    if {' or '.join(f'type({local}) is not float' for local in names)}: raise Miss")
            namespace[f"pack_{len(run)}_doubles"] = struct.Struct(f"<{len(run)}d").pack
            lines.append(f"    out += pack_{len(run)}_doubles({', '.join(names)})")
            continue
        name, kind = run[0]
        lines.append(f"    value = {f'record.{name}' if attributes else f'record[{name!r}]'}")
        if kind.startswith("?"):
            lines += ["    if value is None:", "        out += b'\\x00'", "    else:", "        out += b'\\x02'"]
            lines += [f"        {statement}" for statement in _WRITE[kind[1:]]]
        else:
            lines += [f"    {statement}" for statement in _WRITE[kind]]
    lines.append("    return bytes(out)")
    exec(compile("\n".join(lines) + "\n", f"<avro encoder {schema.get('name')}>", "exec"), namespace)
    encoder: Callable[[Any], bytes] = namespace["encode"]

    def encode(record: Any) -> bytes:
        try:
            return encoder(record)
        except (KeyError, AttributeError, UnicodeEncodeError):  # a missing field (fastavro fills its default), a
            raise FastPathMiss from None  # lone surrogate: fastavro decides

    return encode


# --- decoding ---------------------------------------------------------------------------------------------------

_READ_LENGTH = ["byte = message[position]", "if byte < 0x80:", "    size = (byte >> 1) ^ -(byte & 1)",
                "    position += 1", "else:", "    size, position = read_varint(message, position)",
                "end = position + size", "if size < 0 or end > length: raise Miss"]
_READ = {  # statements reading the field at ``position`` into ``value``
    "string": [*_READ_LENGTH, "value = message[position:end].decode()", "position = end"],
    "bytes": [*_READ_LENGTH, "value = message[position:end]", "position = end"],
    "long": ["value, position = read_varint(message, position)"],
    "int": ["value, position = read_varint(message, position)",
            "if not -2147483648 <= value <= 2147483647: raise Miss"],
    "double": ["if position + 8 > length: raise Miss", "value = unpack_double(message, position)[0]",
               "position += 8"],
    "boolean": ["byte = message[position]", "if byte > 1: raise Miss", "value = byte == 1", "position += 1"],
}


def compile_decoder(schema: dict[str, Any]) -> Callable[[bytes, int], dict[str, Any]] | None:
    """``decode(message, start) -> record dict`` of a flat schema without maps or arrays (None otherwise); raises
    ``FastPathMiss`` on anything malformed (fastavro then says what)."""
    fields = field_types(schema)
    if fields is None or any(kind.startswith(("map", "array")) for _, kind in fields):
        return None
    lines = ["def decode(message, position):", "    length = len(message)", "    record = {}"]
    for name, kind in fields:
        if kind.startswith("?"):
            lines += ["    byte = message[position]", "    position += 1", "    if byte == 0:",
                      "        value = None", "    elif byte == 2:"]
            lines += [f"        {statement}" for statement in _READ[kind[1:]]]
            lines += ["    else:", "        raise Miss"]
        else:
            lines += [f"    {statement}" for statement in _READ[kind]]
        lines.append(f"    record[{name!r}] = value")
    lines.append("    return record")
    namespace: dict[str, Any] = {"Miss": FastPathMiss, "read_varint": read_varint,
                                 "unpack_double": _DOUBLE.unpack_from}
    exec(compile("\n".join(lines) + "\n", f"<avro decoder {schema.get('name')}>", "exec"), namespace)
    decoder: Callable[[bytes, int], dict[str, Any]] = namespace["decode"]

    def decode(message: bytes, start: int) -> dict[str, Any]:
        try:
            return decoder(message, start)
        except (IndexError, UnicodeDecodeError):  # the message ends early, or is not UTF-8: fastavro says what
            raise FastPathMiss from None

    return decode
