"""Generate the Avro schemas of the Kafka records from their dataclasses (the single field list).

``python -m schemas.avro.generate`` prints them; ``--write`` stores them as the newest catalog version when they
changed (a new ``vN.avsc``), after which the evolution test checks the new version against the previous one.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from schemas.records import LearningFact, LearningFactBlock, RawArchiveBlock, RawArchiveRow, RawEvent, RawEventBatch

NAMESPACE = "org.caliperpipeline"
CATALOG_DIR = Path(__file__).parent / "catalog"
RECORDS: dict[str, type] = {"learning_fact": LearningFact, "raw_event": RawEvent, "raw_event_batch": RawEventBatch,
                             "raw_archive_row": RawArchiveRow,
                             "learning_fact_block": LearningFactBlock, "raw_archive_block": RawArchiveBlock}

_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", float: "double", bool: "boolean", bytes: "bytes"}


def _avro_type(annotation: Any) -> Any:
    if annotation in _PRIMITIVES:
        return _PRIMITIVES[annotation]
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):  # a record inside a record
        return avro_schema_for(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _avro_type(item)}
    if origin is dict:
        key, value = typing.get_args(annotation)
        if key is str:
            return {"type": "map", "values": _avro_type(value)}
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return ["null", _avro_type(members[0])]
    raise TypeError(f"no Avro mapping for {annotation!r}")


def avro_schema_for(record_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(record_class)
    avro_fields = []
    for field in dataclasses.fields(record_class):
        entry: dict[str, Any] = {"name": field.name, "type": _avro_type(hints[field.name])}
        if field.default is not dataclasses.MISSING:
            entry["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            entry["default"] = field.default_factory()
        avro_fields.append(entry)
    return {
        "type": "record",
        "name": record_class.__name__,
        "namespace": NAMESPACE,
        "doc": (record_class.__doc__ or "").strip().splitlines()[0],
        "fields": avro_fields,
    }


def catalog_versions(name: str) -> list[tuple[int, dict[str, Any]]]:
    """Every released version of one record's schema, oldest first."""
    folder = CATALOG_DIR / name
    found = [(int(p.stem[1:]), json.loads(p.read_text())) for p in folder.glob("v*.avsc")]
    return sorted(found, key=lambda pair: pair[0])


def write_new_versions() -> list[Path]:
    written = []
    for name, record_class in RECORDS.items():
        current = avro_schema_for(record_class)
        versions = catalog_versions(name)
        if versions and versions[-1][1] == current:
            continue
        number = versions[-1][0] + 1 if versions else 1
        path = CATALOG_DIR / name / f"v{number}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--write" in args:
        for path in write_new_versions():
            print(f"wrote {path}")
        return 0
    print(json.dumps({name: avro_schema_for(cls) for name, cls in RECORDS.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
