"""A school's analyst with its own tools, end to end: a credential made by ``AnalystRegistry.add`` (what
``caliper-pipeline analysts add`` runs), the sink serving ClickHouse's HTTP interface on a real port over the
example data set of docs/analytics.md (tests/docs_dataset.py: school-a's and school-b's facts and failed events),
and the clients docs/analytics.md tells analysts to use: clickhouse-connect (rows, pandas, Arrow) and the
SQLAlchemy ``clickhousedb://`` dialect with pandas.

The questions are the page's own (its ```sql blocks, with the answers it shows): a school's credential gets the
page's answer restricted to its school, whatever the statement's own ``WHERE tenant``; the attacks of
tests/unit/sinks/test_school_analysts.py sent through the clients show no other school's row or count; a revoked
credential is refused by the running sink."""

from __future__ import annotations

import asyncio
import contextlib
import re
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import clickhouse_connect
import pandas as pd
import pytest
import pytest_asyncio
import sqlalchemy
from aiohttp.test_utils import TestClient
from clickhouse_connect.driver.exceptions import DatabaseError
from docs_dataset import load
from pydantic import SecretStr
from sink_fixtures import SharedEngine, learning_database, sink_test_client
from test_analytics_doc import EXAMPLES

from sinks.analysts import AnalystRegistry
from sinks.clickhouse import ClickHouse
from sinks.settings import SinkSettings
from sinks.tables import ANALYST_TABLES

ANALYST = "operator-analyst-token-0123456789"
SCHOOLS = ("school-a", "school-b")
Client = TestClient[typing.Any, typing.Any]
Credentials = dict[str, tuple[str, str]]  # school -> (id, secret)


@pytest.fixture(scope="module")
def owner(chdb_engine: SharedEngine) -> Iterator[ClickHouse]:
    for clickhouse in learning_database(chdb_engine):
        load(clickhouse)
        yield clickhouse


# the module's tests only read: one sink for them all (one whose credential is revoked excepted), on one event loop
ON_THE_MODULES_LOOP = pytest.mark.asyncio(loop_scope="module")


@contextlib.asynccontextmanager
async def serve(owner: ClickHouse, directory: Path) -> AsyncIterator[tuple[Client, Credentials]]:
    """The sink on a listening port of 127.0.0.1, and a credential of each school (``analysts add``) in an
    analysts file in ``directory``."""
    registry = AnalystRegistry(directory / "analysts.json")
    credentials = {}
    for school in SCHOOLS:
        credential, secret = registry.add([school], analyst_id=f"analyst-{school}", name=school)
        credentials[school] = (credential.analyst_id, secret)
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), analysts_file=directory / "analysts.json")
    async with sink_test_client(owner, directory, settings) as client:
        yield client, credentials


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sink(owner: ClickHouse,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Client, Credentials]]:
    async with serve(owner, tmp_path_factory.mktemp("school-tools")) as served:
        yield served


@pytest_asyncio.fixture(loop_scope="module")
async def own_sink(owner: ClickHouse, tmp_path: Path) -> AsyncIterator[tuple[Client, Credentials]]:
    """A sink and credentials of the test's own, for a test that revokes one."""
    async with serve(owner, tmp_path) as served:
        yield served


def port(client: Client) -> int:
    assert client.server.port is not None
    return client.server.port


T = typing.TypeVar("T")


