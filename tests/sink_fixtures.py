"""Shared helpers of the sink's tests: the real ClickHouse engine (embedded chDB in a temporary directory, and a
server too where one is available), facts to insert, and inserting them the way the loader does."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from schemas.records import LearningFact, fact_id_for
from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import Layout, apply_migrations
from sinks.settings import ClickHouseSettings
from sinks.tables import FACT_INPUT_TABLE, fact_records, facts_to_arrow
from sinks.writer import INSERT_SETTINGS

DAY_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z


def engine_settings(tmp_path: Path, server: dict[str, typing.Any] | None = None,
                    database: str = "learning") -> ClickHouseSettings:
    if server is None:
        return ClickHouseSettings(data_path=tmp_path / "chdb", database=database)
    return ClickHouseSettings(host=server["host"], port=server["port"], username=server["username"],
                              password=SecretStr(server["password"]), database=database)


def open_engine(request: pytest.FixtureRequest, tmp_path: Path,
                clickhouse_server: dict[str, typing.Any] | None) -> Iterator[ClickHouse]:
    """The real ClickHouse engine with the migrations applied: embedded chDB always; a ClickHouse server too
    where one is available (testcontainers with a Docker engine, or CALIPER_TEST_CLICKHOUSE_HOST: its
    ``learning`` database is dropped and recreated for every test, so point it at a test server only)."""
    if request.param == "server":
        if clickhouse_server is None:
            pytest.skip("no ClickHouse server here: no Docker engine and CALIPER_TEST_CLICKHOUSE_HOST unset")
        settings = engine_settings(tmp_path, clickhouse_server)
        clickhouse = connect(settings.model_copy(update={"database": "default"}))
        clickhouse.command("DROP DATABASE IF EXISTS learning SYNC")
        clickhouse.close()
    else:
        settings = engine_settings(tmp_path)
    clickhouse = connect(settings, create_database=True)
    apply_migrations(clickhouse, Layout("learning"))
    try:
        yield clickhouse
    finally:
        clickhouse.close()


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
