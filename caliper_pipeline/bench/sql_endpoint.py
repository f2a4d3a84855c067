"""``caliper-pipeline bench sql-endpoint``: what the sink's SQL endpoints add to a query, against chDB directly.

One process: embedded chDB in a temporary directory with the migrations, the sink's HTTP app (default query
limits) on 127.0.0.1 in a thread of its own. The same statements, ``count`` times each, in turn:

- ``direct``: a chDB connection of the same engine (``chdb.connect(path).query``): no policy, no HTTP;
- ``clickhouse_http``: ``GET /?query=`` on the sink's ClickHouse interface (``sinks.clickhouse_http``), read by
  ``urllib`` (one connection per request);
- ``clickhouse_connect``: the same through clickhouse-connect (``raw_query``, TabSeparated: the driver's HTTP
  path without its result parsing), one client kept open;
- ``sql``: ``POST /sql?format=tsv``, the same way as ``clickhouse_http``;
- ``clickhouse_http_school``, ``clickhouse_connect_school``: the first two with a school credential
  (``sinks.analysts``, made by ``AnalystRegistry.add``: user = its id, password = its secret) instead of the
  operator's analyst token: its connections carry the tenants' filter, its secret is checked once (one scrypt,
  then remembered).

Statements: ``SELECT 1`` (what a query costs whatever it reads: the policy's parse and checks, a pooled
connection, HTTP), ``rows`` rows of two columns in TabSeparated, and a count over ``current_facts`` (empty here: a
view the school's filter reaches). Figures: median and 90th percentile in ms.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOKEN = "bench-analyst-token"
SCHOOL = "bench-school"


def _timings(call: Callable[[], bytes], count: int) -> dict[str, float]:
    call()  # a first call opens what later ones reuse (pooled connections): not counted
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    return {"median_ms": round(statistics.median(spent), 2), "p90_ms": round(spent[int(len(spent) * 0.9) - 1], 2)}


def _serve(app: Any, ready: threading.Event, holder: dict[str, Any]) -> None:
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    holder["port"], holder["loop"], holder["runner"] = runner.addresses[0][1], loop, runner
    ready.set()
    loop.run_forever()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def run_sql_endpoint_bench(count: int, rows: int) -> dict[str, Any]:
    import chdb
    import clickhouse_connect
    from pydantic import SecretStr

    from schemas.kafka import KafkaSettings
    from sinks.analysts import AnalystRegistry
    from sinks.clickhouse import connect
    from sinks.http import SinkProcess, build_app
    from sinks.loader import SinkLoader
    from sinks.migrations import Layout, apply_migrations
    from sinks.queries import AnalystQueries
    from sinks.settings import ClickHouseSettings, SinkSettings

    with tempfile.TemporaryDirectory(prefix="bench-sql-endpoint-") as directory:
        clickhouse = ClickHouseSettings(data_path=Path(directory) / "chdb")
        analysts_file = Path(directory) / "analysts.json"
        school, secret = AnalystRegistry(analysts_file).add([SCHOOL], analyst_id=SCHOOL)
        settings = SinkSettings(analyst_token=SecretStr(TOKEN), analysts_file=analysts_file)
        writer = connect(clickhouse, create_database=True)
        apply_migrations(writer, Layout(clickhouse.database))
        queries = AnalystQueries(clickhouse, settings.queries)
        probe = connect(clickhouse)
        loader = SinkLoader(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), writer)
        app = build_app(SinkProcess(settings, clickhouse, writer, loader, queries, probe))
        ready, holder = threading.Event(), dict[str, Any]()
        server = threading.Thread(target=_serve, args=(app, ready, holder), daemon=True)
        server.start()
        ready.wait(60)
        base = f"http://127.0.0.1:{holder['port']}"
        direct = chdb.connect(os.path.realpath(clickhouse.data_path))
        direct.query(f"USE {clickhouse.database}", "TabSeparated")
        driver = clickhouse_connect.get_client(host="127.0.0.1", port=holder["port"], password=TOKEN)
        school_driver = clickhouse_connect.get_client(host="127.0.0.1", port=holder["port"],
                                                      username=school.analyst_id, password=secret)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

        def direct_query(statement: str) -> bytes:
            return bytes(direct.query(statement, "TabSeparated").bytes())

        def driver_query(statement: str, client: Any = driver) -> bytes:
            return bytes(client.raw_query(statement, fmt="TabSeparated"))

        def clickhouse_http(statement: str, user: str = "default", password: str = TOKEN) -> bytes:
            url = f"{base}/?{urllib.parse.urlencode({'query': statement})}"
            request = urllib.request.Request(url, headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password})
            with urllib.request.urlopen(request, timeout=120) as answer:
                body: bytes = answer.read()
                return body

        school_http = functools.partial(clickhouse_http, user=school.analyst_id, password=secret)
        school_connect = functools.partial(driver_query, client=school_driver)

        def sql(statement: str) -> bytes:
            request = urllib.request.Request(f"{base}/sql?format=tsv", data=statement.encode(),
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=120) as answer:
                body: bytes = answer.read()
                return body

        figures: dict[str, Any] = {"count": count, "conditions": "one process: chDB, the sink's app and the "
                                   "callers; see docs/benchmarks.md for the machine's load"}
        try:
            for name, statement in (("select_1", "SELECT 1"),
                                    (f"rows_{rows}", f"SELECT number, toString(number) AS s FROM numbers({rows})"),
                                    ("count_current_facts", "SELECT count() FROM learning.current_facts")):
                row: dict[str, Any] = {name: _timings(functools.partial(call, statement), count) for name, call in (
                    ("direct", direct_query), ("clickhouse_http", clickhouse_http),
                    ("clickhouse_connect", driver_query), ("sql", sql),
                    ("clickhouse_http_school", school_http), ("clickhouse_connect_school", school_connect))}
                row["clickhouse_http_overhead_ms"] = round(
                    row["clickhouse_http"]["median_ms"] - row["direct"]["median_ms"], 2)
                row["school_minus_operator_ms"] = round(
                    row["clickhouse_http_school"]["median_ms"] - row["clickhouse_http"]["median_ms"], 2)
                figures[name] = row
        finally:
            direct.close()
            driver.close()
            school_driver.close()
            holder["loop"].call_soon_threadsafe(holder["loop"].stop)
            server.join(30)
            queries.close()
            probe.close()
            writer.close()
    return figures
