"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_harness import LocalPipeline, start_pipeline

from sinks.clickhouse import ClickHouse, connect
from sinks.migrations import Layout, apply_migrations
from sinks.settings import ClickHouseSettings


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[LocalPipeline]:
    """A whole pipeline (gateway, streams worker, sink) of the module's own, on the session's broker; a module
    that needs another one defines its own ``pipeline``."""
    started = start_pipeline(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
                             kafka_bootstrap=kafka_bootstrap)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ClickHouse]:
    """A migrated embedded engine of the test's own, for the loader tests on the real broker."""
    engine = connect(ClickHouseSettings(data_path=tmp_path / "chdb"), create_database=True)
    apply_migrations(engine, Layout("learning"))
    yield engine
    engine.close()
