"""The sink's SQL surface on the real engine: what an analyst may run, the limits, the credentials, and that
loading never waits behind a query."""

from __future__ import annotations

import asyncio
import threading
import time
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sink_fixtures import Seed, engine_settings, insert, make_fact, scalar, sink_test_client

from sinks.analysts import OPERATOR
from sinks.clickhouse import ClickHouse
from sinks.errors import QueryCapacityError, QueryLimitError, QueryRejectedError
from sinks.queries import AnalystQueries
from sinks.settings import ClickHouseSettings, QueryLimits, SinkSettings

ANALYST, ADMIN = "analyst-token-0123456789", "admin-token-0123456789"
QUERY_SECONDS = 2.0  # the time limit of the analyst queries the tests run on purpose too long


@pytest.fixture
def queries(target: ClickHouse, tmp_path: Path) -> Iterator[AnalystQueries]:
    # a short time limit: the tests that reach it (a query stopped, slots taken by slow queries) last that long
    limits = QueryLimits(max_execution_seconds=QUERY_SECONDS, max_memory_bytes=256 << 20, max_result_rows=1000,
                         max_concurrent=2, queue_seconds=0.2)
    pool = AnalystQueries(engine_settings(tmp_path), limits)
    yield pool
    pool.close()


# -- the policy --------------------------------------------------------------------------------------------

ATTACKS = [
    # EXPLAIN evaluated a scalar subquery over file(); DESCRIBE inferred a schema from files
    "EXPLAIN PLAN SELECT (SELECT groupArray(line) FROM file('/proc/self/environ', 'LineAsString'))",
    "DESCRIBE file('/etc/passwd')",
    "DESCRIBE TABLE file('/etc/passwd')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "SELECT file('/proc/self/environ')",  # the scalar file() reads even under readonly=1
    "SELECT 1 IN file('/etc/passwd')",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM python(x)",  # chDB's table function over the sink process's variables
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM system.settings",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SELECT * FROM other.learning_facts",
    "SELECT * FROM merge('system', '.*')",
    "SELECT hasColumnInTable('127.0.0.1', 'system', 'one', 'dummy')",
    "SELECT 1 SETTINGS max_memory_usage = 0",
    "SELECT 1 FORMAT TSV",
    "SELECT 1 INTO OUTFILE '/tmp/x'",
    "INSERT INTO learning.erasures SELECT * FROM learning.erasures",
    "DROP TABLE learning.learning_facts",
    "SELECT 1; DROP TABLE learning.learning_facts",
    "ALTER TABLE learning.learning_facts DELETE WHERE 1",
    "SET readonly = 0",
    "SHOW TABLES FROM system",
    "EXISTS TABLE learning.learning_facts",
    "", "-- just a comment",
    # the raw archive holds the events as sent (emails, names in clear): not for analysts, however it is reached
    "SELECT payload FROM learning.raw_events", "SELECT * FROM raw_events", "DESCRIBE TABLE raw_events_in",
    "SELECT 1 FROM view(SELECT payload FROM learning.raw_events)",
    "SELECT count() FROM learning_facts WHERE event_id IN (SELECT event_id FROM `raw_events`)",
    # the failed events keep what was sent too (delivery receipts): analysts read failed_events_summary
    "SELECT payload FROM learning.failed_events", "SELECT original_base64 FROM failed_events FINAL",
    "DESCRIBE TABLE failed_events_in", "SELECT 1 FROM view(SELECT payload FROM failed_events)",
    # the loader's refused messages, byte for byte (a raw topic's: emails and names in clear), no erasure keys
    "SELECT raw_base64 FROM learning.sink_rejects", "SELECT count() FROM sink_rejects FINAL",
]


@pytest.mark.parametrize("statement", ATTACKS)
def test_the_policy_refuses_what_reaches_outside_the_pipelines_tables(queries: AnalystQueries,
                                                                      statement: str) -> None:
    with pytest.raises(QueryRejectedError):
        queries.check(statement)


