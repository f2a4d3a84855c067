"""Avro binary decoding of the pipeline's records, compiled once per (writer, reader) schema pair: the reading half
of the one writer/reader (``schemas.avro.coder`` writes, and holds what both halves share: the primitives, the
normalized schemas, the generated code and its error contract).

The decoder resolves a writer schema to a reader schema as the Avro specification's "Schema Resolution" says: a
field only the reader has takes its default, one only the writer has is skipped, an int or long is promoted to a
float or double, string and bytes read as each other, and a writer's type read where the reader has a union of it.
A message that does not decode (cut short, not UTF-8, a union index or boolean byte Avro does not define, a varint
beyond 64 bits, a count larger than the message) raises ``SchemaEncodingError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.avro.coder import INT32_MAX, INT32_MIN, GeneratedSource, normal_schema
from schemas.errors import SchemaEncodingError

# --- decoding --------------------------------------------------------------------------------------------------

_PROMOTIONS = {("int", "long"): "", ("int", "float"): "float", ("int", "double"): "float",
               ("long", "float"): "float", ("long", "double"): "float", ("float", "double"): "",
               ("string", "bytes"): "encode", ("bytes", "string"): "decode"}


def _resolves(writer: Any, reader: Any) -> bool:
    if writer == reader or (isinstance(writer, str) and isinstance(reader, str) and (writer, reader) in _PROMOTIONS):
        return True
    return (isinstance(writer, tuple) and isinstance(reader, tuple) and writer[0] == reader[0]
            and writer[0] in ("array", "map", "record"))


def _read_length(src: GeneratedSource, target: str, indent: int, path: str) -> None:
    src.add(indent, "byte = message[position]", path)
    src.add(indent, f"if byte < 0x80: {target} = (byte >> 1) ^ -(byte & 1); position += 1", path)
    src.add(indent, f"else: {target}, position = read_varint(message, position)", path)


def _read(src: GeneratedSource, writer: Any, reader: Any, target: str, indent: int, path: str, depth: int) -> None:
    """Statements reading a value written as ``writer`` into the local ``target``, resolved to ``reader``."""
    add = src.add
    if isinstance(reader, tuple) and reader[0] == "union" and not (isinstance(writer, tuple) and writer[0] == "union"):
        reader = next((branch for branch in reader[1] if branch == writer), None) or next(
            (branch for branch in reader[1] if _resolves(writer, branch)), None)
        if reader is None:
            raise SchemaEncodingError(f"{path}: a writer's {writer} cannot be read as the reader's union")
    if isinstance(writer, tuple) and writer[0] == "union":
        _read_length(src, "branch", indent, path)
        for number, branch in enumerate(writer[1]):
            add(indent, f"{'if' if number == 0 else 'elif'} branch == {number}:", path)
            if (isinstance(reader, tuple) and reader[0] == "union") or _resolves(branch, reader):
                _read(src, branch, reader, target, indent + 1, path, depth)
            else:
                add(indent + 1, f"raise ValueError('a writer branch {branch} the reader cannot take')", path)
        add(indent, "else: raise ValueError('a union branch index the schema does not have')", path)
        return
    if not _resolves(writer, reader):
        raise SchemaEncodingError(f"{path}: a writer's {writer} cannot be read as the reader's {reader}")
    if writer in ("long", "int"):
        _read_length(src, target, indent, path)
        if writer == "int":
            add(indent, f"if not {INT32_MIN} <= {target} <= {INT32_MAX}: raise ValueError('not a 32-bit int')",
                path)
    elif writer in ("string", "bytes"):
        _read_length(src, "size", indent, path)
        add(indent, "end = position + size", path)
        add(indent, "if size < 0 or end > length: raise IndexError", path)
        add(indent, f"{target} = message[position:end]{'.decode()' if writer == 'string' else ''}", path)
        add(indent, "position = end", path)
    elif writer in ("double", "float"):
        add(indent, f"{target} = unpack_{writer}(message, position)[0]", path)
        add(indent, f"position += {8 if writer == 'double' else 4}", path)
    elif writer == "boolean":
        add(indent, "byte = message[position]", path)
        add(indent, "if byte > 1: raise ValueError('a boolean byte other than 0 and 1')", path)
        add(indent, f"{target} = byte == 1", path)
        add(indent, "position += 1", path)
    elif writer == "null":
        add(indent, f"{target} = None", path)
    elif writer[0] in ("array", "map"):
        item, items = f"t{depth + 1}", f"c{depth + 1}"
        add(indent, f"{items} = {'[]' if writer[0] == 'array' else '{}'}", path)
        add(indent, "while True:", path)
        _read_length(src, "count", indent + 1, path)
        add(indent + 1, "if count == 0: break", path)
        add(indent + 1, "if count < 0:", path)
        add(indent + 2, "count = -count", path)
        add(indent + 2, "size, position = read_varint(message, position)", path)  # the block's size in bytes
        add(indent + 1, "if count > length: raise IndexError", path)
        add(indent + 1, "for _ in range(count):", path)
        if writer[0] == "array":
            _read(src, writer[1], reader[1], item, indent + 2, f"{path}[]", depth + 1)
            add(indent + 2, f"{items}.append({item})", path)
        else:
            _read(src, "string", "string", f"k{depth + 1}", indent + 2, f"{path}{{}}", depth + 1)
            _read(src, writer[1], reader[1], item, indent + 2, f"{path}{{}}", depth + 1)
            add(indent + 2, f"{items}[k{depth + 1}] = {item}", path)
        add(indent, f"{target} = {items}", path)
    elif writer[0] == "record":
        _read_fields(src, writer[2], reader[2], target, indent, f"{path}." if path else "", depth)
    conversion = _PROMOTIONS.get((writer, reader), "") if isinstance(writer, str) and isinstance(reader, str) else ""
    if conversion:
        add(indent, f"{target} = {target}.{conversion}()" if conversion in ("encode", "decode")
            else f"{target} = float({target})", path)


def _read_fields(src: GeneratedSource, writer: list[Any], reader: list[Any], target: str, indent: int, prefix: str,
                 depth: int) -> None:
    """Statements reading a record written with the ``writer`` fields into a dict of the ``reader`` fields."""
    record, value = f"r{depth}", f"t{depth + 1}"
    src.add(indent, f"{record} = {{}}")
    wanted = {field[0]: field for field in reader}
    for name, kind, *_ in writer:
        reader_field = wanted.get(name)
        _read(src, kind, reader_field[1] if reader_field else kind, value, indent, prefix + name, depth + 1)
        if reader_field is not None:
            src.add(indent, f"{record}[{name!r}] = {value}")
    written = {field[0] for field in writer}
    for name, _, has_default, default in reader:
        if name in written:
            continue
        if not has_default:
            raise SchemaEncodingError(f"{prefix}{name}: the writer has no such field and the reader no default")
        literal = src.constant(default)
        mutable = isinstance(default, (dict, list))
        src.add(indent, f"{record}[{name!r}] = {f'deepcopy({literal})' if mutable else literal}")
    if target != record:
        src.add(indent, f"{target} = {record}")


def compile_decoder(writer_schema: Any, reader_schema: Any = None) -> Callable[[bytes, int], dict[str, Any]]:
    """``decode(message, start) -> record dict`` of a body written with ``writer_schema``, resolved to
    ``reader_schema`` (the writer's own when None)."""
    writer = normal_schema(writer_schema, {})
    reader = writer if reader_schema is None else normal_schema(reader_schema, {})
    if not isinstance(writer, tuple) or writer[0] != "record" or not isinstance(reader, tuple):
        raise SchemaEncodingError("the compiled coder reads records")
    src = GeneratedSource(writer[1])
    src.add(0, "def decode(message, position):")

    def body() -> None:
        src.add(2, "length = len(message)")
        _read_fields(src, writer[2], reader[2], "r0", 2, "", 0)
        src.add(2, "return r0")
    src.guarded(1, writer[1], "decode", body)
    return src.build("decode")