async def blocking(function: typing.Callable[..., T], *args: typing.Any, **kwargs: typing.Any) -> T:
    """A real client's blocking call, in a thread: the sink answers it from this test's event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def connect(client: Client, user: str, password: str) -> typing.Any:
    return await blocking(clickhouse_connect.get_client, host="127.0.0.1", port=port(client), username=user,
                          password=password)


# -- the page's questions and answers, restricted to one school ------------------------------------------------

def _question(sql: str) -> str:
    return sql.strip().rstrip(";")


def _rows(answer: str) -> tuple[list[str], list[list[str]]]:
    """The names and rows of a TabSeparatedWithNames answer."""
    lines = answer.rstrip("\n").split("\n")
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def _for_school(sql: str, answer: str, school: str) -> tuple[list[str], list[list[str]]]:
    """The page's answer restricted to ``school``: rows whose ``tenant`` is that school, or, for a statement that
    names one tenant (``WHERE tenant = '...'``) and shows no tenant column, every row if it is that school's."""
    names, rows = _rows(answer)
    if "tenant" in names:
        return names, [row for row in rows if row[names.index("tenant")] == school]
    named = set(re.findall(r"\btenant = '([^']+)'", sql))
    assert len(named) <= 1, sql
    return names, rows if named == {school} or (not named and not rows) else []


QUESTIONS = [(_question(sql), answer) for sql, answer in EXAMPLES]
DAILY_XP, MASTERY, FAILURES = (
    next(index for index, (sql, _) in enumerate(QUESTIONS) if all(word in sql for word in words))
    for words in (("student_daily_xp", "GROUP BY day, student"), ("student_skill_mastery", "GROUP BY bncc_code"),
                  ("failed_events_summary", "GROUP BY tenant, reason_code")))


def test_the_page_asks_the_three_questions_of_a_school() -> None:
    """Daily XP per student in local days, mastery per BNCC skill and failures by reason are among the page's
    questions, and each has rows for school-a."""
    for index in (DAILY_XP, MASTERY, FAILURES):
        sql, answer = QUESTIONS[index]
        assert _for_school(sql, answer, "school-a")[1], sql


@pytest.mark.parametrize("school", SCHOOLS)
@ON_THE_MODULES_LOOP
async def test_clickhouse_connect_answers_the_pages_questions_for_the_school_only(
        sink: tuple[Client, Credentials], school: str) -> None:
    client, credentials = sink
    driver = await connect(client, *credentials[school])
    other = next(name for name in SCHOOLS if name != school)
    try:
        for sql, answer in QUESTIONS:
            names, expected = _for_school(sql, answer, school)
            text = (await blocking(driver.raw_query, sql, fmt="TabSeparatedWithNames")).decode()
            assert _rows(text) == (names, expected), sql
            frame = await blocking(driver.query_df, sql)
            assert isinstance(frame, pd.DataFrame) and len(frame) == len(expected), sql
            if expected:  # an empty Native answer names no columns (as a ClickHouse server's)
                assert list(frame.columns) == names, sql
            table = await blocking(driver.query_arrow, sql)
            assert table.column_names == names and table.num_rows == len(expected), sql
            if "tenant" in frame.columns:
                assert set(frame["tenant"]) <= {school} and set(table.column("tenant").to_pylist()) <= {school}
            for column in ("student", "bncc_code", "reason_code"):  # text columns: the page's values, in order
                if column in names and expected:
                    position = names.index(column)
                    assert list(frame[column]) == [row[position] for row in expected], sql
                    assert table.column(column).to_pylist() == [row[position] for row in expected], sql
        for name in sorted(ANALYST_TABLES):  # every row of every table the school reads is its own
            frame = await blocking(driver.query_df, f"SELECT * FROM learning.{name}")
            if "tenant" in frame.columns:
                assert set(frame["tenant"]) <= {school}, name
            found = await blocking(driver.query, f"SELECT count() FROM learning.{name} WHERE "
                                                 f"position(toString(tuple(*)), '{other}') > 0")
            assert found.result_rows == [(0,)], name
    finally:
        driver.close()


@pytest.mark.parametrize("school", SCHOOLS)
@ON_THE_MODULES_LOOP
async def test_sqlalchemy_and_pandas_read_the_questions_and_the_analyst_tables(
        sink: tuple[Client, Credentials], school: str) -> None:
    client, credentials = sink
    user, secret = credentials[school]
    engine = sqlalchemy.create_engine(f"clickhousedb://{user}:{secret}@127.0.0.1:{port(client)}/learning")
    try:
        tables = await blocking(lambda: sqlalchemy.inspect(engine).get_table_names())
        assert set(tables) == ANALYST_TABLES
        for sql, answer in QUESTIONS:
            names, expected = _for_school(sql, answer, school)
            frame = await blocking(pd.read_sql, sql, engine)
            assert len(frame) == len(expected), sql
            if expected:
                assert list(frame.columns) == names, sql
            if "tenant" in frame.columns:
                assert set(frame["tenant"]) <= {school}, sql
    finally:
        engine.dispose()


