"""The sink process's parts, as its HTTP handlers reach them (``request.app[SINK_PROCESS]``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from sinks.clickhouse import ClickHouse
from sinks.loader import SinkLoader
from sinks.migrations import Layout
from sinks.queries import AnalystQueries
from sinks.settings import ClickHouseSettings, SinkSettings


@dataclass(slots=True)
class SinkProcess:
    settings: SinkSettings
    clickhouse: ClickHouseSettings
    writer: ClickHouse  # the loader's client
    loader: SinkLoader
    queries: AnalystQueries  # analysts' statements (POST /sql)
    probe: ClickHouse  # readiness pings, on a connection of their own
    student_key_secret: bytes = b""
    reads: AnalystQueries | None = None  # the read side's own pool (None: the analysts' pool, in tests)

    @property
    def read_pool(self) -> AnalystQueries:
        return self.reads or self.queries

    @property
    def layout(self) -> Layout:
        return Layout(self.clickhouse.database, self.clickhouse.cluster)


SINK_PROCESS = web.AppKey("sink_process", SinkProcess)
