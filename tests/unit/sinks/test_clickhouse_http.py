"""ClickHouse's HTTP interface on the sink (``sinks.clickhouse_http``), on the real engine, with the real clients:
clickhouse-connect, the SQLAlchemy ``clickhousedb://`` dialect and pandas through it, and curl; what it refuses."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import subprocess
import typing
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import clickhouse_connect
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy
from aiohttp.test_utils import TestClient
from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import SecretStr
from sink_fixtures import Seed, insert, make_fact, sink_test_client
from test_sink_sql_boundaries import EMAIL, seed_private_rows
from yarl import URL

from sinks.clickhouse import ClickHouse
from sinks.clickhouse_sql import FORMATS
from sinks.process import SINK_PROCESS
from sinks.settings import QueryLimits, SinkSettings
from sinks.tables import ANALYST_TABLES

ANALYST, ADMIN = "analyst-token-0123456789", "admin-token-0123456789"
Client = TestClient[typing.Any, typing.Any]
T = typing.TypeVar("T")


def seed(target: ClickHouse) -> None:
    """The private rows, and eleven facts of three students."""
    seed_private_rows(target)
    insert(target, [make_fact(n, student_id=f"student-{n % 3}") for n in range(2, 12)], "more")


@pytest.fixture
def engine_seed(request: pytest.FixtureRequest) -> Seed | None:
    """The rows the tests of ``sink`` read, loaded once for those that only read; the others start from none."""
    return seed if "sink" in request.fixturenames else None


@pytest.fixture
async def sink(target: ClickHouse, tmp_path: Path) -> AsyncIterator[Client]:
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), admin_token=SecretStr(ADMIN),
                            queries=QueryLimits(max_execution_seconds=20, max_result_bytes=256 * 1024))
    async with sink_test_client(target, tmp_path, settings) as client:
        yield client


def port(sink: Client) -> int:
    assert sink.server.port is not None
    return sink.server.port


async def blocking(function: Callable[..., T], *args: typing.Any, **kwargs: typing.Any) -> T:
    """A real client's blocking call, in a thread: the sink answers it from this test's event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


def connect_client(sink: Client, password: str = ANALYST, username: str = "default") -> typing.Any:
    return clickhouse_connect.get_client(host="127.0.0.1", port=port(sink), username=username, password=password)


# -- clickhouse-connect, unmodified ---------------------------------------------------------------------------

async def test_clickhouse_connect_queries_dataframes_arrow_commands_and_parameters(sink: Client) -> None:
    client = await blocking(connect_client, sink)
    try:
        result = await blocking(client.query, "SELECT event_id, student_id FROM learning_facts ORDER BY event_id")
        assert result.column_names == ("event_id", "student_id")
        assert len(result.result_rows) == 11 and result.result_rows[0] == ("event-1", "student-1")
        frame = await blocking(client.query_df, "SELECT student_id, count() AS n FROM learning_facts "
                                                "GROUP BY student_id ORDER BY student_id")
        assert list(frame["student_id"]) == ["student-0", "student-1", "student-2"]
        assert int(frame["n"].sum()) == 11
        table = await blocking(client.query_arrow, "SELECT event_id, event_time FROM learning_facts ORDER BY event_id")
        assert table.num_rows == 11 and table.column_names == ["event_id", "event_time"]
        assert await blocking(client.command, "SELECT 1") == 1
        found = await blocking(client.query, "SELECT count() FROM learning_facts WHERE student_id = {s:String}",
                               parameters={"s": "student-0"})
        assert found.result_rows == [(3,)]
    finally:
        client.close()


@pytest.mark.parametrize("compress", ["zstd", "lz4", "gzip"])
async def test_a_client_that_asks_for_compressed_answers_reads_the_uncompressed_ones(sink: Client,
                                                                                    compress: str) -> None:
    client = await blocking(clickhouse_connect.get_client, host="127.0.0.1", port=port(sink), password=ANALYST,
                            compress=compress)
    try:
        assert (await blocking(client.query, "SELECT count() FROM learning_facts")).result_rows == [(11,)]
        with pytest.raises(DatabaseError, match=r"(?i)readonly"):  # the driver reads system.settings: read-only
            await blocking(client.query, "SELECT 1", settings={"max_execution_time": 3600})
    finally:
        client.close()


