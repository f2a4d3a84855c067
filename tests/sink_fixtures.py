"""Shared helpers of the sink's tests: the real ClickHouse engine (embedded chDB, and a server too where one is
available), facts to insert, and inserting them the way the loader does.

chDB hosts one engine (one data path) per process, and opening it and applying the migrations cost more than most
tests that use it. So a test session has one engine (``SharedEngine``, the ``chdb_engine`` fixture; each
pytest-xdist worker has its own) whose template database holds the migrated schema, built once; each test gets a
``learning`` database of its own, copied from the template (``SharedEngine.fresh_database``: every database the
previous tests created is dropped first; a copy the previous test left unchanged is kept, as copying it again
would give the same). The ``target`` fixture (tests/conftest.py) is such a database; a module whose tests read the
same rows overrides ``engine_seed`` with the function inserting them, and a copy seeded by it is kept for the next
test with that seed when the previous one only read: the rows load once, not once per test. No test sees another's
rows. The database keeps the name ``learning``, the sink's default, which the tests' SQL names. Tests that open
chDB on a data path of their own still can: before such a test the session engine is released (tests/conftest.py),
and reopened for the next test that asks for it."""

from __future__ import annotations

import contextlib
import functools
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from schemas.kafka import KafkaSettings
from schemas.records import LearningFact, fact_id_for
from sinks.clickhouse import ClickHouse, connect
from sinks.errors import ClickHouseQueryError
from sinks.http import SinkProcess, build_app
from sinks.loader import SinkLoader, default_targets
from sinks.migrations import Layout, apply_migrations
from sinks.queries import AnalystQueries
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.tables import FACT_INPUT_TABLE, fact_records, facts_to_arrow
from sinks.targets import Target
from sinks.writer import INSERT_SETTINGS

DAY_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z
TEMPLATE_DATABASE = "caliper_test_template"
ENGINE_DATABASES = ("system", "default", "INFORMATION_SCHEMA", "information_schema")  # the engine's own
Seed = Callable[[ClickHouse], None]  # inserts the rows a module's tests read, into a fresh database