# -- the attacks, through the client ----------------------------------------------------------------------------

# (statement, school-a's answer): a row of school-b's would change every count (school-a: 11 facts, 10 current,
# 4 failed events; school-b: 1 fact, 1 failed event)
ATTACKS = [
    ("SELECT count() FROM learning.learning_facts", 11),  # a trivial count: the parts' metadata would say 12
    ("SELECT count() FROM (SELECT * FROM current_facts)", 10),
    ("SELECT count() FROM current_facts WHERE tenant IN (SELECT tenant FROM learning.learning_facts)", 10),
    ("SELECT count() FROM (SELECT tenant FROM current_facts UNION ALL SELECT tenant FROM learning_facts)", 21),
    ("SELECT uniqExact(tenant) FROM (SELECT tenant FROM student_daily_xp UNION ALL SELECT tenant FROM "
     "student_daily_calendar UNION ALL SELECT tenant FROM student_skill_mastery UNION ALL SELECT tenant FROM "
     "failed_events_summary)", 1),  # views over views over the facts
    ("SELECT countIf(tenant = 'school-b') FROM view(SELECT tenant FROM learning.student_daily_xp)", 0),
    ("SELECT count() FROM failed_events_summary", 4),
    ("SELECT count() FROM learning_facts WHERE tenant = 'school-b'", 0),
]
REFUSED = [
    "SELECT total_rows FROM system.tables WHERE name = 'learning_facts'",  # every tenant's rows: 12, not 11
    "SELECT sum(rows) FROM system.parts WHERE table = 'learning_facts'",
    "SELECT count() FROM merge('learning', '^learning_facts$')",
    "SELECT count() FROM learning_facts SETTINGS additional_table_filters = {}",
]


@ON_THE_MODULES_LOOP
async def test_the_attacks_through_clickhouse_connect_show_no_other_schools_row(
        sink: tuple[Client, Credentials]) -> None:
    client, credentials = sink
    operator = await connect(client, "default", ANALYST)
    driver = await connect(client, *credentials["school-a"])
    try:
        everything = (await blocking(operator.query, "SELECT count() FROM learning.learning_facts")).result_rows
        assert everything == [(12,)]  # the operator's count: school-b's fact too
        for statement, expected in ATTACKS:
            assert (await blocking(driver.query, statement)).result_rows == [(expected,)], statement
        for statement in REFUSED:
            with pytest.raises(DatabaseError) as refused:
                await blocking(driver.query, statement)
            assert "school-b" not in str(refused.value), statement
        sent = {"additional_table_filters": "{'learning.learning_facts': '1'}", "max_execution_time": "9999",
                "readonly": "0", "max_rows_to_read": "0"}
        for name, value in sent.items():  # sent by the client: never applied (the driver refuses some itself) ...
            try:
                answered = await blocking(driver.query, "SELECT count() FROM learning_facts", settings={name: value})
            except DatabaseError as error:
                assert name in str(error)
            else:
                assert answered.result_rows == [(11,)], name
            # ... and the sink refuses each by name
            answer = await client.get("/", params={"query": "SELECT count() FROM learning_facts", name: value},
                                      headers={"X-ClickHouse-User": credentials["school-a"][0],
                                               "X-ClickHouse-Key": credentials["school-a"][1]})
            text = await answer.text()
            assert answer.status == 403 and name in text and "12" not in text.split("(version")[0], (name, text)
    finally:
        driver.close()
        operator.close()


