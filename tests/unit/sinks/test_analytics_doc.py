"""Every query of docs/analytics.md gives the answer the page shows, on the example data set whose numbers are
computed by hand in tests/docs_dataset.py (the real engine, through the analysts' SQL policy and limits); every
query the README shows is one of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_dataset import load
from sink_fixtures import SharedEngine

from sinks.clickhouse import connect
from sinks.queries import AnalystQueries
from sinks.settings import QueryLimits

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "analytics.md").read_text()
EXAMPLES = re.findall(r"```sql\n(.*?)```\s*```tsv\n(.*?)```", DOC, re.S)
README_QUERIES = re.findall(r'caliper-pipeline sql "([^"]+)"', (ROOT / "README.md").read_text())


def _words(sql: str) -> str:
    return " ".join(sql.replace(";", " ").split())


def test_the_page_has_queries_each_with_its_answer() -> None:
    assert len(EXAMPLES) >= 8
    assert DOC.count("```sql") == len(EXAMPLES), "every query of the page shows its answer"


def test_the_readme_shows_only_queries_the_page_answers() -> None:
    documented = {_words(sql) for sql, _ in EXAMPLES}
    shown = [q for q in README_QUERIES if q.strip().upper().startswith(("SELECT", "WITH")) and "..." not in q]
    assert shown, "the README shows a query"
    for query in shown:
        assert _words(query) in documented, f"README query not answered in docs/analytics.md: {query}"


@pytest.fixture(scope="module")
def analyst(chdb_engine: SharedEngine) -> Iterator[AnalystQueries]:
    settings = chdb_engine.fresh_database("learning")
    owner = connect(settings)
    load(owner)
    queries = AnalystQueries(settings, QueryLimits())
    yield queries
    queries.close()
    owner.close()


@pytest.mark.parametrize(("query", "answer"), EXAMPLES, ids=[f"query-{i}" for i in range(len(EXAMPLES))])
def test_documented_query_gives_the_documented_answer(query: str, answer: str, analyst: AnalystQueries) -> None:
    result = analyst.run_blocking(query, "TabSeparatedWithNames").decode()
    assert result.rstrip("\n") == answer.rstrip("\n")


def test_summing_every_row_under_final_would_count_a_corrected_event_twice(analyst: AnalystQueries) -> None:
    """The README's query summed learning_facts FINAL: 115 instead of 75."""
    naive = analyst.run_blocking("SELECT sum(xp_earned) FROM learning.learning_facts FINAL "
                                 "WHERE tenant = 'school-a'", "TabSeparated")
    current = analyst.run_blocking("SELECT sum(xp_earned) FROM learning.current_facts "
                                   "WHERE tenant = 'school-a'", "TabSeparated")
    assert (naive.strip(), current.strip()) == (b"115", b"75")
