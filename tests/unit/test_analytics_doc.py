"""Every query of docs/analytics.md passes the analysts' SQL policy and runs on the real engine (chDB with the
migrations applied), through the same read-only, limited connections the sink's SQL endpoint uses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse import connect
from sinks.errors import QueryRejectedError
from sinks.migrations import Layout, apply_migrations
from sinks.queries import AnalystQueries
from sinks.settings import ClickHouseSettings, QueryLimits

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
QUERIES = [q.strip().rstrip(";") for q in re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)]


def test_the_page_has_queries() -> None:
    assert len(QUERIES) >= 5


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalystQueries]:
    settings = ClickHouseSettings(data_path=tmp_path_factory.mktemp("chdb") / "db")
    owner = connect(settings, create_database=True)
    apply_migrations(owner, Layout("learning"))
    queries = AnalystQueries(settings, QueryLimits())
    yield queries
    queries.close()
    owner.close()


@pytest.mark.parametrize("query", QUERIES, ids=[f"query-{i}" for i in range(len(QUERIES))])
def test_documented_query_runs(query: str, analyst: AnalystQueries) -> None:
    if query.lstrip().upper().startswith(("ALTER", "DELETE", "INSERT")):
        pytest.skip("not a read statement (shown for operators, e.g. erasure)")
    try:
        analyst.run_blocking(query, "TabSeparated")
    except QueryRejectedError as error:
        pytest.fail(f"the documented query is refused by the analysts' SQL policy: {error}")
