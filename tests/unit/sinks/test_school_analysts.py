"""One analyst credential per school, on the real engine: a school credential's ``POST /sql`` reads its tenants'
rows and nothing of any other tenant, wherever a statement hides a table (subqueries, joins, unions, CTEs, views
over views, table functions, ``system``, qualified names, settings, parameters, errors raised before the filter,
``count()`` answered from metadata ...), because the engine filters every table (``additional_table_filters``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sink_fixtures import SharedEngine, insert, make_fact, open_engine, sink_test_client

import sinks.analysts as analysts_module
from sinks.analysts import AnalystRegistry
from sinks.clickhouse import ClickHouse
from sinks.middlewares import MAX_SECRET_CHECKS
from sinks.settings import QueryLimits, SinkSettings

ANALYST, ADMIN = "analyst-token-0123456789", "admin-token-0123456789"
FACTS = {"school-a": 2, "school-b": 3, "school-c": 4}  # distinct counts: any leak changes a count
Client = TestClient[typing.Any, typing.Any]


def student(tenant: str, index: int) -> str:
    return f"student-{tenant[-1]}-{index}"


# the module's tests only read the engine: one loaded database and one sink for all of them, on one event loop
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module", params=["chdb"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           clickhouse_server: dict[str, typing.Any] | None, chdb_engine: SharedEngine) -> Iterator[ClickHouse]:
    """The real engine holding facts of three tenants, in one part (one granule) holding every tenant's rows: no
    index separates them; and one erasure, one job and one failed event of each tenant."""
    for clickhouse in open_engine(request, tmp_path_factory.mktemp("school-engine"), clickhouse_server):
        facts = []
        for tenant, count in FACTS.items():
            for index in range(count):
                facts.append(make_fact(len(facts) + 1, tenant=tenant, event_id=f"{tenant}-event-{index}",
                                       student_id=student(tenant, index), course_id=f"course-{tenant}"))
            seed_bookkeeping(clickhouse, tenant)
        insert(clickhouse, facts, "facts")
        yield clickhouse


def seed_bookkeeping(target: ClickHouse, tenant: str) -> None:
    """One erasure, one job and one failed event of ``tenant``."""
    now_ms = int(time.time() * 1000)
    target.command("INSERT INTO erasures VALUES ({t:String}, 'hash', 'dpo', now64(3), 0)", {"t": tenant})
    job = {"tenant": tenant, "job_id": f"job-{tenant}", "part": 0, "parts": 1, "client_id": "c", "endpoint": "x",
           "received_time_ms": now_ms, "accepted": 1, "entities": 1, "event_indexes": [0], "event_ids": ["e"]}
    target.insert_raw("jobs_in", json.dumps(job).encode(), "JSONEachRow")
    failed = {"tenant": tenant, "stage": "streams", "reason": "r", "client_id": "c", "source": "caliper",
              "job_id": f"job-{tenant}", "envelope_index": 0, "event_id": f"{tenant}-failed", "topic": "t",
              "partition": 0, "offset": 1, "failed_time_ms": now_ms, "worker_version": "1", "student_keys": ["k"],
              "payload": "{}", "original_base64": ""}
    target.insert_raw("failed_events_in", json.dumps(failed).encode(), "JSONEachRow")


@contextlib.asynccontextmanager
async def serve(target: ClickHouse, directory: Path) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    """The sink over ``target``, and the bearer tokens of a credential for A and one for A and B (in an analysts
    file in ``directory``)."""
    registry = AnalystRegistry(directory / "analysts.json")
    tokens = {}
    for name, tenants in (("a", ["school-a"]), ("ab", ["school-a", "school-b"])):
        credential, secret = registry.add(tenants, analyst_id=f"net-{name}")
        tokens[name] = f"{credential.analyst_id}:{secret}"
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), admin_token=SecretStr(ADMIN),
                            analysts_file=directory / "analysts.json",
                            queries=QueryLimits(max_execution_seconds=20, max_result_bytes=256 * 1024))
    async with sink_test_client(target, directory, settings) as client:
        yield client, tokens


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def school(target: ClickHouse,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    """The sink the module's tests share (none changes its credentials)."""
    async with serve(target, tmp_path_factory.mktemp("school")) as served:
        yield served