async def test_a_parameter_is_a_value_never_sql(sink: Client) -> None:
    """``param_x`` values are parsed by the engine as the placeholder's type: an injection attempt is a string
    that matches nothing, or a value that does not parse (400), never a statement."""
    client = await blocking(connect_client, sink)
    try:
        for attempt in ("x' OR '1'='1", "student-1' UNION ALL SELECT payload FROM raw_events --",
                        "\\' OR 1=1 --"):
            result = await blocking(client.query, "SELECT count() FROM learning_facts WHERE student_id = {s:String}",
                                    parameters={"s": attempt})
            assert result.result_rows == [(0,)], attempt
    finally:
        client.close()
    for value in ("1 OR 1=1", "1) UNION ALL SELECT 2 --"):
        answer = await sink.get("/", params={"query": "SELECT {n:UInt32}", "param_n": value},
                                headers={"X-ClickHouse-Key": ANALYST})
        assert answer.status == 400 and answer.headers["X-ClickHouse-Exception-Code"] == "457", value
    status, code, body = await ask(sink, "SELECT {n:UInt32", param_n="1")
    assert (status, code) == (400, "62") and body.startswith("Code: 62. DB::Exception: Syntax error")
    answer = await sink.get("/", params={"query": "SELECT * FROM {t:Identifier}", "param_t": "raw_events"},
                            headers={"X-ClickHouse-Key": ANALYST})
    assert answer.status == 403 and EMAIL not in await answer.text()


# -- SQLAlchemy and pandas ---------------------------------------------------------------------------------

async def test_sqlalchemy_dialect_reflects_only_the_readable_tables_and_reads_them(sink: Client) -> None:
    engine = sqlalchemy.create_engine(f"clickhousedb://default:{ANALYST}@127.0.0.1:{port(sink)}/learning")

    def reflect() -> tuple[list[str], list[str], list[str], bool, bool]:
        inspector = sqlalchemy.inspect(engine)
        columns = [column["name"] for column in inspector.get_columns("learning_facts")]
        return (inspector.get_table_names(), inspector.get_schema_names(), columns,
                inspector.has_table("learning_facts"), inspector.has_table("raw_events"))

    try:
        tables, schemas, columns, has_facts, has_raw = await blocking(reflect)
        assert set(tables) == ANALYST_TABLES
        assert schemas == ["learning"]
        assert {"event_id", "student_id", "event_time"} <= set(columns)
        assert has_facts and not has_raw

        def select() -> list[typing.Any]:
            facts = sqlalchemy.Table("learning_facts", sqlalchemy.MetaData(), autoload_with=engine)
            statement = sqlalchemy.select(facts.c.event_id).where(facts.c.student_id == "student-1")
            with engine.connect() as connection:
                return sorted(row[0] for row in connection.execute(statement))

        assert await blocking(select) == ["event-1", "event-10", "event-4", "event-7"]
        frame = await blocking(pd.read_sql, "SELECT event_id, received_time FROM learning_facts ORDER BY event_id",
                               engine)
        assert len(frame) == 11 and list(frame.columns) == ["event_id", "received_time"]
    finally:
        engine.dispose()


# -- curl ----------------------------------------------------------------------------------------------------