@ON_THE_MODULES_LOOP
async def test_a_client_that_sends_its_wait_within_the_sinks_limit_is_answered(
        sink: tuple[Client, Credentials]) -> None:
    """clickhouse-go (under Grafana's ClickHouse plugin) sends ``max_execution_time`` = its deadline + 5 s with every
    query: at most the sink's own limit (60 s here) it is accepted and the sink's limit applies; above it, 0 (no
    limit) or not a number, refused by name."""
    client, credentials = sink
    user, secret = credentials["school-a"]
    for value, status in (("59", 200), ("60", 200), ("0.5", 200), ("61", 403), ("9999", 403), ("0", 403),
                          ("-1", 403), ("inf", 403), ("nan", 403), ("x", 403)):
        answer = await client.get("/", params={"query": "SELECT uniqExact(tenant) FROM current_facts",
                                               "max_execution_time": value},
                                  headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": secret})
        text = await answer.text()
        assert answer.status == status, (value, text)
        assert text == "1\n" if status == 200 else "max_execution_time" in text, (value, text)


@ON_THE_MODULES_LOOP
async def test_the_catalog_lists_the_tables_but_not_their_sizes_to_a_school(sink: tuple[Client, Credentials]) -> None:
    """The catalog's filter keeps rows (tables), not columns: its row, byte and part counts are every tenant's
    together, so a school credential may not read them; the names, engines and columns clients list stay readable,
    and the operator reads the sizes."""
    client, credentials = sink
    driver = await connect(client, *credentials["school-a"])
    operator = await connect(client, "default", ANALYST)
    try:
        for statement in ("SELECT total_rows FROM system.tables WHERE name = 'learning_facts'",
                          "SELECT name, t.total_bytes FROM system.tables AS t",
                          "SELECT * FROM system.tables", "SELECT t.* FROM system.tables AS t",
                          "SELECT COLUMNS('rows') FROM system.tables",
                          "SELECT sum(data_uncompressed_bytes) FROM system.columns WHERE table = 'learning_facts'",
                          "SELECT x FROM (SELECT parts AS x FROM `system`.`tables`)",
                          "SELECT count() FROM learning_facts WHERE 12 IN (SELECT lifetime_rows FROM system.tables)"):
            with pytest.raises(DatabaseError, match="497"):
                await blocking(driver.query, statement)
        listed = await blocking(driver.query, "SELECT name, engine, comment FROM system.tables ORDER BY name")
        assert {row[0] for row in listed.result_rows} == ANALYST_TABLES
        columns = await blocking(driver.query, "SELECT count() FROM system.columns WHERE table = 'learning_facts'")
        assert columns.result_rows[0][0] > 10
        sizes = await blocking(operator.query, "SELECT total_rows FROM system.tables WHERE name = 'learning_facts'")
        assert sizes.result_rows == [(12,)]
    finally:
        driver.close()
        operator.close()


@ON_THE_MODULES_LOOP
async def test_a_revoked_credential_is_refused_by_the_running_sink_within_a_second_or_so(
        own_sink: tuple[Client, Credentials], tmp_path: Path) -> None:
    client, credentials = own_sink
    user, secret = credentials["school-a"]
    driver = await connect(client, user, secret)
    try:
        assert (await blocking(driver.query, "SELECT uniqExact(tenant) FROM current_facts")).result_rows == [(1,)]
        AnalystRegistry(tmp_path / "analysts.json").revoke(user)  # what `caliper-pipeline analysts revoke` runs
        refused = False
        for _ in range(30):  # the sink re-reads the file at most once a second: refused within 3 s here
            try:
                await blocking(driver.query, "SELECT 1")
            except DatabaseError as error:
                assert "516" in str(error)
                refused = True
                break
            await asyncio.sleep(0.1)
        assert refused
        with pytest.raises(DatabaseError, match="516"):
            await connect(client, user, secret)
        other = await connect(client, *credentials["school-b"])  # another school's credential still reads
        try:
            assert (await blocking(other.query, "SELECT count() FROM current_facts")).result_rows == [(1,)]
        finally:
            other.close()
    finally:
        driver.close()
