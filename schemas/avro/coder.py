"""Avro binary encoding and decoding of the pipeline's records, compiled once per schema: the one writer/reader.

fastavro walks the schema for every record (per field a dict lookup, a dispatch on the type, a union's validation
against each branch). Here a schema becomes, on first use, one generated function writing (or reading) its fields
in order as the Avro specification ("Binary Encoding") lays them out: long/int zig-zag then base-128 varint;
float/double 4/8 bytes little-endian; boolean one byte 0/1; string/bytes a long length then the bytes; a union the
branch index then the value (written: unions of ``"null"`` and one type; read: any); array/map blocks of a count
then the items (map: key, value), ended by a count of 0. Nested records, arrays of records and maps compose.

The encoder reads fields as keys (a dict) or attributes (a dataclass); ``bind_encoder`` compiles the variant
``RawEventCodec.writer_for`` needs: the fields one request's events share are encoded once, each event passes its
own. Decoding, the other half, is ``schemas.avro.decoder`` (compiled from the same generated-code machinery).

One error contract: a value that does not fit (a wrong type, a long beyond 64 bits, a string with a lone
surrogate, a missing field) and a message that does not decode (cut short, not UTF-8, a union index or boolean
byte Avro does not define, a varint beyond 64 bits) raise ``SchemaEncodingError`` naming the field, found after
the fact from the generated line the error came from (the happy path pays nothing).

The exact type is checked first (``type(v) is str``); a subclass (a str enum, an IntEnum) and an int in a double
field are converted on a slower branch, as fastavro takes them. A long in 0..63 is one precomputed byte; other
longs and strings go through a bounded cache of their encodings per encoder (``_EncodingCache``: tenant, type,
times shared by a request cost a dict lookup); consecutive required doubles are packed by one ``struct`` call.
``tests/unit/schemas/test_avro_coder.py`` checks bytes and records against fastavro (the reference), every catalog
version.
"""

from __future__ import annotations

import copy
import itertools
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.errors import SchemaEncodingError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_DOUBLE, _FLOAT = struct.Struct("<d"), struct.Struct("<f")
_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_COUNTER = itertools.count()

SMALL_VARINTS = tuple(bytes((value,)) for value in range(0x80))  # every one-byte varint
pack_double = _DOUBLE.pack  # an Avro double: 8 bytes little-endian


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
    """A long as Avro writes it; ``SchemaEncodingError`` beyond 64 bits."""
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise SchemaEncodingError("an integer that does not fit in a 64-bit long")
    return varint((number << 1) ^ (number >> 63))


def read_varint(message: bytes, position: int) -> tuple[int, int]:
    """The long at ``position`` and the position after it; ``SchemaEncodingError`` beyond 64 bits, IndexError
    when the message ends inside it."""
    byte = message[position]
    number = byte & 0x7F
    shift = 7
    position += 1
    while byte & 0x80:
        if shift > 63:
            raise SchemaEncodingError("a varint longer than any long")
        byte = message[position]
        position += 1
        number |= (byte & 0x7F) << shift
        shift += 7
    if number >> 64:  # a tenth group holding more than the 64th bit
        raise SchemaEncodingError("a varint beyond 64 bits")
    return (number >> 1) ^ -(number & 1), position


def string_bytes(value: str) -> bytes:
    """An Avro string: its UTF-8 length (a long) then its bytes."""
    data = value.encode()
    size = len(data)
    return (SMALL_VARINTS[size << 1] if size < 64 else zigzag_varint(size)) + data


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


# --- the slower branch of each type check: subclasses and promotions fastavro takes, else a TypeError ---------

def _int32(value: int) -> int:
    if not INT32_MIN <= value <= INT32_MAX:
        raise OverflowError("an integer that does not fit in a 32-bit int")
    return value


def _slow(expected: str, accepts: tuple[type, ...], convert: Callable[[Any], Any] = lambda value: value
          ) -> Callable[[Any], Any]:
    """A value of one of the ``accepts`` types (never a bool), converted; else a TypeError saying what it is."""
    def take(value: Any) -> Any:
        if isinstance(value, accepts) and type(value) is not bool:
            return convert(value)
        raise TypeError(f"expected {expected}, got {type(value).__name__}")
    return take


_SLOW = {"as_string": _slow("a string", (str,), str.__str__),  # a str subclass (a str enum): its characters
         "as_long": _slow("an integer", (int,), int), "as_int": _slow("an integer", (int,), lambda v: _int32(int(v))),
         "as_double": _slow("a number", (int, float), float),  # OverflowError for an int beyond a double
         "as_bytes": _slow("bytes", (bytes, bytearray, memoryview), bytes),
         "as_list": _slow("a list", (list, tuple)), "as_map": _slow("a map", (Mapping,)),
         "not_boolean": _slow("a boolean", ()), "not_null": _slow("null", ())}