class SharedEngine:
    """The session's embedded engine: a template database migrated once, and fresh databases copied from it.

    The engine lives while one of its clients is open: ``open`` keeps one (the keeper) between tests, ``release``
    closes it so that a test may open chDB on another data path (once its own clients are closed too)."""

    def __init__(self, data_path: Path) -> None:
        self.data_path = data_path
        self._keeper: ClickHouse | None = None
        self._copy: list[str] = []  # the template's CREATE statements, in an order that creates them all
        self.in_use: ClickHouseSettings | None = None  # the database of the running test, if it has one
        # the last copy, as it was made: its database, its seed function and its fingerprint
        self._pristine: tuple[str, Seed | None, tuple[typing.Any, ...]] | None = None

    def settings(self, database: str) -> ClickHouseSettings:
        return ClickHouseSettings(data_path=self.data_path, database=database)

    def open(self) -> ClickHouse:
        if self._keeper is None:
            self._keeper = connect(self.settings(TEMPLATE_DATABASE), create_database=True)
            if not self._copy:
                apply_migrations(self._keeper, Layout(TEMPLATE_DATABASE))
                self._copy = self._creation_order()
        return self._keeper

    def _creation_order(self) -> list[str]:
        """The template's CREATE statements, tables before the views that read or fill them (a view that reads
        another view is created once that one exists)."""
        assert self._keeper is not None
        _, rows = self._keeper.query_rows(
            "SELECT name, engine LIKE '%View', create_table_query FROM system.tables "
            "WHERE database = {db:String} ORDER BY name", {"db": TEMPLATE_DATABASE})
        ordered = [str(sql) for _, is_view, sql in rows if not is_view]
        views = [(str(name), str(sql)) for name, is_view, sql in rows if is_view]
        probe = f"{TEMPLATE_DATABASE}_order"
        self._keeper.command(f"DROP DATABASE IF EXISTS {probe} SYNC")
        self._keeper.command(f"CREATE DATABASE {probe}")
        for sql in ordered:
            self._keeper.command(_in_database(sql, probe))
        while views:
            waiting = []
            for name, sql in views:
                try:
                    self._keeper.command(_in_database(sql, probe))
                    ordered.append(sql)
                except ClickHouseQueryError:
                    waiting.append((name, sql))
            if len(waiting) == len(views):
                raise RuntimeError(f"cannot copy the views {[name for name, _ in waiting]} of the template")
            views = waiting
        self._keeper.command(f"DROP DATABASE {probe} SYNC")
        return ordered

    def fresh_database(self, database: str = "learning", seed: Seed | None = None) -> ClickHouseSettings:
        """``database`` as a copy of the template (the migrated schema, ``schema_migrations`` included, no rows),
        with the rows ``seed`` inserts (through a client on it), and no other database a previous test created
        (such as a second one it migrated itself).

        The copy the previous test got is kept when it was seeded by the same ``seed`` and that test changed
        nothing (its tables, their files on disk and the list of databases are as they were once seeded: a test
        that only read); else every database of the previous tests is dropped and the template copied anew. So
        the tests of a module that read the rows one seed function inserts load them once, wherever they run."""
        keeper = self.open()
        if self._pristine is not None and self._pristine == (database, seed, self._fingerprint(database)):
            return self.settings(database)
        self._pristine = None
        self._drop_test_databases()
        keeper.command(f"CREATE DATABASE {database}")
        for sql in self._copy:
            keeper.command(_in_database(sql, database))
        keeper.command(f"INSERT INTO {database}.schema_migrations SELECT * FROM {TEMPLATE_DATABASE}.schema_migrations")
        if seed is not None:
            seeding = connect(self.settings(database))
            try:
                seed(seeding)
            finally:
                seeding.close()
        self._pristine = (database, seed, self._fingerprint(database))
        return self.settings(database)

    def empty_database(self, database: str = "learning") -> ClickHouseSettings:
        """``database`` created empty (no migration applied), and no other database a previous test created."""
        self.open()
        self._pristine = None
        self._drop_test_databases()
        return self.settings(database)

    def _drop_test_databases(self) -> None:
        keeper = self.open()
        _, rows = keeper.query_rows("SELECT name FROM system.databases WHERE name NOT IN {keep:Array(String)}",
                                    {"keep": [*ENGINE_DATABASES, TEMPLATE_DATABASE]})
        for (name,) in rows:
            keeper.command(f"DROP DATABASE `{name}` SYNC")
        _, rows = keeper.query_rows("SELECT name FROM system.tables WHERE database = 'default'")
        for (name,) in rows:  # the engine's default database stays, but not what a test created in it
            keeper.command(f"DROP TABLE default.`{name}` SYNC")

    def _fingerprint(self, database: str) -> tuple[typing.Any, ...]:
        """What a test may change: the databases and their tables, the definitions and parts of the tables of
        ``database``, and the files of their data (rows, deduplication logs, mutations)."""
        keeper = self.open()
        _, other_tables = keeper.query_rows(
            "SELECT database, name FROM system.tables WHERE database NOT IN {other:Array(String)} "
            "ORDER BY database, name", {"other": ["system", "INFORMATION_SCHEMA", "information_schema", database]})
        _, created = keeper.query_rows("SELECT name FROM system.databases ORDER BY name")
        _, tables = keeper.query_rows("SELECT name, create_table_query, data_paths FROM system.tables "
                                      "WHERE database = {db:String} ORDER BY name", {"db": database})
        _, parts = keeper.query_rows("SELECT table, name, active FROM system.parts WHERE database = {db:String} "
                                     "ORDER BY table, name", {"db": database})
        files = sorted((str(found), found.stat().st_size) for _, _, paths in tables for path in paths
                       for found in Path(path).rglob("*") if found.is_file())
        return (tuple(created), tuple(other_tables), tuple((name, sql) for name, sql, _ in tables), tuple(parts),
                tuple(files))

    def release(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None


def _in_database(create_sql: str, database: str) -> str:
    return create_sql.replace(f"{TEMPLATE_DATABASE}.", f"{database}.")


def engine_settings(tmp_path: Path, server: dict[str, typing.Any] | None = None,
                    database: str = "learning") -> ClickHouseSettings:
    """Settings of the engine the running test loads: the session engine while the test holds a database of it
    (``open_engine``), else chDB in the test's own directory, or the server."""
    if server is None:
        if SESSION_ENGINE.current is not None and SESSION_ENGINE.current.in_use is not None:
            return SESSION_ENGINE.current.settings(database)
        return ClickHouseSettings(data_path=tmp_path / "chdb", database=database)
    return ClickHouseSettings(host=server["host"], port=server["port"], username=server["username"],
                              password=SecretStr(server["password"]), database=database)


class _SessionEngine:
    current: SharedEngine | None = None  # set by the chdb_engine fixture (tests/conftest.py)


SESSION_ENGINE = _SessionEngine()


def open_engine(request: pytest.FixtureRequest, tmp_path: Path,
                clickhouse_server: dict[str, typing.Any] | None, seed: Seed | None = None) -> Iterator[ClickHouse]:
    """The real ClickHouse engine with the migrations applied, in a ``learning`` database of the test's own,
    holding the rows ``seed`` inserts: embedded chDB always (a fresh copy of the session engine's template, kept
    for the next test with the same seed if this one only read); a ClickHouse server too where one is available
    (testcontainers with a Docker engine, or CALIPER_TEST_CLICKHOUSE_HOST: its ``learning`` database is dropped
    and recreated for every test, so point it at a test server only)."""
    if request.param == "server":
        if clickhouse_server is None:
            pytest.skip("no ClickHouse server here: no Docker engine and CALIPER_TEST_CLICKHOUSE_HOST unset")
        settings = engine_settings(tmp_path, clickhouse_server)
        clickhouse = connect(settings.model_copy(update={"database": "default"}))
        clickhouse.command("DROP DATABASE IF EXISTS learning SYNC")
        clickhouse.close()
        clickhouse = connect(settings, create_database=True)
        apply_migrations(clickhouse, Layout("learning"))
        if seed is not None:
            seed(clickhouse)
        try:
            yield clickhouse
        finally:
            clickhouse.close()
        return
    yield from learning_database(request.getfixturevalue("chdb_engine"), seed)


def learning_database(shared: SharedEngine, seed: Seed | None = None) -> Iterator[ClickHouse]:
    """A client on a fresh ``learning`` database of the session engine holding the rows ``seed`` inserts
    (``engine_settings`` names it meanwhile)."""
    shared.in_use = shared.fresh_database("learning", seed)
    clickhouse = connect(shared.in_use)
    try:
        yield clickhouse
    finally:
        clickhouse.close()
        shared.in_use = None


def make_fact(number: int, **changes: typing.Any) -> LearningFact:
    tenant = changes.pop("tenant", "school-a")
    event_id = changes.pop("event_id", f"event-{number}")
    fact = LearningFact(
        fact_id=fact_id_for(tenant, event_id), fact_index=0, content_hash=f"hash-{number}", tenant=tenant,
        client_id="client", source="hub", event_id=event_id, event_type="GradeEvent", profile="GradingProfile",
        action="Graded", event_time_ms=DAY_MS + number * 1000, send_time_ms=DAY_MS + number * 1000,
        received_time_ms=DAY_MS + number * 1000 + 5, student_id="student-1", course_id="course-1",
        subject_name="Math")
    return replace(fact, **changes)


def insert(clickhouse: ClickHouse, facts: list[LearningFact], token: str, table: str = FACT_INPUT_TABLE) -> None:
    """Insert facts as one Arrow block through the loader's entry table, with a deduplication token."""
    clickhouse.insert_arrow(table, facts_to_arrow(fact_records(facts)),
                            {**INSERT_SETTINGS, "insert_deduplication_token": token})


def scalar(clickhouse: ClickHouse, sql: str) -> typing.Any:
    return clickhouse.scalar(sql)


UNREACHABLE_KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1")  # the test sinks' loaders never start


@functools.cache
def unstarted_loader_targets() -> dict[str, Target]:
    """The default targets of the test sinks' loaders, built once per process: their codecs compile the catalog's
    schemas, which costs more than the rest of a test sink."""
    return default_targets(UNREACHABLE_KAFKA)


@contextlib.asynccontextmanager
async def sink_test_client(target: ClickHouse, tmp_path: Path,
                           settings: SinkSettings) -> AsyncIterator[TestClient[typing.Any, typing.Any]]:
    """The sink's HTTP app over ``target`` (its loader never started) with ``settings``' tokens and limits, and a
    client of it."""
    clickhouse = engine_settings(tmp_path)
    loader = SinkLoader(settings, UNREACHABLE_KAFKA, target, targets=dict(unstarted_loader_targets()))
    queries = AnalystQueries(clickhouse, settings.queries)
    probe = connect(clickhouse)
    app = build_app(SinkProcess(settings, clickhouse, target, loader, queries, probe, b"student-key-secret"))
    try:
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        queries.close()
        probe.close()