async def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    """The real curl binary: status, headers (lower-cased names) and body."""
    binary = shutil.which("curl")
    if binary is None:
        pytest.skip("no curl binary here")
    process = await asyncio.create_subprocess_exec(binary, "-sS", "-D", "-", *args, stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_curl_get_post_ping_and_basic_auth(sink: Client) -> None:
    base = f"http://127.0.0.1:{port(sink)}"
    assert (await curl(f"{base}/ping"))[::2] == (200, b"Ok.\n")
    status, headers, body = await curl("-u", f"default:{ANALYST}", f"{base}/?query=SELECT%201")
    assert (status, body) == (200, b"1\n")
    assert headers["x-clickhouse-format"] == "TabSeparated" and headers["x-clickhouse-timezone"]
    status, _, body = await curl("-u", f"analyst:{ANALYST}", "--data-binary",
                                 "SELECT count() FROM learning_facts FORMAT JSONEachRow", f"{base}/")
    assert (status, body) == (200, b'{"count()":11}\n')
    status, _, body = await curl(f"{base}/?user=default&password={ANALYST}&query=SELECT%20count()%20FROM%20",
                                 "--data-binary", "learning_facts")  # the URL's query and the body, joined
    assert (status, body) == (200, b"11\n")
    status, headers, body = await curl("-H", "X-ClickHouse-User: default", "-H", f"X-ClickHouse-Key: {ANALYST}",
                                       f"{base}/?query=SELECT%202&default_format=CSVWithNames")
    assert (status, body, headers["content-type"]) == (200, b'"2"\n2\n', "text/csv; charset=UTF-8")


# -- every format ------------------------------------------------------------------------------------------

STATEMENT = "SELECT event_id, student_id, event_time FROM learning_facts ORDER BY event_id"


async def fetch(sink: Client, statement: str, **params: str) -> tuple[int, bytes, typing.Any]:
    answer = await sink.post("/", params=params, data=statement, headers={"X-ClickHouse-Key": ANALYST})
    return answer.status, await answer.read(), answer.headers


@pytest.mark.parametrize("block_rows", [128, 8192])
async def test_each_format_round_trips(target: ClickHouse, tmp_path: Path, block_rows: int) -> None:
    """Each format, in one block and in many (the engine renders each block as a document of its own: the sink
    joins them into one), read back by its own reader."""
    insert(target, [make_fact(n) for n in range(300)], "many")
    settings = SinkSettings(analyst_token=SecretStr(ANALYST),
                            queries=QueryLimits(block_rows=block_rows, max_result_bytes=4 << 20))
    async with sink_test_client(target, tmp_path, settings) as sink:
        expected = [f"event-{n}" for n in sorted(range(300), key=lambda n: f"event-{n}")]
        readers: dict[str, Callable[[bytes], list[str]]] = {
            "TabSeparated": lambda body: [line.split("\t")[0] for line in body.decode().splitlines()],
            "TabSeparatedWithNames": lambda body: [line.split("\t")[0] for line in body.decode().splitlines()[1:]],
            "TabSeparatedWithNamesAndTypes": lambda body: [
                line.split("\t")[0] for line in body.decode().splitlines()[2:]],
            "CSV": lambda body: list(pd.read_csv(io.BytesIO(body), header=None)[0]),
            "CSVWithNames": lambda body: list(pd.read_csv(io.BytesIO(body))["event_id"]),
            "JSON": lambda body: [row["event_id"] for row in json.loads(body)["data"]],
            "JSONCompact": lambda body: [row[0] for row in json.loads(body)["data"]],
            "JSONEachRow": lambda body: list(pd.read_json(io.BytesIO(body), lines=True)["event_id"]),
            "Parquet": lambda body: pq.read_table(pa.BufferReader(body)).column("event_id").to_pylist(),
            "Arrow": lambda body: pa.ipc.open_file(body).read_all().column("event_id").to_pylist(),
            "ArrowStream": lambda body: pa.ipc.open_stream(body).read_all().column("event_id").to_pylist(),
        }
        for fmt, read in readers.items():
            status, body, headers = await fetch(sink, f"{STATEMENT} FORMAT {fmt}")
            assert status == 200, (fmt, body[:300])
            assert headers["X-ClickHouse-Format"] == fmt
            assert [str(value) for value in read(body)] == expected, fmt
        for fmt in sorted(set(FORMATS.values()) - readers.keys()):  # every other format served: one answer
            status, body, headers = await fetch(sink, f"{STATEMENT} FORMAT {fmt}")
            assert status == 200 and headers["X-ClickHouse-Format"] == fmt, (fmt, body[:300])
            if fmt not in ("Null", "Native", "RowBinary", "RowBinaryWithNames", "RowBinaryWithNamesAndTypes"):
                assert body.count(b"event-1") == 111, fmt  # event-1, event-10 ... event-199, once each
        client = await blocking(clickhouse_connect.get_client, host="127.0.0.1", port=port(sink),
                                password=ANALYST)
        try:  # clickhouse-connect reads Native
            result = await blocking(client.query, STATEMENT)
            assert [row[0] for row in result.result_rows] == expected
            raw = await blocking(client.raw_query, "SELECT event_id, student_id FROM learning_facts ORDER BY event_id",
                                 fmt="RowBinaryWithNamesAndTypes")
        finally:
            client.close()
        assert [row[0] for row in row_binary_strings(raw)] == expected


def row_binary_strings(data: bytes) -> list[list[str]]:
    """The rows of a RowBinaryWithNamesAndTypes answer whose columns are all String."""
    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            value |= (data[at] & 0x7F) << shift
            at += 1
            if data[at - 1] < 0x80:
                return value, at
            shift += 7

    def string(at: int) -> tuple[str, int]:
        length, at = varint(at)
        return data[at:at + length].decode(), at + length

    count, at = varint(0)
    header = []
    for _ in range(2 * count):
        text, at = string(at)
        header.append(text)
    assert header[count:] == ["String"] * count
    rows = []
    while at < len(data):
        row = []
        for _ in range(count):
            text, at = string(at)
            row.append(text)
        rows.append(row)
    return rows


# -- refusals --------------------------------------------------------------------------------------------

async def ask(sink: Client, statement: str, *, headers: dict[str, str] | None = None,
              **params: str) -> tuple[int, str, str]:
    """Status, ClickHouse error code (header) and body of a GET / for ``statement``."""
    answer = await sink.get("/", params={"query": statement, **params},
                            headers={"X-ClickHouse-Key": ANALYST} if headers is None else headers)
    return answer.status, answer.headers.get("X-ClickHouse-Exception-Code", ""), await answer.text()


async def test_a_missing_or_wrong_credential_is_refused_as_clickhouse_does(sink: Client) -> None:
    status, code, body = await ask(sink, "SELECT 1", headers={})
    assert (status, code) == (401, "516") and body.startswith("Code: 516. DB::Exception: ")
    assert "AUTHENTICATION_FAILED" in body
    for headers in ({"X-ClickHouse-Key": "wrong"}, {"X-ClickHouse-User": "root", "X-ClickHouse-Key": ANALYST},
                    {"Authorization": "Basic " + base64.b64encode(b"default:wrong").decode()}):
        assert (await ask(sink, "SELECT 1", headers=headers))[:2] == (403, "516"), headers
    assert (await ask(sink, "SELECT 1", headers={}, user="default", password="wrong"))[:2] == (403, "516")
    both = {"X-ClickHouse-Key": ANALYST, "Authorization": "Basic " + base64.b64encode(b"default:x").decode()}
    assert (await ask(sink, "SELECT 1", headers=both))[0] == 400  # one way per request
    with pytest.raises(DatabaseError, match="516"):
        await blocking(connect_client, sink, password="wrong")
    assert (await sink.get("/ping")).status == 200  # the health probe needs none


@pytest.mark.parametrize(("setting", "status", "code"), [
    ("max_memory_usage", 403, "164"), ("max_execution_time", 403, "164"), ("readonly", 403, "164"),
    ("max_result_rows", 403, "164"), ("max_result_bytes", 403, "164"), ("max_rows_to_read", 403, "164"),
    ("max_threads", 403, "164"), ("priority", 403, "164"), ("additional_table_filters", 403, "164"),
    ("max_bytes_to_read", 403, "164"), ("no_such_setting", 400, "115"), ("allow_ddl", 403, "164"),
])
async def test_a_setting_that_would_change_a_limit_or_is_unknown_is_refused_by_name(
        sink: Client, setting: str, status: int, code: str) -> None:
    answer = await ask(sink, "SELECT 1", headers=None, **{setting: "0"})
    assert answer[:2] == (status, code) and setting in answer[2]


async def test_the_settings_clients_send_are_accepted(sink: Client) -> None:
    sent = {"session_id": "s1", "wait_end_of_query": "1", "send_progress_in_http_headers": "1",
            "http_headers_progress_interval_ms": "10000", "database": "learning", "enable_http_compression": "1",
            "compress": "1", "date_time_input_format": "best_effort", "output_format_json_quote_64bit_integers": "0",
            "max_block_size": "100000", "client_protocol_version": "54405", "query_id": "q-1"}
    answer = await sink.get("/", params={"query": "SELECT 7", **sent}, headers={"X-ClickHouse-Key": ANALYST,
                                                                              "Accept-Encoding": "gzip, lz4, zstd"})
    assert (answer.status, await answer.read()) == (200, b"7\n")
    assert answer.headers["X-ClickHouse-Query-Id"] == "q-1" and "Content-Encoding" not in answer.headers
    assert (await ask(sink, "SELECT 1", database="system"))[:2] == (404, "81")
    status, code, body = await ask(sink, "SELECT 1", default_format="XML")
    assert (status, code) == (400, "73") and "default_format" in body


REFUSED = [
    "SELECT * FROM raw_events", "SELECT * FROM learning.failed_events", "SELECT * FROM failed_events_loader",
    "SELECT * FROM system.users", "SELECT * FROM system.processes", "SELECT * FROM system.query_log",
    "SELECT * FROM information_schema.tables", "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')", "SELECT * FROM url('http://127.0.0.1:1/', 'CSV')",
    "SELECT 1 INTO OUTFILE '/tmp/x.csv'", "SELECT 1 INTO OUTFILE '/tmp/x.csv' FORMAT CSV",
    "SELECT 1 SETTINGS max_threads = 64", "SELECT 1 FORMAT JSON SETTINGS max_threads = 64",
    "SELECT 1 SETTINGS max_memory_usage = 0 FORMAT JSON", "INSERT INTO learning_facts_in SELECT * FROM learning_facts",
    "DROP TABLE learning_facts", "SHOW CREATE TABLE raw_events", "SHOW SETTINGS LIKE '%'", "SHOW PROCESSLIST",
    "DESCRIBE TABLE raw_events FORMAT JSON", "SELECT * FROM merge('system', '^tables$')",
    "EXPLAIN SELECT 1", "SELECT * FROM system.tables AS t JOIN raw_events AS r ON 1",
]


@pytest.mark.parametrize("statement", REFUSED)
async def test_a_private_table_a_file_or_a_write_is_refused(sink: Client, statement: str) -> None:
    for method in ("GET", "POST"):
        if method == "GET":
            status, code, body = await ask(sink, statement)
        else:
            answer = await sink.post("/", data=statement, headers={"X-ClickHouse-Key": ANALYST})
            status, code, body = answer.status, answer.headers.get("X-ClickHouse-Exception-Code", ""), \
                await answer.text()
        assert status in (400, 403, 404) and code and body.startswith(f"Code: {code}."), (statement, body)
        assert EMAIL not in body and "root:" not in body


async def test_the_catalog_shows_the_readable_tables_of_the_pipeline_database_only(sink: Client) -> None:
    async def rows(statement: str) -> list[str]:
        status, _, body = await ask(sink, statement)
        assert status == 200, body
        return body.splitlines()

    assert set(await rows("SELECT name FROM system.tables")) == ANALYST_TABLES
    assert set(await rows("SELECT database FROM system.tables")) == {"learning"}
    assert await rows("SELECT name FROM system.tables WHERE name IN ('raw_events', 'failed_events', 'users')") == []
    assert set(await rows("SELECT DISTINCT table FROM system.columns")) == ANALYST_TABLES
    assert await rows("SELECT count() FROM system.columns WHERE table = 'raw_events'") == ["0"]
    assert await rows("SELECT name FROM system.databases") == ["learning"]
    assert await rows("SHOW DATABASES") == ["learning"]
    assert set(await rows("SHOW TABLES FROM learning")) == ANALYST_TABLES
    assert await rows("EXISTS TABLE learning.raw_events") == ["0"]
    assert await rows("EXISTS learning_facts") == ["1"]
    assert await rows("EXISTS DATABASE system") == ["0"]
    assert await rows("SELECT value FROM system.settings WHERE name = 'readonly'") == ["1"]


async def test_an_answer_past_max_result_bytes_is_refused_in_every_format(sink: Client) -> None:
    """The sink's bound on the bytes written holds for the formats it joins in pyarrow too."""
    for fmt in ("TabSeparated", "Arrow", "ArrowStream", "RowBinaryWithNamesAndTypes", "JSON"):
        status, code, body = await ask(sink, f"SELECT repeat('x', 1000) AS s FROM numbers(1000) FORMAT {fmt}")
        assert (status, code) == (400, "396") and "max_result_bytes" in body, fmt


async def test_the_endpoint_takes_the_slots_of_sql(target: ClickHouse, tmp_path: Path) -> None:
    """One pool for /sql and the ClickHouse endpoint: with its only slot taken, the endpoint answers 429."""
    settings = SinkSettings(analyst_token=SecretStr(ANALYST),
                            queries=QueryLimits(max_concurrent=1, queue_seconds=0))
    async with sink_test_client(target, tmp_path, settings) as sink:
        queries = sink.server.app[SINK_PROCESS].queries
        async with queries.slots.slot("someone"):  # a /sql statement running
            assert (await ask(sink, "SELECT 1"))[:2] == (429, "202")
        assert (await ask(sink, "SELECT 1"))[:2] == (200, "")


async def test_a_query_id_that_cannot_be_a_header_is_refused_by_name(sink: Client) -> None:
    for query_id in ("a\r\nX-Injected: 1", "x" * 300):
        status, code, body = await ask(sink, "SELECT 1", query_id=query_id)
        assert (status, code) == (400, "36") and "query_id" in body


@pytest.mark.parametrize("path", ["/", "/sql"])
async def test_a_body_that_is_not_utf8_is_refused_by_name_on_both_sql_endpoints(sink: Client, path: str) -> None:
    answer = await sink.post(path, data=b"SELECT '\xff\xfe'", headers={"X-ClickHouse-Key": ANALYST} if path == "/"
                             else {"Authorization": f"Bearer {ANALYST}"})
    assert answer.status == 400 and "UTF-8" in await answer.text()
    if path == "/":  # in the URL, an undecodable byte is read as U+FFFD (aiohttp): a string, never a 500
        answer = await sink.get(URL("/?query=SELECT%20%27%FF%27", encoded=True), headers={"X-ClickHouse-Key": ANALYST})
        assert (answer.status, await answer.read()) == (200, "\ufffd\n".encode())