# --- schemas, normalized ---------------------------------------------------------------------------------------

def normal_schema(avro_type: Any, named: dict[str, Any], namespace: str = "") -> Any:
    """A type as ``"long"``, ``("union", [..])``, ``("array", t)``, ``("map", t)`` or ``("record", name, fields)``
    (fields: name, type, has default, default); SchemaEncodingError for what this coder does not handle."""
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVES:
            return avro_type
        for fullname in (avro_type, f"{namespace}.{avro_type}"):
            if fullname in named:
                if named[fullname] is None:  # a reference inside the record itself
                    raise SchemaEncodingError(f"recursive record {fullname} is not supported by the compiled coder")
                return named[fullname]
        raise SchemaEncodingError(f"Avro type {avro_type!r} is not supported by the compiled coder")
    if isinstance(avro_type, list):
        return ("union", [normal_schema(branch, named, namespace) for branch in avro_type])
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind in _PRIMITIVES and "logicalType" not in avro_type:
            return kind
        if kind == "array":
            return ("array", normal_schema(avro_type["items"], named, namespace))
        if kind == "map":
            return ("map", normal_schema(avro_type["values"], named, namespace))
        if kind == "record":
            name = str(avro_type["name"])
            space = avro_type.get("namespace", namespace) if "." not in name else name.rsplit(".", 1)[0]
            fullname = name if "." in name or not space else f"{space}.{name}"
            named[fullname] = None  # being defined
            fields = [(str(field["name"]), normal_schema(field["type"], named, space), "default" in field,
                       field.get("default")) for field in avro_type["fields"]]
            named[fullname] = record = ("record", fullname.rsplit(".", 1)[-1], fields)
            return record
    raise SchemaEncodingError(f"Avro type {avro_type!r} is not supported by the compiled coder")


def _null_union(kind: Any) -> tuple[int, Any] | None:
    """(index of null, the other type) of a union of null and one type; None for any other type."""
    if isinstance(kind, tuple) and kind[0] == "union" and len(kind[1]) == 2 and "null" in kind[1]:
        null = kind[1].index("null")
        return null, kind[1][1 - null]
    return None


# --- generated code --------------------------------------------------------------------------------------------

class GeneratedSource:
    """Lines of generated code, each remembering the field it handles (its path) for the error that names it."""

    def __init__(self, name: str) -> None:
        self.filename = f"<avro coder {name} #{next(_COUNTER)}>"
        self.lines: list[str] = []
        self.cached = True  # strings and longs through the encoder's caches
        self.paths: dict[int, str] = {}
        self.namespace: dict[str, Any] = {"SMALL": SMALL_VARINTS, "zigzag": zigzag_varint, "varint": varint,
                                          "read_varint": read_varint, "join": b"".join, "pack_double": pack_double,
                                          "pack_float": _FLOAT.pack, "unpack_double": _DOUBLE.unpack_from,
                                          "unpack_float": _FLOAT.unpack_from, **_SLOW,
                                          "deepcopy": copy.deepcopy, "located": self.located}
        self.errors = (SchemaEncodingError, TypeError, ValueError, OverflowError, KeyError, AttributeError,
                       IndexError, struct.error)
        self.namespace["ERRORS"] = self.errors

    def add(self, indent: int, text: str, path: str = "") -> None:
        self.lines.append("    " * indent + text)
        if path:
            self.paths[len(self.lines)] = path

    def constant(self, value: Any) -> str:
        name = f"K{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def guarded(self, indent: int, record: str, doing: str, body: Callable[[], None], retry: str = "") -> None:
        """``body``'s statements in a ``try`` whose errors become the ``SchemaEncodingError`` naming the field."""
        self.add(indent, "try:")
        body()
        self.add(indent, "except ERRORS as error:")
        if retry:
            self.add(indent + 1, retry)
        self.add(indent + 1, f"raise located(error, {record!r}, {doing!r}) from None")

    def build(self, function: str) -> Any:
        exec(compile("\n".join(self.lines) + "\n", self.filename, "exec"), self.namespace)
        return self.namespace[function]

    def located(self, error: BaseException, record: str, doing: str) -> SchemaEncodingError:
        """The error naming the field whose line of generated code raised ``error``."""
        line, traceback = 0, error.__traceback__
        while traceback is not None:
            if traceback.tb_frame.f_code.co_filename == self.filename:
                line = traceback.tb_lineno
            traceback = traceback.tb_next
        field = self.paths.get(line, "")
        if isinstance(error, UnicodeEncodeError):
            reason = "a string that cannot be UTF-8 (a lone surrogate)"
        elif isinstance(error, (KeyError, AttributeError)):
            reason = "missing"
        elif isinstance(error, UnicodeDecodeError):
            reason = "bytes that are not UTF-8"
        elif isinstance(error, (IndexError, struct.error)):
            reason = "the message ends inside it"
        else:
            reason = str(error)
        where = f"{record} field {field}" if field else record
        return SchemaEncodingError(f"cannot {doing} {where}: {reason}", record=record, field=field)


