"""The SQL that lets ClickHouse decode a container of facts: which Avro fields it reads and how each fills a column.

For one writer schema, every fact column (``LearningFact``'s fields, in order) is filled the way Avro schema
resolution fills the reader's field in Python (``schemas.codec``):

- the writer has the field (by name, or by one of the reader field's aliases): its value; a ``*_ms`` long
  becomes ``fromUnixTimestamp64Milli(x, 'UTC')`` for its ``DateTime64(3, 'UTC')`` column (a nullable long
  stays nullable);
- the writer lacks it: the reader schema's default, as a literal;
- no default, or a type this mapping does not know: ``AvroMappingError``, and the batch takes the Python path.

Two statements read the container: ``file(path, 'Avro', structure)`` on embedded chDB, and
``input(structure) FORMAT Avro`` with the container as the request body on a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.records import LEARNING_FACT_FIELDS
from sinks.errors import AvroMappingError
from sinks.fact_rows import FACT_TABLE, column_for
from sinks.targets import quote_literal

_CLICKHOUSE_TYPES = {
    "string": "String", "bytes": "String", "long": "Int64", "int": "Int32", "double": "Float64",
    "float": "Float32", "boolean": "Bool",
}


def clickhouse_type(avro_type: Any) -> str:
    """The ClickHouse type ClickHouse's Avro reader fills from an Avro field type (primitives, optional ones)."""
    if isinstance(avro_type, dict):
        return clickhouse_type(avro_type.get("type"))
    if isinstance(avro_type, list):
        members = [m for m in avro_type if m != "null"]
        if len(members) == 1 and len(avro_type) == 2:
            return f"Nullable({clickhouse_type(members[0])})"
        raise AvroMappingError(f"no ClickHouse mapping for the Avro union {avro_type!r}")
    if isinstance(avro_type, str) and avro_type in _CLICKHOUSE_TYPES:
        return _CLICKHOUSE_TYPES[avro_type]
    raise AvroMappingError(f"no ClickHouse mapping for the Avro type {avro_type!r}")


def sql_literal(value: Any) -> str:
    """An Avro default as a ClickHouse literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return quote_literal(value)
    raise AvroMappingError(f"no ClickHouse literal for the default {value!r}")


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _column_expression(field_name: str, value: str) -> str:
    if field_name.endswith("_ms"):
        return f"fromUnixTimestamp64Milli({value}, 'UTC')"
    return value


@dataclass(frozen=True, slots=True)
class AvroFactInsert:
    """How the rows of one writer schema's container fill the fact table."""

    database: str
    columns: tuple[str, ...]  # fact table columns, LearningFact's order
    expressions: tuple[str, ...]  # one per column, over the Avro fields
    structure: str  # "`field` Type, ..." of the writer fields the expressions read

    @property
    def _head(self) -> str:
        columns = ", ".join(_identifier(c) for c in self.columns)
        return f"INSERT INTO {self.database}.{FACT_TABLE} ({columns})"

    @property
    def _select(self) -> str:
        return "SELECT " + ", ".join(self.expressions)

    def file_statement(self, path: str, dedup_token: str) -> str:
        """chDB: read the container from a file."""
        return (f"{self._head} SETTINGS insert_deduplication_token={quote_literal(dedup_token)} "
                f"{self._select} FROM file({quote_literal(path)}, 'Avro', {quote_literal(self.structure)})")

    def input_statement(self) -> str:
        """A server: read the container from the request body (the token goes with the request's settings)."""
        return f"{self._head} {self._select} FROM input({quote_literal(self.structure)}) FORMAT Avro"


def fact_insert_for(writer_schema: Any, reader_schema: Any, database: str) -> AvroFactInsert:
    """Map a writer schema's fields onto the fact columns; raises ``AvroMappingError`` where it cannot."""
    if not isinstance(writer_schema, dict) or not isinstance(reader_schema, dict):
        raise AvroMappingError("writer and reader schemas must be records")
    writer_fields = {field["name"]: field for field in writer_schema.get("fields", [])}
    reader_fields = {field["name"]: field for field in reader_schema.get("fields", [])}
    structure: list[str] = []
    expressions: list[str] = []
    for name in LEARNING_FACT_FIELDS:
        reader_field = reader_fields.get(name)
        if reader_field is None:
            raise AvroMappingError(f"the reader schema has no field {name}")
        candidates = [name, *reader_field.get("aliases", ())]
        writer_name = next((n for n in candidates if n in writer_fields), None)
        if writer_name is not None:
            structure.append(f"{_identifier(writer_name)} {clickhouse_type(writer_fields[writer_name]['type'])}")
            expressions.append(_column_expression(name, _identifier(writer_name)))
        elif "default" in reader_field:
            default = sql_literal(reader_field["default"])
            if default != "NULL" and name.endswith("_ms"):
                default = _column_expression(name, f"toInt64({default})")
            expressions.append(default)
        else:
            raise AvroMappingError(f"the writer schema lacks {name}, which has no default")
    return AvroFactInsert(database, tuple(column_for(n) for n in LEARNING_FACT_FIELDS), tuple(expressions),
                          ", ".join(structure))
