"""Every query of the Grafana dashboard (deploy/grafana/dashboards/caliper-pipeline.json), panels and template
variables, read from the file, expanded as Grafana and the ClickHouse plugin expand it
(tests/unit/project/grafana_panels.py) and run on the real engine loaded with known data: each answers exactly the rows
computed here from that data. A panel added to the file without an expectation here fails.

Each runs as each of the dashboard's possible data sources: the operator's analyst token (the sink's
``POST /sql``: every tenant), and a school's credential on the sink's ClickHouse HTTP interface through
clickhouse-connect (user = the credential's id, password = its secret, over HTTP, as Grafana's ClickHouse plugin
connects): a school sees its own rows only, whatever the tenant variable selects (another school's selection
answers nothing).

The data: the example data set of docs/analytics.md (tests/docs_dataset.py: two tenants' facts, failed events),
plus the delivery receipts the operators' panels read, written below: the accepted requests (``jobs``, through
the loader's entry table) and which of their events were loaded when (``job_facts``; the loader's view stamps
``loaded_time`` with the insert's time, so here it is written with known times instead).
"""

from __future__ import annotations

import asyncio
import typing
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from docs_dataset import DOCS_JOB, failures, load
from grafana_panels import PanelQuery, QueryContext, dashboard, expand, panel_queries, variable_queries
from pydantic import SecretStr
from sink_fixtures import SharedEngine, learning_database, sink_test_client

from sinks.analysts import AnalystRegistry
from sinks.clickhouse import ClickHouse
from sinks.settings import SinkSettings
from sinks.tables import JOB_FACTS_TABLE, JOBS_INPUT_TABLE
from sinks.writer import INSERT_SETTINGS

Rows = list[tuple[typing.Any, ...]]
Run = Callable[[str], typing.Awaitable[Rows]]

# the credentials the dashboard's data source may use: the operator's analyst token (POST /sql), or a school's
ANALYST_TOKEN = "grafana-analyst-token-0123456789"
OPERATOR = "operator"
CREDENTIALS = (OPERATOR, "school-a", "school-b")  # a school's credential reads that tenant
INTERVAL_S = 3600
SELECTIONS = {"school-a": ("school-a",), "all": ("school-a", "school-b")}  # ``All`` expands to every value
# the receipts are kept 30 days (a TTL): they are written in the last days, the example facts in November 2026
RECENT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
RANGES = {"docs week": (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)),
          "recent days": (RECENT, RECENT + timedelta(days=3))}


def _at(hours: float) -> int:
    """Milliseconds since the epoch, ``hours`` after the start of the recent days."""
    return int((RECENT + timedelta(hours=hours)).timestamp() * 1000)


# (tenant, job, received, parts: event indexes of each part)
JOBS = [
    ("school-a", "gfjob1" + "a" * 34, _at(10), [[0, 1, 2]]),
    ("school-a", DOCS_JOB, _at(33 + 59 / 60), [[0, 1], [2, 3]]),  # 1 and 3 dead-lettered (docs_dataset)
    ("school-b", "gfjob2" + "b" * 34, _at(23), [[0, 1]]),
    ("school-a", "gfjob0" + "c" * 34, _at(-1), [[0]]),  # received before the range, loaded in it
]
# (tenant, job, event index, fact index, loaded)
LOADED = [
    ("school-a", JOBS[0][1], 0, 0, JOBS[0][2] + 2000),
    ("school-a", JOBS[0][1], 1, 0, JOBS[0][2] + 2000),
    ("school-a", JOBS[0][1], 1, 1, JOBS[0][2] + 2000),  # an event with two facts
    ("school-a", JOBS[0][1], 2, 0, JOBS[0][2] + 4000),
    ("school-a", DOCS_JOB, 0, 0, JOBS[1][2] + 90_000),
    ("school-a", DOCS_JOB, 1, 0, JOBS[1][2] + 7_200_000),  # dead-lettered, replayed and loaded: done once
    # DOCS_JOB's index 2: neither loaded nor failed (waiting); index 3: dead-lettered
    ("school-b", JOBS[2][1], 0, 0, JOBS[2][2] + 10_000),
    ("school-b", JOBS[2][1], 1, 0, JOBS[2][2] + 3_605_000),  # the next interval
    ("school-a", JOBS[3][1], 0, 0, _at(0.5)),
]