@pytest_asyncio.fixture(loop_scope="module")
async def own_school(target: ClickHouse, tmp_path: Path) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    """A sink and credentials of the test's own, for a test that revokes one."""
    async with serve(target, tmp_path) as served:
        yield served


async def sql(client: Client, token: str, statement: str, **params: str) -> tuple[int, str]:
    answer = await client.post("/sql", params={"format": "tsv", **params},
                               headers={"Authorization": f"Bearer {token}"}, data=statement)
    return answer.status, await answer.text()


def body_of(answer: str) -> str:
    """The rows of a TabSeparatedWithNames answer, without the names line."""
    return answer.split("\n", 1)[1].strip() if "\n" in answer else ""


# (statement, the answer for A, the answer for A and B); None: refused (400)
ATTACKS: list[tuple[str, str | None, str | None]] = [
    ("SELECT count() FROM learning_facts", "2", "5"),  # a trivial count, answered from the parts' metadata
    ("SELECT count(*) FROM learning.learning_facts", "2", "5"),
    ("SELECT count() FROM `learning`.`learning_facts`", "2", "5"),
    ("SELECT count() FROM learning_facts FINAL", "2", "5"),
    ("SELECT count() FROM current_facts", "2", "5"),
    ("SELECT count() FROM learning.current_facts AS c WHERE 1", "2", "5"),
    ("SELECT count() FROM (SELECT * FROM learning_facts)", "2", "5"),
    ("SELECT (SELECT count() FROM learning_facts)", "2", "5"),
    ("WITH x AS (SELECT tenant FROM learning_facts) SELECT count() FROM x", "2", "5"),
    ("WITH (SELECT count() FROM current_facts) AS n SELECT n", "2", "5"),
    ("SELECT count() FROM learning_facts AS a CROSS JOIN learning_facts AS b", "4", "25"),
    ("SELECT count() FROM learning_facts AS f LEFT JOIN current_facts AS c USING (fact_id)", "2", "5"),
    ("SELECT count() FROM numbers(3) AS n LEFT JOIN learning_facts AS f ON f.fact_index = n.number "
     "WHERE f.tenant != ''", "2", "5"),
    ("SELECT count() FROM (SELECT tenant FROM learning_facts UNION ALL SELECT tenant FROM current_facts)", "4", "10"),
    ("SELECT count() FROM (SELECT tenant FROM learning_facts UNION DISTINCT SELECT tenant FROM current_facts)",
     "1", "2"),
    ("SELECT count() FROM (SELECT student_id FROM learning_facts EXCEPT SELECT 'none')", "2", "5"),
    ("SELECT arraySort(groupUniqArray(tenant)) FROM current_facts", "['school-a']", "['school-a','school-b']"),
    ("SELECT arraySort(groupUniqArray(tenant)) FROM (SELECT tenant FROM student_daily_time_on_task UNION ALL "
     "SELECT tenant FROM student_daily_calendar UNION ALL SELECT tenant FROM fact_conflicts UNION ALL "
     "SELECT tenant FROM student_daily_xp UNION ALL SELECT tenant FROM student_skill_mastery)",
     "['school-a']", "['school-a','school-b']"),  # views over views over the facts
    ("SELECT arraySort(groupUniqArray(tenant)) FROM (SELECT tenant FROM job_facts UNION ALL SELECT tenant FROM jobs "
     "UNION ALL SELECT tenant FROM erasures UNION ALL SELECT tenant FROM failed_events_summary UNION ALL "
     "SELECT 'school-a')", "['school-a']", "['school-a','school-b']"),
    ("SELECT count() FROM erasures", "1", "2"),
    ("SELECT count() FROM jobs", "1", "2"),
    ("SELECT count() FROM failed_events_summary", "1", "2"),
    ("SELECT count() FROM job_facts", "1", "2"),
    ("SELECT count() FROM sink_rejects_summary", "0", "0"),  # no tenant column: none of its rows
    ("SELECT count() FROM view(SELECT * FROM learning.learning_facts)", "2", "5"),
    ("SELECT count() FROM view(SELECT tenant FROM learning.current_facts WHERE tenant != 'school-a')", "0", "3"),
    ("SELECT count() FROM merge('learning', '^learning_facts$')", None, None),
    ("SELECT count() FROM merge(currentDatabase(), 'learning_facts')", None, None),
    ("SELECT count() FROM remote('127.0.0.1', learning.learning_facts)", None, None),
    ("SELECT count() FROM loop(learning, learning_facts) LIMIT 1", None, None),
    ("SELECT count() FROM cluster('default', learning.learning_facts)", None, None),
    ("SELECT count() FROM mergeTreeIndex(learning, learning_facts)", None, None),
    ("SELECT count() FROM input('tenant String')", None, None),
    ("SELECT sum(rows) FROM system.parts WHERE table = 'learning_facts'", None, None),
    ("SELECT total_rows FROM system.tables WHERE name = 'learning_facts'", None, None),
    ("SELECT count() FROM learning.learning_facts SETTINGS additional_table_filters = {}", None, None),
    ("SELECT count() FROM learning_facts SETTINGS optimize_move_to_prewhere = 1", None, None),
    ("SET additional_table_filters = {}", None, None),
    ("SELECT 'school-c' IN (SELECT tenant FROM learning_facts) AS seen", "0", "0"),
    ("SELECT count() FROM current_facts WHERE tenant IN (SELECT tenant FROM learning.learning_facts)", "2", "5"),
    ("SELECT count() FROM learning_facts WHERE tenant IN ('school-b', 'school-c')", "0", "3"),
    ("SELECT EXISTS (SELECT 1 FROM learning_facts WHERE tenant = 'school-c') AS seen", "0", "0"),
    ("SELECT max(student_id), min(student_id), uniqExact(tenant) FROM learning_facts",
     "student-a-1\tstudent-a-0\t1", "student-b-2\tstudent-a-0\t2"),
    ("SELECT count() FROM learning_facts SAMPLE 1", None, None),  # the table has no sampling key
    ("SELECT count() FROM learning_facts ARRAY JOIN [1, 2] AS z", "4", "10"),
    ("SELECT count() OVER () FROM learning_facts LIMIT 1", "2", "5"),
    ("SELECT count() FROM (SELECT * FROM learning_facts LIMIT 1 BY tenant)", "1", "2"),
    ("SELECT sum(n) FROM (SELECT _part, count() AS n FROM learning_facts GROUP BY _part)", "2", "5"),
    ("SELECT count() FROM learning_facts GROUP BY tenant WITH ROLLUP ORDER BY count()", "2\n2", "2\n3\n5"),
    ("SELECT count() FROM learning_facts PREWHERE throwIf(tenant = 'school-c') = 0", None, None),
    ("SELECT count() FROM learning_facts WHERE throwIf(student_id = 'student-c-0') = 0", "2", "5"),
    ("SELECT count() FROM learning_facts FINAL WHERE throwIf(student_id = 'student-c-0') = 0", "2", "5"),
    ("SELECT count() FROM learning_facts WHERE fact_index = 0 AND throwIf(student_id = 'student-c-1') = 0",
     "2", "5"),
    # conditions the engine would move to PREWHERE, ahead of the filter: an error would tell another tenant's rows
    ("SELECT count() FROM learning_facts WHERE throwIf(event_id = 'school-c-event-0') = 0", "2", "5"),
    ("SELECT count() FROM learning_facts WHERE throwIf(content_hash = 'hash-9') = 0", "2", "5"),
    ("SELECT count() FROM learning_facts WHERE xp_earned = 0 AND throwIf(event_id = 'school-c-event-1') = 0",
     "2", "5"),
    ("SELECT count() FROM learning_facts WHERE toUInt64(if(startsWith(event_id, 'school-a'), '1', event_id)) > 0",
     "2", None),
    ("SELECT count() FROM learning_facts WHERE tenant = {t:String}", None, None),
]