def _write(src: GeneratedSource, kind: Any, value: str, indent: int, path: str, depth: int, attributes: bool) -> None:
    """Statements writing the local ``value`` (of type ``kind``) into ``out``."""
    add = src.add
    if kind == "string":
        add(indent, f"if type({value}) is not str: {value} = as_string({value})", path)
        if src.cached:
            add(indent, f"put(STRINGS.get({value}) or STRINGS.encode({value}))", path)
        else:  # encoded each time (a value seen once, such as an event id, would only fill the cache)
            add(indent, f"data = {value}.encode()", path)
            add(indent, "put(SMALL[len(data) << 1] if len(data) < 64 else zigzag(len(data)))", path)
            add(indent, "put(data)", path)
    elif kind == "long":
        add(indent, f"if type({value}) is not int: {value} = as_long({value})", path)
        cached = f"LONGS.get({value}) or LONGS.encode({value})" if src.cached else f"zigzag({value})"
        add(indent, f"put(SMALL[{value} << 1] if 0 <= {value} < 64 else {cached})", path)
    elif kind == "int":
        add(indent, f"if type({value}) is not int or not {INT32_MIN} <= {value} <= {INT32_MAX}: "
                    f"{value} = as_int({value})", path)
        add(indent, f"put(zigzag({value}))", path)
    elif kind in ("double", "float"):
        add(indent, f"if type({value}) is not float: {value} = as_double({value})", path)
        add(indent, f"put(pack_{kind}({value}))", path)
    elif kind == "boolean":
        add(indent, f"put(b'\\x01' if {value} is True else b'\\x00' if {value} is False else "
                    f"not_boolean({value}))", path)
    elif kind == "bytes":
        add(indent, f"if type({value}) is not bytes: {value} = as_bytes({value})", path)
        add(indent, f"put(SMALL[len({value}) << 1] if len({value}) < 64 else zigzag(len({value})))", path)
        add(indent, f"put({value})", path)
    elif kind == "null":
        add(indent, f"if {value} is not None: not_null({value})", path)
    elif _null_union(kind) is not None:
        null, other = _null_union(kind)  # type: ignore[misc]
        add(indent, f"if {value} is None: put({SMALL_VARINTS[null << 1]!r})", path)
        add(indent, "else:", path)
        add(indent + 1, f"put({SMALL_VARINTS[(1 - null) << 1]!r})", path)
        _write(src, other, value, indent + 1, path, depth, attributes)
    elif kind[0] in ("array", "map"):
        item, key = f"v{depth + 1}", f"k{depth + 1}"
        if kind[0] == "array":
            add(indent, f"if type({value}) is not list: {value} = as_list({value})", path)
        else:
            add(indent, f"if type({value}) is not dict: {value} = as_map({value})", path)
        add(indent, f"if {value}:", path)
        add(indent + 1, f"put(zigzag(len({value})))", path)
        if kind[0] == "array":
            add(indent + 1, f"for {item} in {value}:", path)
            _write(src, kind[1], item, indent + 2, f"{path}[]", depth + 1, attributes)
        else:
            add(indent + 1, f"for {key}, {item} in {value}.items():", path)
            _write(src, "string", key, indent + 2, f"{path}{{}}", depth + 1, attributes)
            _write(src, kind[1], item, indent + 2, f"{path}{{}}", depth + 1, attributes)
        add(indent, "put(b'\\x00')", path)
    elif kind[0] == "record":
        _write_fields(src, kind[2], value, indent, f"{path}." if path else "", depth, attributes)
    else:
        raise SchemaEncodingError(f"the compiled coder cannot write {kind[0]} {path or 'records'}")


def _read_of(attributes: bool, record: str, name: str, has_default: bool, default: Any, src: GeneratedSource,
             depth: int) -> str:
    """The expression of a field's value (a missing top-level key is filled by ``compile_encoder``'s retry)."""
    if attributes:
        return f"{record}.{name}" if name.isidentifier() else f"getattr({record}, {name!r})"
    return f"{record}.get({name!r}, {src.constant(default)})" if has_default and depth else f"{record}[{name!r}]"