def load_receipts(owner: ClickHouse) -> None:
    rows = [{"tenant": tenant, "job_id": job, "part": part, "parts": len(parts), "client_id": "app",
             "endpoint": "caliper", "received_time_ms": received, "accepted": sum(map(len, parts)),
             "entities": 0, "event_indexes": indexes, "event_ids": [f"urn:uuid:{job}-{i}" for i in indexes]}
            for tenant, job, received, parts in JOBS for part, indexes in enumerate(parts)]
    owner.insert_raw(JOBS_INPUT_TABLE, b"".join(orjson.dumps(row) + b"\n" for row in rows), "JSONEachRow",
                     {**INSERT_SETTINGS, "insert_deduplication_token": "grafana-jobs"})
    loaded = [{"tenant": t, "job_id": j, "envelope_index": e, "fact_index": f, "event_id": f"urn:uuid:{j}-{e}",
               "loaded_time": when / 1000} for t, j, e, f, when in LOADED]
    owner.insert_raw(JOB_FACTS_TABLE, b"".join(orjson.dumps(row) + b"\n" for row in loaded), "JSONEachRow",
                     {**INSERT_SETTINGS, "insert_deduplication_token": "grafana-job-facts"})


# -- the expected answers, from the data above and docs_dataset's numbers ------------------------------------

@dataclass(frozen=True)
class Case:
    """The dashboard's state for one run of its queries: the tenants selected and the time range."""

    tenants: tuple[str, ...]
    start: datetime
    end: datetime
    visible: tuple[str, ...] = ("school-a", "school-b")  # the tenants the credential reads

    def seen_by(self, credential: str) -> Case:
        """The state as a credential sees it: a school's credential reads its tenant's rows only."""
        if credential == OPERATOR:
            return self
        return replace(self, tenants=tuple(t for t in self.tenants if t == credential), visible=(credential,))

    def in_range(self, ms: int) -> bool:  # $__timeFilter: both ends included
        return self.start.timestamp() * 1000 <= ms <= self.end.timestamp() * 1000

    def has_day(self, day: str) -> bool:  # $__dateFilter: the range's UTC dates, both included
        return self.start.date() <= date.fromisoformat(day) <= self.end.date()


def _bucket(ms: int) -> str:  # $__timeInterval
    seconds = ms // 1000 // INTERVAL_S * INTERVAL_S
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _throughput(case: Case) -> Rows:
    accepted: dict[str, int] = defaultdict(int)
    loaded: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    for _, _, received, parts in (j for j in JOBS if j[0] in case.tenants and case.in_range(j[2])):
        accepted[_bucket(received)] += sum(map(len, parts))
    for tenant, job, index, _, when in (f for f in LOADED if f[0] in case.tenants and case.in_range(f[4])):
        loaded[_bucket(when)].add((tenant, job, index))
    return [(t, accepted[t] / INTERVAL_S, len(loaded[t]) / INTERVAL_S) for t in sorted({*accepted, *loaded})]


def _freshness(case: Case) -> Rows:
    received = {(t, j): r for t, j, r, _ in JOBS}
    delays: dict[str, list[int]] = defaultdict(list)
    for tenant, job, _, _, when in (f for f in LOADED if f[0] in case.tenants and case.in_range(f[4])):
        delays[_bucket(when)].append(when - received[tenant, job])
    return [(t, round(sum(d) / len(d) / 1000, 3), max(d) / 1000) for t, d in sorted(delays.items())]


def _failures(case: Case) -> Rows:
    """Per interval: the failures of every reason code (the codes themselves are the failed events' own)."""
    counts: dict[str, int] = defaultdict(int)
    for row in failures():
        if row["tenant"] in case.tenants and case.in_range(row["failed_time_ms"]):
            counts[_bucket(row["failed_time_ms"])] += 1
    return sorted(counts.items())


def _waiting(case: Case) -> Rows:
    done = {(t, j, e) for t, j, e, _, _ in LOADED}
    done |= {(r["tenant"], r["job_id"], r["envelope_index"]) for r in failures() if r["job_id"]}
    counts: dict[str, int] = defaultdict(int)
    for tenant, job, received, parts in (j for j in JOBS if j[0] in case.tenants and case.in_range(j[2])):
        counts[_bucket(received)] += sum(1 for p in parts for i in p if (tenant, job, i) not in done)
    return sorted((t, n) for t, n in counts.items() if n)


# docs_dataset: local days of school-a (America/Sao_Paulo) and school-b (UTC)
DAILY_XP = {"school-a": [("2026-11-02", "alice", 30), ("2026-11-02", "carla", 5), ("2026-11-03", "bruno", 25),
                         ("2026-11-04", "alice", 15)],
            "school-b": [("2026-11-02", "dora", 50)]}
# skill, component, students, mastered (best >= 80 %), mean best score; when each was last practised
MASTERY = {"school-a": [(("EF05MA01", "MA", 1, 1, 0.9), "2026-11-04T14:00:00"),
                        (("EF15LP01", "LP", 1, 0, 0.4), "2026-11-03T14:00:00")], "school-b": []}