@pytest.mark.parametrize(("statement", "for_a", "for_ab"), ATTACKS)
async def test_a_school_credential_reads_its_tenants_rows_only(school: tuple[Client, dict[str, str]], statement: str,
                                                               for_a: str | None, for_ab: str | None) -> None:
    client, tokens = school
    for name, expected, unseen in (("a", for_a, ("student-b", "student-c", "school-b", "school-c")),
                                   ("ab", for_ab, ("student-c", "school-c"))):
        status, answer = await sql(client, tokens[name], statement, param_t="school-c")
        assert not any(marker in answer for marker in unseen), (name, statement, answer[:300])
        if expected is None:
            assert status == 400, (name, statement, status, answer[:300])
        else:
            assert (status, body_of(answer)) == (200, expected), (name, statement, answer[:300])


async def test_an_error_raised_before_the_filter_shows_no_other_tenants_value(
        school: tuple[Client, dict[str, str]]) -> None:
    """A conversion error quotes the value it could not convert: evaluated before the tenants' filter (a PREWHERE,
    or a WHERE moved there by the engine), it would quote another tenant's student."""
    client, tokens = school
    for statement in ("SELECT count() FROM learning_facts WHERE toUInt64(student_id) > 0",
                      "SELECT count() FROM learning_facts WHERE fact_index = 0 AND toUInt64(student_id) > 0",
                      "SELECT count() FROM current_facts WHERE toUInt64(student_id) > 0",
                      "SELECT toUInt64(student_id) FROM learning_facts"):
        status, answer = await sql(client, tokens["a"], statement)
        assert status == 400 and "student-a-" in answer, (statement, answer[:300])
        assert "student-b" not in answer and "student-c" not in answer, (statement, answer[:300])


