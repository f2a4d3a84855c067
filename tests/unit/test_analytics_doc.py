"""Every query of docs/analytics.md runs on the real engine (chDB with the migrations applied)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.errors import QueryRejectedError
from sinks.migrations import Layout, apply_migrations
from sinks.query_client import check_read_only
from sinks.targets import EmbeddedClickHouse

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
QUERIES = [q.strip().rstrip(";") for q in re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)]


def test_the_page_has_queries() -> None:
    assert len(QUERIES) >= 5


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedClickHouse:
    target = EmbeddedClickHouse(tmp_path_factory.mktemp("chdb") / "db", database="learning")
    apply_migrations(target, Layout("learning"))
    return target


@pytest.mark.parametrize("query", QUERIES, ids=[f"query-{i}" for i in range(len(QUERIES))])
def test_documented_query_runs(query: str, engine: EmbeddedClickHouse) -> None:
    try:
        check_read_only(query)
    except QueryRejectedError:
        pytest.skip("not a read statement (shown for operators, e.g. erasure)")
    engine.query_rows(query)