# seconds (active, total) per local day: alice 600 active + 42 on the 2nd, hub h1 300 (2nd) and 360 (4th),
# bruno 1200 active + 42 on the 3rd, hub h2 900 (3rd); school-b's dora spent no time
TIME_ON_TASK = {"school-a": {"2026-11-02": (600, 942), "2026-11-03": (1200, 2142), "2026-11-04": (0, 360)},
                "school-b": {"2026-11-02": (0, 0)}}


def _daily_xp(case: Case) -> Rows:
    return sorted(row for tenant in case.tenants for row in DAILY_XP[tenant] if case.has_day(row[0]))


def _mastery(case: Case) -> Rows:
    moment = lambda text: int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)  # noqa: E731
    return sorted(row for tenant in case.tenants for row, last in MASTERY[tenant] if case.in_range(moment(last)))


def _time_on_task(case: Case) -> Rows:
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for tenant in case.tenants:
        for day, (active, total) in TIME_ON_TASK[tenant].items():
            if case.has_day(day):
                days[day][0] += active
                days[day][1] += total
    return [(day, round(active / 60, 1), round(total / 60, 1)) for day, (active, total) in sorted(days.items())]


EXPECTED: dict[str, Callable[[Case], Rows]] = {
    "Events accepted and loaded per second": _throughput,
    "Freshness: seconds from received to loaded": _freshness,
    "Failures by reason code": _failures,
    "Accepted events not loaded yet": _waiting,
    "Daily XP per student (local days)": _daily_xp,
    "BNCC mastery per skill": _mastery,
    "Time on task per local day": _time_on_task,
    "variable tenant": lambda case: [(tenant,) for tenant in case.visible],
}
CASES = {f"{selection}, {name}": Case(tenants, *bounds)
         for selection, tenants in SELECTIONS.items() for name, bounds in RANGES.items()}


def _normalized(rows: Rows) -> Rows:
    """Values as comparable: numbers (JSON quotes 64-bit integers) as floats rounded to 6 places, times (Native)
    as JSON writes them."""
    def value(v: typing.Any) -> typing.Any:
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, date):
            return v.isoformat()
        try:
            return round(float(v), 6)
        except (TypeError, ValueError):
            return v
    return [tuple(value(v) for v in row) for row in rows]


def _answer(query: PanelQuery, rows: Rows) -> Rows:
    if query.title == "Failures by reason code":
        # one row per interval and reason code: the codes must be named, and add up to the failures per interval
        assert all(isinstance(code, str) and code for _, code, _ in rows), rows
        totals: dict[str, int] = defaultdict(int)
        for time, _, count in rows:
            totals[time] += int(count)
        return sorted(totals.items())
    return rows


# -- the runner: the credential and the endpoint the dashboard's queries go through -----------------------------

@pytest.fixture(scope="module")
def owner(chdb_engine: SharedEngine) -> Iterator[ClickHouse]:
    for clickhouse in learning_database(chdb_engine):
        load(clickhouse)
        load_receipts(clickhouse)
        yield clickhouse


