"""The sink's analyst SQL on the real engine, at its boundaries: what each credential can read of every table and
view the migrations create, the places a table can hide in a statement, a failed query's rows never reaching the
next caller, and an answer bounded in bytes as it is written."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sink_fixtures import Seed, engine_settings, insert, make_fact, sink_test_client

from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseQueryError, QueryRejectedError
from sinks.queries import AnalystQueries
from sinks.settings import QueryLimits, SinkSettings
from sinks.tables import ANALYST_TABLES

ANALYST, ADMIN = "analyst-token-0123456789", "admin-token-0123456789"
EMAIL = "ana.souza@example.org"
Client = TestClient[typing.Any, typing.Any]


def seed_private_rows(target: ClickHouse) -> None:
    """One archived event and one failed event, each carrying an e-mail in clear, and one fact."""
    insert(target, [make_fact(1)], "seed")
    now_ms = int(time.time() * 1000)  # the archive keeps an event a year after it was received
    raw = {"tenant": "school-a", "client_id": "c", "source": "caliper", "event_id": "e1", "content_hash": "h",
           "event_type": "GradeEvent", "profile": "GradingProfile", "student_id": "s1", "student_keys": ["k1"],
           "actor_id": "s1", "sensor": "x", "event_time_ms": now_ms, "send_time_ms": now_ms,
           "received_time_ms": now_ms, "envelope_index": 0, "payload": json.dumps({"actor": {"email": EMAIL}})}
    target.insert_raw("raw_events_in", json.dumps(raw).encode(), "JSONEachRow")
    failed = {"tenant": "school-a", "stage": "streams", "reason": "r", "client_id": "c", "source": "caliper",
              "job_id": "j", "envelope_index": 0, "event_id": "e2", "topic": "t", "partition": 0, "offset": 1,
              "failed_time_ms": now_ms, "worker_version": "1", "student_keys": ["k1"],
              "payload": json.dumps({"email": EMAIL}), "original_base64": base64.b64encode(EMAIL.encode()).decode()}
    target.insert_raw("failed_events_in", json.dumps(failed).encode(), "JSONEachRow")


@pytest.fixture
def engine_seed(request: pytest.FixtureRequest) -> Seed | None:
    """The rows the tests of ``sink`` read, loaded once for those that only read; the others start from none."""
    return seed_private_rows if "sink" in request.fixturenames else None


@pytest.fixture
async def sink(target: ClickHouse, tmp_path: Path) -> AsyncIterator[Client]:
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), admin_token=SecretStr(ADMIN),
                            queries=QueryLimits(max_execution_seconds=20, max_result_bytes=64 * 1024))
    async with sink_test_client(target, tmp_path, settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sql(client: Client, token: str, statement: str, fmt: str = "tsv") -> tuple[int, bytes]:
    answer = await client.post("/sql", params={"format": fmt}, headers=bearer(token), data=statement)
    return answer.status, await answer.read()


# -- which credential reads which table ----------------------------------------------------------------------

async def test_each_table_and_view_is_read_by_exactly_the_credentials_allowed(sink: Client,
                                                                              target: ClickHouse) -> None:
    """Every table and view the migrations create, enumerated from the engine: an analyst statement reads
    exactly the allow-list (the loader views read as their target tables, the raw archive with e-mails in
    clear, were open); what is not on it is read by the admin endpoints only."""
    _, rows = target.query_rows("SELECT name FROM system.tables WHERE database = 'learning' ORDER BY name")
    everything = {str(row[0]) for row in rows}
    assert everything >= ANALYST_TABLES  # the allow-list names real tables
    assert {"raw_events_loader", "failed_events_loader", "raw_events", "failed_events", "sink_rejects"} <= everything
    for name in sorted(everything):
        readable = name in ANALYST_TABLES
        for token in (ANALYST, ADMIN):  # /sql applies one policy, whoever calls it
            for statement in (f"SELECT * FROM learning.{name} LIMIT 1", f"SELECT count() FROM {name}",
                              f"DESCRIBE TABLE learning.{name}"):
                status, body = await sql(sink, token, statement)
                assert status == (200 if readable else 400), (name, statement, status, body[:200])
                assert EMAIL.encode() not in body and b"YW5h" not in body, (name, statement)
    shown = await sql(sink, ANALYST, "SHOW TABLES")
    assert shown == (200, b"name\n" + b"".join(f"{name}\n".encode() for name in sorted(ANALYST_TABLES)))
    for statement in ("SELECT substring(payload, 1, 200) FROM learning.raw_events_loader",
                      "SELECT payload, original_base64 FROM learning.failed_events_loader",
                      "SELECT count() FROM learning_facts WHERE event_id IN (SELECT event_id FROM raw_events_loader)"):
        assert (await sql(sink, ANALYST, statement))[0] == 400, statement
    # the admin reads the archive and the failed events, with what was sent, through its own endpoints
    archive = await sink.post("/archive/raw-events", headers=bearer(ADMIN), json={"tenant": "school-a"})
    assert archive.status == 200 and EMAIL in await archive.text()
    failed = await sink.post("/admin/failed-events", headers=bearer(ADMIN), json={"tenant": "school-a"})
    assert failed.status == 200 and base64.b64encode(EMAIL.encode()).decode() in await failed.text()
    for path, body in (("/archive/raw-events", {"tenant": "school-a"}), ("/admin/failed-events", {})):
        assert (await sink.post(path, headers=bearer(ANALYST), json=body)).status == 401


# -- where a table can hide ------------------------------------------------------------------------------

@pytest.fixture
def queries(target: ClickHouse, tmp_path: Path) -> Iterator[AnalystQueries]:
    pool = AnalystQueries(engine_settings(tmp_path), QueryLimits(max_execution_seconds=20, max_concurrent=4))
    yield pool
    pool.close()


HIDDEN_TABLES = [
    "SELECT 0 IN system.one", "SELECT 0 GLOBAL IN system.one", "SELECT 0 NOT IN system.one",
    "SELECT 0 GLOBAL NOT IN system.one", "SELECT 0 IN `system`.`one`", "SELECT 'a' IN learning.raw_events_loader",
    "SELECT 'a' IN raw_events_loader", "SELECT 'a' IN failed_events", "SELECT 'a' IN sink_batches",
    "SELECT 0 IN (SELECT dummy FROM system.one)", "SELECT 0 GLOBAL IN (SELECT dummy FROM system.one)",
    "SELECT (SELECT count() FROM system.one)", "SELECT * FROM learning_facts AS f JOIN system.one AS o ON 1",
    "SELECT * FROM learning_facts AS f LEFT JOIN raw_events_loader AS r ON f.event_id = r.event_id",
    "WITH t AS (SELECT * FROM system.one) SELECT * FROM t",
    "WITH raw_events_loader AS (SELECT 1) SELECT * FROM raw_events_loader",  # refused: it names a private table
    "SELECT joinGet('learning.raw_events_loader', 'payload', 'e1')",
    "SELECT * FROM view(SELECT payload FROM raw_events_loader)", "SELECT * FROM learning.schema_migrations",
    "SELECT * FROM learning_facts_in", "DESCRIBE TABLE raw_events_loader", "DESC learning.failed_events_loader",
    "SHOW DATABASES", "SHOW SETTINGS LIKE '%'", "SHOW CLUSTERS", "SHOW MERGES", "SHOW DICTIONARIES",
    "SHOW FULL TABLES", "SHOW TEMPORARY TABLES", "SHOW TABLES LIKE 'raw%'", "SHOW FILESYSTEM CACHES",
    "SHOW PROCESSLIST", "SHOW ENGINES", "SHOW CREATE TABLE raw_events",
]


@pytest.mark.parametrize("statement", HIDDEN_TABLES)
def test_a_table_outside_the_allow_list_is_refused_wherever_it_appears(queries: AnalystQueries,
                                                                       statement: str) -> None:
    with pytest.raises(QueryRejectedError):
        queries.check(statement)


@pytest.mark.parametrize("statement", [
    "WITH ids AS (SELECT event_id FROM learning_facts) SELECT count() FROM current_facts WHERE event_id IN ids",
    "WITH x AS (SELECT 1 AS n) SELECT n FROM x", "SELECT 1 IN (1, 2)", "WITH [1, 2] AS s SELECT 1 IN s",
    "SELECT count() FROM current_facts WHERE tenant GLOBAL IN (SELECT tenant FROM learning.learning_facts)",
    "show tables", "SHOW /* the readable ones */ TABLES",
])
def test_names_of_the_statement_itself_and_plain_show_tables_pass(queries: AnalystQueries, statement: str) -> None:
    queries.run_blocking(statement, "TabSeparated")


# -- a failed query's rows never reach the next caller -------------------------------------------------------

FAILING = "SELECT toString(number) FROM numbers(300000) WHERE throwIf(number > 200000, 'boom') = 0"
NORMAL = [
    ("SELECT 1 AS one", "TabSeparatedWithNames"),
    ("SELECT number, toString(number) AS s FROM numbers(70000)", "CSVWithNames"),  # several blocks
    ("SELECT number FROM numbers(3)", "JSONEachRow"),
    ("SELECT number, 'x' AS s FROM numbers(5)", "JSON"),
]
_STATISTICS = re.compile(rb'"statistics":\n\t\{[^}]*\}')  # JSON's elapsed time differs from run to run


def _comparable(answer: bytes | bytearray) -> bytes:
    return _STATISTICS.sub(b'"statistics": {}', bytes(answer))


def test_a_failed_querys_rows_never_reach_the_next_caller(queries: AnalystQueries, target: ClickHouse) -> None:
    """A query that fails after writing rows left them in its chDB handle, and the pool gave the handle to the
    next caller: ``SELECT 1`` answered 839 KB of the failed query's rows. Several callers now interleave failing
    and normal queries (analyst statements and the read side's rows) on one pool; every answer is compared byte
    for byte with the engine's own answer to the same query on a fresh connection."""
    expected = {(sql_text, fmt): _comparable(target.query_formatted(sql_text, fmt)) for sql_text, fmt in NORMAL}
    wrong: list[str] = []
    failed: list[str] = []

    def caller(index: int) -> None:
        for round_ in range(6):
            try:
                if (index + round_) % 2:
                    queries.rows_blocking(FAILING, {})
                else:
                    queries.run_blocking(FAILING, "TabSeparated")
                wrong.append("the failing query answered")
            except ClickHouseQueryError:
                failed.append("rows" if (index + round_) % 2 else "analyst")
            for sql_text, fmt in NORMAL:
                answer = _comparable(queries.run_blocking(sql_text, fmt))
                if answer != expected[(sql_text, fmt)]:
                    wrong.append(f"{sql_text} {fmt}: {len(answer)} bytes, {answer[:60]!r}")
            _, rows = queries.rows_blocking("SELECT number FROM numbers(4)", {})
            if rows != [(0,), (1,), (2,), (3,)]:
                wrong.append(f"rows: {rows[:5]!r}")

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert sorted(failed) == ["analyst"] * 12 + ["rows"] * 12


# -- the answer's size -----------------------------------------------------------------------------------

async def test_an_answer_past_the_result_size_is_refused_naming_the_limit(sink: Client) -> None:
    """A constant column is small inside the engine, so max_result_bytes did not count it:
    ``SELECT repeat('x', 1000) FROM numbers(900000)`` answered 900 MB and grew the sink by 4.4 GB. The answer is
    now counted as it is written (64 KiB configured here)."""
    for fmt in ("tsv", "csv", "json", "jsoneachrow", "pretty"):
        answer = await sink.post("/sql", params={"format": fmt}, headers=bearer(ANALYST),
                                 data="SELECT repeat('x', 1000) AS x FROM numbers(2000)")
        assert answer.status == 422, (fmt, answer.status)
        refused = await answer.json()
        assert refused["limit"] == "max_result_bytes" and "65536" in refused["error"], refused
    # just under the limit: the whole answer (2 bytes of names, 655 rows of 100 bytes: 65,502 of 65,536)
    status, body = await sql(sink, ANALYST, "SELECT repeat('x', 99) AS x FROM numbers(655)")
    assert status == 200 and body == b"x\n" + (b"x" * 99 + b"\n") * 655
    assert (await sql(sink, ANALYST, "SELECT repeat('x', 99) AS x FROM numbers(656)"))[0] == 422
    assert (await sql(sink, ANALYST, "SELECT 1"))[0] == 200  # the pool goes on after a refused answer


@pytest.mark.parametrize("fmt", ["JSON", "JSONEachRow", "CSVWithNames", "TabSeparatedWithNames"])
def test_a_streamed_answer_is_the_engines_answer(target: ClickHouse, tmp_path: Path, fmt: str) -> None:
    """The embedded engine streams a result block by block, each block a document of its own: the sink joins
    them into the one document the engine writes in one piece (here 25 blocks, and none)."""
    pool = AnalystQueries(engine_settings(tmp_path), QueryLimits(max_result_rows=10_000_000))
    try:
        for statement in ("SELECT number, toString(number) AS `a \"b\", c` FROM numbers(200000)",
                          "SELECT 1 AS one WHERE 0"):
            whole = target.query_formatted(statement, fmt)
            assert _comparable(pool.run_blocking(statement, fmt)) == _comparable(whole), statement
    finally:
        pool.close()


def test_with_totals_is_refused_rather_than_answered_without_its_totals_row(queries: AnalystQueries) -> None:
    """The embedded engine streams the answer block by block, and the totals row is not among the blocks."""
    with pytest.raises(QueryRejectedError, match="WITH TOTALS"):
        queries.run_blocking("SELECT number % 2 AS k, count() AS n FROM numbers(10) GROUP BY k with  totals", "JSON")
    assert b'"n"' in queries.run_blocking("SELECT number % 2 AS k, count() AS n FROM numbers(10) GROUP BY k", "JSON")