async def test_the_operator_and_the_admin_read_every_tenant(school: tuple[Client, dict[str, str]]) -> None:
    client, _ = school
    for token in (ANALYST, ADMIN):
        status, answer = await sql(client, token, "SELECT tenant, count() FROM learning_facts GROUP BY tenant "
                                                  "ORDER BY tenant")
        assert (status, body_of(answer)) == (200, "school-a\t2\nschool-b\t3\nschool-c\t4")


async def test_a_wrong_or_revoked_school_credential_is_refused_without_a_restart(
        own_school: tuple[Client, dict[str, str]], tmp_path: Path) -> None:
    client, tokens = own_school
    identifier, secret = tokens["a"].split(":", 1)
    for token in (f"{identifier}:{secret[:-1]}x", f"nobody:{secret}", f"{identifier}:", identifier, secret):
        assert (await sql(client, token, "SELECT 1"))[0] == 401, token
    assert (await sql(client, tokens["a"], "SELECT 1"))[0] == 200
    registry = AnalystRegistry(tmp_path / "analysts.json")
    registry.revoke(identifier)
    assert (await sql(client, tokens["ab"], "SELECT 1"))[0] == 200
    # the sink re-reads the file at most once a second
    for _ in range(40):
        if (await sql(client, tokens["a"], "SELECT 1"))[0] == 401:
            break
        await asyncio.sleep(0.1)
    assert (await sql(client, tokens["a"], "SELECT 1"))[0] == 401


async def test_wrong_school_secrets_take_at_most_two_threads(school: tuple[Client, dict[str, str]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Each school credential costs a scrypt in the default executor's threads, which /readyz's ping and the
    erasure use too: a flood of wrong secrets runs at most ``MAX_SECRET_CHECKS`` of them at once."""
    client, tokens = school
    identifier = tokens["a"].split(":", 1)[0]
    running, most = 0, 0
    real = analysts_module.stored_secret_ok

    def counted(stored: str | None, secret: str) -> bool:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            time.sleep(0.05)
            return real(stored, secret)
        finally:
            running -= 1

    monkeypatch.setattr(analysts_module, "stored_secret_ok", counted)
    answers = await asyncio.gather(*(sql(client, f"{identifier}:wrong-{n}", "SELECT 1") for n in range(12)))
    assert [status for status, _ in answers] == [401] * 12
    assert most == MAX_SECRET_CHECKS