def _write_fields(src: GeneratedSource, fields: list[Any], record: str, indent: int, prefix: str, depth: int,
                  attributes: bool) -> None:
    """Statements writing every field of a record held in the local ``record``."""
    value = f"v{depth + 1}"
    index = 0
    while index < len(fields):
        run = list(itertools.takewhile(lambda field: field[1] == "double", fields[index:]))
        if len(run) > 1:  # consecutive required doubles: one struct call
            names = [f"d{number}" for number in range(len(run))]
            for local, (name, _, has_default, default) in zip(names, run, strict=True):
                read = _read_of(attributes, record, name, has_default, default, src, depth)
                src.add(indent, f"{local} = {read}", prefix + name)
            src.add(indent, f"if {' or '.join(f'type({local}) is not float' for local in names)}:")
            for local, (name, *_) in zip(names, run, strict=True):
                src.add(indent + 1, f"{local} = as_double({local})", prefix + name)
            pack = src.constant(struct.Struct(f"<{len(run)}d").pack)
            src.add(indent, f"put({pack}({', '.join(names)}))")
            index += len(run)
            continue
        name, kind, has_default, default = fields[index]
        read = _read_of(attributes, record, name, has_default, default, src, depth)
        src.add(indent, f"{value} = {read}", prefix + name)
        _write(src, kind, value, indent, prefix + name, depth + 1, attributes)
        index += 1


def _encoder_source(schema: Any, cache_entries: int) -> tuple[GeneratedSource, Any]:
    kind = normal_schema(schema, {})
    if not isinstance(kind, tuple) or kind[0] != "record":
        raise SchemaEncodingError("the compiled coder writes records")
    src = GeneratedSource(kind[1])
    src.namespace["STRINGS"] = _EncodingCache(string_bytes, cache_entries)
    src.namespace["LONGS"] = _EncodingCache(zigzag_varint, cache_entries)
    return src, kind


def compile_encoder(schema: Any, *, attributes: bool, prefix: bytes = b"",
                    cache_entries: int = 4096) -> Callable[[Any], bytes]:
    """``encode(record) -> prefix + body`` of a record schema: the fields are read as attributes
    (``attributes=True``: a dataclass) or keys (a dict; a missing key takes the field's default)."""
    src, kind = _encoder_source(schema, cache_entries)
    defaults = {name: default for name, _, has_default, default in kind[2] if has_default}
    src.add(0, "def encode(record, filled=False):")

    def body() -> None:
        src.add(2, f"out = [{src.constant(prefix)}]")
        src.add(2, "put = out.append")
        _write_fields(src, kind[2], "record", 2, "", 0, attributes)
        src.add(2, "return join(out)")
    # a key missing: again, with the defaults of the fields that have one
    retry = f"if type(error) is KeyError and not filled: return encode({{**{src.constant(defaults)}, **record}}, True)"
    src.guarded(1, kind[1], "encode", body, retry if defaults and not attributes else "")
    return src.build("encode")


def bind_encoder(schema: Any, constant_names: Sequence[str], prefix: bytes = b"",
                 cache_entries: int = 4096) -> Callable[..., Callable[..., bytes]]:
    """``bind(*constants)`` (the values of ``constant_names``, in the schema's field order) -> ``write(*values)``
    (the other fields' values, in field order) -> prefix + body: the constant fields are encoded once, by bind."""
    src, kind = _encoder_source(schema, cache_entries)
    src.cached = False  # the constants are encoded once a request, the other fields mostly differ
    fields = kind[2]
    unknown = set(constant_names) - {field[0] for field in fields}
    if unknown:
        raise SchemaEncodingError(f"no field {sorted(unknown)} in {kind[1]}", record=kind[1])
    constants = [field for field in fields if field[0] in constant_names]
    variables = [field for field in fields if field[0] not in constant_names]
    src.add(0, f"def bind({', '.join(f'c{number}' for number in range(len(constants)))}):")

    def bind_body() -> None:  # run N: the constants before variable field N (run 0: after the prefix), then the rest
        src.add(2, f"out = [{src.constant(prefix)}]")
        src.add(2, "put = out.append")
        runs = 0
        for field in fields:
            if field in constants:
                _write(src, field[1], f"c{constants.index(field)}", 2, field[0], 1, False)
            else:
                src.add(2, f"run{runs} = join(out)")
                src.add(2, "out = []")
                src.add(2, "put = out.append")
                runs += 1
        src.add(2, f"run{runs} = join(out)")

    def write_body() -> None:
        src.add(3, "out = [run0]")
        src.add(3, "put = out.append")
        for number, (name, field_kind, *_) in enumerate(variables):
            _write(src, field_kind, f"w{number}", 3, name, 1, False)
            if fields.index(variables[number]) + 1 < len(fields) and (
                    fields[fields.index(variables[number]) + 1] in constants):  # else the run is empty
                src.add(3, f"put(run{number + 1})")
        src.add(3, "return join(out)")
    src.guarded(1, kind[1], "encode", bind_body)
    src.add(1, f"def write({', '.join(f'w{number}' for number in range(len(variables)))}):")
    src.guarded(2, kind[1], "encode", write_body)
    src.add(1, "return write")
    return src.build("bind")
