"""Versioned DDL: ``sinks/migrations/NNN_name.sql`` applied in order at start, each once, recorded in
``schema_migrations`` with its checksum (an applied file that changed is an error, not a silent re-run).

The files are templates, rendered for one of two layouts:

- single node (``ClickHouseSettings.cluster`` empty): ``*MergeTree`` tables with
  ``non_replicated_deduplication_window``;
- cluster: ``Replicated*MergeTree`` tables named ``<name>_local`` created ``ON CLUSTER``, plus, for every
  ``-- distributed: <table> <sharding expression>`` line, a ``Distributed`` table ``<table>`` over them.

Placeholders: ``{db}``, ``{local}``, ``{on_cluster}``, ``{replicated}``, ``{dedup_window_setting}``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sinks.clickhouse import ClickHouse
from sinks.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_DISTRIBUTED = re.compile(r"^--\s*distributed:\s*(\w+)\s+(.+?)\s*$")


@dataclass(frozen=True, slots=True)
class Layout:
    """Single node (``cluster`` empty) or cluster layout of the sink's tables in one database."""

    database: str
    cluster: str = ""

    def local_table(self, table: str) -> str:
        """The table that stores the rows (what DELETE and OPTIMIZE act on)."""
        return f"{self.database}.{table}_local" if self.cluster else f"{self.database}.{table}"

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER {self.cluster}" if self.cluster else ""

    def placeholders(self) -> dict[str, str]:
        return {
            "db": self.database,
            "local": "_local" if self.cluster else "",
            "on_cluster": self.on_cluster,
            "replicated": "Replicated" if self.cluster else "",
            "dedup_window_setting": (
                "replicated_deduplication_window" if self.cluster else "non_replicated_deduplication_window"
            ),
        }


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order; two files with one version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def render(migration_text: str, layout: Layout) -> list[str]:
    """The statements of one migration file for one layout."""
    values = layout.placeholders()
    statements: list[str] = []
    current: list[str] = []
    for line in migration_text.splitlines():
        directive = _DISTRIBUTED.match(line)
        if directive is not None:
            if layout.cluster:
                table, sharding = directive.groups()
                statements.append(
                    f"CREATE TABLE IF NOT EXISTS {layout.database}.{table} {layout.on_cluster} "
                    f"AS {layout.database}.{table}_local "
                    f"ENGINE = Distributed({layout.cluster}, {layout.database}, {table}_local, {sharding})"
                )
            continue
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append(_fill("\n".join(current).strip().rstrip(";"), values))
            current = []
    if "".join(current).strip():
        statements.append(_fill("\n".join(current).strip(), values))
    return statements


def _fill(statement: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), statement)


def _bootstrap(target: ClickHouse, layout: Layout) -> None:
    target.command(f"CREATE DATABASE IF NOT EXISTS {layout.database} {layout.on_cluster}")
    engine = "ReplicatedReplacingMergeTree(applied_at)" if layout.cluster else "ReplacingMergeTree(applied_at)"
    target.command(
        f"CREATE TABLE IF NOT EXISTS {layout.database}.schema_migrations {layout.on_cluster} "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC')) "
        f"ENGINE = {engine} ORDER BY version"
    )


def applied_migrations(target: ClickHouse, database: str) -> dict[int, str]:
    """Version -> checksum of the migrations recorded as applied."""
    _, rows = target.query_rows(f"SELECT version, checksum FROM {database}.schema_migrations FINAL")
    return {int(version): str(checksum) for version, checksum in rows}


def apply_migrations(target: ClickHouse, layout: Layout, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now (empty when up to date)."""
    _bootstrap(target, layout)
    done = applied_migrations(target, layout.database)
    applied_now = []
    for migration in discover(directory):
        recorded = done.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.path.name} changed after it was applied; add a new migration instead")
            continue
        for statement in render(migration.text, layout):
            target.command(statement)
        target.command(
            f"INSERT INTO {layout.database}.schema_migrations (version, name, checksum, applied_at) VALUES "
            "({version:UInt32}, {name:String}, {checksum:String}, now64(3))",
            {"version": migration.version, "name": migration.name, "checksum": migration.checksum})
        applied_now.append(migration.version)
    return applied_now