@pytest.mark.parametrize("statement", [
    "SELECT 1;", "with a as (select 1 AS x) select * from a", "SHOW TABLES", "DESCRIBE TABLE learning_facts",
    "DESCRIBE TABLE learning.learning_facts", "/* why */ SELECT 2", "SELECT count() FROM numbers(10)",
    "SELECT tenant, sum(xp) FROM student_daily_xp GROUP BY tenant",
    "SELECT 'file(x)', 'url', 'SELECT * FROM system.one' -- strings and comments are not code",
    "SELECT * FROM learning.learning_facts AS f JOIN learning.current_facts AS c USING (fact_id) LIMIT 1",
    "SELECT 1 UNION ALL SELECT 2", "SELECT number FROM values('number UInt8', 1, 2)",
    "SELECT tenant, reason, count() FROM failed_events_summary GROUP BY tenant, reason",
    "SELECT job_id, count() FROM learning.jobs GROUP BY job_id",
    "SELECT topic, error, count() FROM learning.sink_rejects_summary GROUP BY topic, error",
])
def test_read_statements_of_the_pipelines_tables_pass(queries: AnalystQueries, statement: str) -> None:
    queries.run_blocking(statement, "TabSeparated")


def test_the_environment_cannot_be_read(queries: AnalystQueries, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALIPER_SINK__ADMIN_TOKEN", "s3cret-admin-token")
    for statement in ("SELECT file('/proc/self/environ')",
                      "EXPLAIN PLAN SELECT (SELECT * FROM file('/proc/self/environ', 'LineAsString'))"):
        with pytest.raises(QueryRejectedError):
            queries.run_blocking(statement, "TabSeparated")


# -- limits ------------------------------------------------------------------------------------------------

def test_a_query_over_its_memory_limit_is_stopped(queries: AnalystQueries) -> None:
    """This query grew the sink by ~1.6 GiB/s until it was killed."""
    with pytest.raises(QueryLimitError) as stopped:
        queries.run_blocking("SELECT length(groupArray(number)) FROM numbers(1e9)", "TabSeparated")
    assert stopped.value.limit == "max_memory_bytes"


def test_a_query_over_its_time_limit_is_stopped(queries: AnalystQueries) -> None:
    started = time.monotonic()
    with pytest.raises(QueryLimitError) as stopped:
        queries.run_blocking("SELECT count() FROM numbers(1e12) WHERE sipHash64(number) = 1", "TabSeparated")
    assert stopped.value.limit == "max_execution_seconds"
    assert time.monotonic() - started < 60  # the test's own guard, not a speed figure: QUERY_SECONDS is configured


def test_a_result_over_its_row_limit_is_refused(queries: AnalystQueries) -> None:
    with pytest.raises(QueryLimitError) as stopped:
        queries.run_blocking("SELECT number FROM numbers(100000)", "TabSeparated")
    assert "max_result_rows" in stopped.value.limit


def test_a_query_cannot_raise_its_own_limits(queries: AnalystQueries) -> None:
    with pytest.raises(QueryRejectedError, match=r"SETTINGS|readonly"):
        queries.run_blocking("SELECT 1 SETTINGS max_memory_usage = 0, readonly = 0", "TabSeparated")


def test_the_sinks_own_connections_keep_their_settings(queries: AnalystQueries, target: ClickHouse) -> None:
    queries.run_blocking("SELECT 1", "TabSeparated")
    assert scalar(target, "SELECT getSetting('readonly')") == 0  # the loader's connection is not read-only
    insert(target, [make_fact(1)], "after-analyst")
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 1


async def test_more_queries_than_slots_are_answered_busy(queries: AnalystQueries) -> None:
    slow = "SELECT count() FROM numbers(2e10) WHERE sipHash64(number) = 1"
    running = [asyncio.create_task(queries.run(slow, "TabSeparated", analyst=OPERATOR)) for _ in range(2)]
    await asyncio.sleep(0.3)
    with pytest.raises(QueryCapacityError) as busy:
        await queries.run("SELECT 1", "TabSeparated", analyst=OPERATOR)
    assert busy.value.retry_after >= 1
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def test_loading_never_waits_behind_a_query(target: ClickHouse, tmp_path: Path) -> None:
    """Queries, inserts and pings shared one lock, so an 85 s query froze loading."""
    outcome: dict[str, typing.Any] = {}
    heavy_queries = AnalystQueries(engine_settings(tmp_path), QueryLimits(max_execution_seconds=QUERY_SECONDS))

    def heavy() -> None:
        try:
            heavy_queries.run_blocking("SELECT count() FROM numbers(1e13) WHERE sipHash64(number) = 1",
                                       "TabSeparated")
        except QueryLimitError as error:
            outcome["query"] = error.limit
        outcome["query_done"] = time.monotonic()

    thread = threading.Thread(target=heavy)
    thread.start()
    try:
        time.sleep(0.5)
        assert target.ping()
        assert "query_done" not in outcome  # the ping finished while the query still ran
        during = 0
        for batch in range(20):
            insert(target, [make_fact(batch * 10 + i) for i in range(10)], f"during-{batch}")
            during += "query_done" not in outcome
        # behind the query, no insert would finish before it ends; beside it, inserts finish while it runs (not
        # necessarily all 20 of them within its short limit on a loaded machine)
        assert during >= 1
    finally:
        thread.join()
        heavy_queries.close()
    assert outcome["query"] == "max_execution_seconds"
    assert scalar(target, "SELECT count() FROM learning.learning_facts") == 200


# -- the HTTP endpoints ------------------------------------------------------------------------------------

def two_activity_facts(target: ClickHouse) -> None:
    insert(target, [make_fact(1, event_type="ActivityEvent", xp_earned=3.0),
                    make_fact(2, event_type="ActivityEvent", student_id="student-2")], "a")


@pytest.fixture
def engine_seed(request: pytest.FixtureRequest) -> Seed | None:
    """The rows the tests of ``sink_client`` read, loaded once for those that only read; the others start from
    none."""
    return two_activity_facts if "sink_client" in request.fixturenames else None


@pytest.fixture
async def sink_client(target: ClickHouse, tmp_path: Path) -> AsyncIterator[TestClient[typing.Any, typing.Any]]:
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), admin_token=SecretStr(ADMIN),
                            queries=QueryLimits(max_execution_seconds=5, max_memory_bytes=256 << 20))
    async with sink_test_client(target, tmp_path, settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_endpoint_but_healthz_needs_a_credential(sink_client: TestClient[typing.Any, typing.Any]) -> None:
    """/sql and /metrics needed no credential. The health probes answer anyone, and /readyz
    tells an anonymous caller only whether the sink is ready."""
    assert (await sink_client.get("/healthz")).status == 200
    anonymous = await sink_client.get("/readyz")
    assert await anonymous.json() == {"ready": False}  # no consumer in this test: not ready, and no details
    detailed = await (await sink_client.get("/readyz", headers=bearer(ANALYST))).json()
    assert detailed["clickhouse"] is True and detailed["ready"] is False
    for method, path in (("GET", "/metrics"), ("POST", "/sql"), ("POST", "/read/events"), ("POST", "/admin/erase"),
                         ("POST", "/archive/raw-events")):
        for headers in ({}, bearer("wrong"), bearer("ünïcode-tökén"), {"Authorization": "Basic eDp5"}):
            answer = await sink_client.request(method, path, headers=headers, data="SELECT 1")
            assert answer.status == 401, (method, path, headers)
            assert "error" in await answer.json()
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    erase = {"tenant": "school-a", "student_id": "student-2", "requested_by": "dpo"}
    assert (await sink_client.post("/admin/erase", json=erase, headers=bearer(ANALYST))).status == 401
    archive = {"tenant": "school-a", "from_ms": None, "to_ms": None}  # the raw archive is the admin's only
    assert (await sink_client.post("/archive/raw-events", json=archive, headers=bearer(ANALYST))).status == 401
    answer = await sink_client.post("/archive/raw-events", json=archive, headers=bearer(ADMIN))
    assert answer.status == 200 and answer.headers["X-Total-Count"] == "0" and await answer.read() == b""
    for bad in ({}, {"tenant": ""}, {"tenant": "t", "from_ms": "yesterday"}, {"tenant": "t", "to_ms": 1.5}, []):
        refused = await sink_client.post("/archive/raw-events", json=bad, headers=bearer(ADMIN))
        assert refused.status == 400 and "error" in await refused.json(), bad
    assert (await sink_client.get("/metrics", headers=bearer(ADMIN))).status == 200


async def test_sql_answers_in_the_chosen_format_and_says_why_it_refuses(
        sink_client: TestClient[typing.Any, typing.Any]) -> None:
    answer = await sink_client.post("/sql", params={"format": "json"}, headers=bearer(ANALYST),
                                    data="SELECT student_id, xp FROM learning.student_daily_xp ORDER BY student_id")
    assert answer.status == 200
    assert [row["xp"] for row in (await answer.json())["data"]] == [3.0, 0.0]
    csv = await sink_client.post("/sql", params={"format": "csv"}, headers=bearer(ANALYST), data="SELECT 1 AS one")
    assert (await csv.text()).splitlines() == ['"one"', "1"]
    refused = await sink_client.post("/sql", headers=bearer(ANALYST), data="SELECT file('/proc/self/environ')")
    assert refused.status == 400 and "file" in (await refused.json())["error"]
    missing = await sink_client.post("/sql", headers=bearer(ANALYST), data="SELECT * FROM learning.nope")
    assert missing.status == 400
    bad_format = await sink_client.post("/sql", params={"format": "xml"}, headers=bearer(ANALYST), data="SELECT 1")
    assert bad_format.status == 400 and (await bad_format.json())["field"] == "format"
    limited = await sink_client.post("/sql", headers=bearer(ANALYST),
                                     data="SELECT length(groupArray(number)) FROM numbers(1e9)")
    assert limited.status == 422 and (await limited.json())["limit"] == "max_memory_bytes"
    assert "sink_analyst_queries_total" in await (await sink_client.get("/metrics", headers=bearer(ADMIN))).text()


async def test_erasure_over_http_validates_its_body(sink_client: TestClient[typing.Any, typing.Any]) -> None:
    """An erase body with null fields erased tenant "None"."""
    for body in ({"tenant": None, "student_id": "student-2", "requested_by": "dpo"},
                 {"tenant": "school-a", "student_id": None, "requested_by": "dpo"},
                 {"tenant": "school-a", "student_id": "student-2"}, ["school-a"], "text"):
        answer = await sink_client.post("/admin/erase", json=body, headers=bearer(ADMIN))
        assert answer.status == 400, body
    erased = await sink_client.post("/admin/erase", headers=bearer(ADMIN),
                                    json={"tenant": "school-a", "student_id": "student-2", "requested_by": "dpo"})
    assert erased.status == 200 and await erased.json() == {"rows_deleted": 1}


async def test_unknown_routes_and_methods_answer_json(sink_client: TestClient[typing.Any, typing.Any]) -> None:
    missing = await sink_client.get("/nope")
    assert missing.status == 404 and "error" in await missing.json()
    wrong_method = await sink_client.get("/sql", headers=bearer(ANALYST))
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "POST"


def test_settings_validate_the_limits() -> None:
    with pytest.raises(ValueError):
        ClickHouseSettings(database="x; DROP")
    with pytest.raises(ValueError):
        QueryLimits(max_concurrent=0)