@pytest.fixture(scope="module")
def schools(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The analysts file, with a credential of each school (``caliper-pipeline analysts add``): its id and secret."""
    path = tmp_path_factory.mktemp("analysts") / "analysts.json"
    registry = AnalystRegistry(path)
    logins = {}
    for school in CREDENTIALS[1:]:
        credential, secret = registry.add([school], analyst_id=f"grafana-{school}")
        logins[school] = (credential.analyst_id, secret)
    return path, logins


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CREDENTIALS)
async def run_sql(request: pytest.FixtureRequest, owner: ClickHouse, tmp_path_factory: pytest.TempPathFactory,
                  schools: tuple[Path, dict[str, tuple[str, str]]]) -> AsyncIterator[tuple[str, Run]]:
    """The credential, and what runs one statement as the dashboard's data source would with it, the rows in the
    statement's column order: the operator's analyst token on the sink's ``POST /sql``; a school's credential on
    the sink's ClickHouse HTTP interface, through clickhouse-connect (Native answers, as the plugin reads). One
    sink and one driver per credential for the module's queries, which only read."""
    credential: str = request.param
    settings = SinkSettings(analyst_token=SecretStr(ANALYST_TOKEN), analysts_file=schools[0])
    async with sink_test_client(owner, tmp_path_factory.mktemp("grafana"), settings) as client:
        if credential == OPERATOR:
            async def run(sql: str) -> Rows:
                answer = await _post(client, sql)
                return [tuple(row.values()) for row in orjson.loads(answer)["data"]]
            yield credential, run
            return
        user, password = schools[1][credential]
        driver = await asyncio.to_thread(clickhouse_connect.get_client, host="127.0.0.1", port=client.server.port,
                                         username=user, password=password, database="learning")
        try:
            async def run_school(sql: str) -> Rows:
                return [tuple(row) for row in (await asyncio.to_thread(driver.query, sql)).result_rows]
            yield credential, run_school
        finally:
            driver.close()


async def _post(client: TestClient[typing.Any, typing.Any], sql: str) -> bytes:
    answer = await client.post("/sql", params={"format": "json"}, data=sql,
                               headers={"Authorization": f"Bearer {ANALYST_TOKEN}"})
    body = await answer.read()
    assert answer.status == 200, body.decode(errors="replace")
    return body


QUERIES = [*panel_queries(dashboard()), *variable_queries(dashboard())]
# the plugin's own test cases (pkg/macros/macros_test.go): this range, a one-minute interval
PLUGIN_CONTEXT = QueryContext(datetime(2014, 11, 12, 11, 45, 26, 123000, UTC),
                              datetime(2015, 11, 12, 11, 45, 26, 456000, UTC), 60, {"tenant": ("school-a",)})
PLUGIN_CASES = {
    "select * from foo where $__timeFilter(cast(sth as timestamp) )":
        "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= "
        "toDateTime(1447328726)",
    "select * from foo where ( date >= $__fromTime_ms ) and ( date <= $__toTime_ms ) limit 100":
        "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) ) and ( date <= "
        "fromUnixTimestamp64Milli(1447328726456) ) limit 100",
    "SELECT $__timeInterval($__fromTime) AS from_time":
        "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second) AS from_time",
    "SELECT $__timeInterval_ms($__fromTime_ms)":
        "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3), INTERVAL 60000 "
        "millisecond)",
    "select * from foo where $__timeFilter(coalesce(closed_at, $__toTime))":
        "select * from foo where coalesce(closed_at, toDateTime(1447328726)) >= toDateTime(1415792726) AND "
        "coalesce(closed_at, toDateTime(1447328726)) <= toDateTime(1447328726)",
    "$__dateFilter(dateCol)": "dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')",
    "$__timeFrom(ts) $__timeTo(ts) $__interval_s": "ts >= toDateTime(1415792726) ts <= toDateTime(1447328726) 60",
    # Grafana's template service before: a value as it is, or quoted and escaped where the query asks
    "t = '$tenant' AND t IN (${tenant:singlequote})": "t = 'school-a' AND t IN ('school-a')",
}


@pytest.mark.parametrize("raw", sorted(PLUGIN_CASES))
def test_queries_expand_as_grafana_and_the_plugin_expand_them(raw: str) -> None:
    assert expand(raw, PLUGIN_CONTEXT) == PLUGIN_CASES[raw]


def test_several_values_are_quoted_and_unknown_macros_refused() -> None:
    """``${tenant:singlequote}`` escapes a quote in a value; the plugin's default format for several values does
    not, which is why the dashboard never writes a bare ``$tenant``."""
    several = QueryContext(PLUGIN_CONTEXT.start, PLUGIN_CONTEXT.end, 0.2, {"tenant": ("a", "o'b")})
    assert expand("IN (${tenant:singlequote}) IN ($tenant) $__interval_s", several) == \
        "IN ('a','o\\'b') IN ('a','o'b') 1"
    assert all("$tenant" not in query.raw_sql and "${tenant}" not in query.raw_sql for query in QUERIES)
    with pytest.raises(ValueError, match="not a macro"):
        expand("SELECT $__nope(x)", several)


def test_the_dashboard_has_the_operators_and_the_analysts_panels() -> None:
    titles = [query.title for query in QUERIES]
    assert len(titles) >= 8
    assert set(titles) == set(EXPECTED), "every query of the dashboard has its expected answer here, and no other"
    for title, expected in EXPECTED.items():  # the data gives every query rows to answer
        assert any(expected(case) for case in CASES.values()), title


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("query", QUERIES, ids=[q.title for q in QUERIES])
@pytest.mark.asyncio(loop_scope="module")  # the loop of the module's sinks (run_sql)
async def test_every_dashboard_query_answers_the_expected_rows(query: PanelQuery, case: str,
                                                               run_sql: tuple[str, Run]) -> None:
    """With a school's credential, the other school's selection answers nothing, and ``All`` that school's rows."""
    credential, run = run_sql
    state = CASES[case]
    context = QueryContext(state.start, state.end, INTERVAL_S, {"tenant": state.tenants})
    rows = await run(expand(query.raw_sql, context))
    assert _normalized(_answer(query, rows)) == _normalized(EXPECTED[query.title](state.seen_by(credential)))


def test_the_data_tells_a_schools_view_from_the_operators_in_every_panel() -> None:
    """school-a's credential has rows to see in each query, and each has a state where a school's answer differs
    from the operator's: a leak or an over-filter changes an answer."""
    for title, expected in EXPECTED.items():
        assert any(expected(case.seen_by("school-a")) for case in CASES.values()), title
        assert any(expected(case) != expected(case.seen_by(school))
                   for case in CASES.values() for school in CREDENTIALS[1:]), title
