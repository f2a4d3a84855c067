"""``SqlClient``: read-only SQL for the CLI (``caliper-pipeline sql``) and the gateway's read API.

In embedded mode the sink process owns the chDB directory, so queries go to its ``POST /sql``; with a server
they go straight to ClickHouse with clickhouse-connect. Either way only read statements are accepted.
"""

from __future__ import annotations

import re

import aiohttp

from sinks.errors import QueryRejectedError, SqlClientError
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.targets import ClickHouseTarget, ServerClickHouse, clickhouse_format

READ_STATEMENTS = ("SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH", "EXISTS")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_FORBIDDEN = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


def check_read_only(sql: str) -> str:
    """The statement without comments and trailing ``;``, when it is one read statement; else QueryRejectedError."""
    statement = _COMMENTS.sub(" ", sql).strip().rstrip(";").strip()
    if not statement:
        raise QueryRejectedError("empty query")
    if ";" in statement:
        raise QueryRejectedError("one statement per query")
    first_word = statement.split(None, 1)[0].upper()
    if first_word not in READ_STATEMENTS:
        raise QueryRejectedError(f"only {', '.join(READ_STATEMENTS)} statements are allowed, not {first_word}")
    if _FORBIDDEN.search(statement):
        raise QueryRejectedError("INTO OUTFILE is not allowed")
    return statement


class SqlClient:
    """Run read-only SQL against the pipeline's ClickHouse; results rendered as Pretty, CSV or JSON."""

    def __init__(self, clickhouse: ClickHouseSettings, sink: SinkSettings | None = None,
                 *, timeout_seconds: float = 60.0) -> None:
        self.clickhouse = clickhouse
        self.sink = sink or SinkSettings()
        self.timeout_seconds = timeout_seconds
        self._server: ClickHouseTarget | None = None

    async def query(self, sql: str, fmt: str = "pretty") -> bytes:
        """The rendered result of one read statement (``fmt``: pretty, csv, json, jsoneachrow, tsv)."""
        statement = check_read_only(sql)
        clickhouse_format(fmt)  # reject an unknown format before any round trip
        if self.clickhouse.embedded:
            return await self._via_sink(statement, fmt)
        import asyncio

        if self._server is None:
            self._server = await asyncio.to_thread(ServerClickHouse, self.clickhouse)
        server = self._server
        return await asyncio.to_thread(server.query_formatted, statement, clickhouse_format(fmt))

    async def _via_sink(self, statement: str, fmt: str) -> bytes:
        url = f"{self.sink.base_url()}/sql"
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                url, params={"format": fmt}, data=statement.encode()) as response:
                body = await response.read()
        except aiohttp.ClientError as error:
            raise SqlClientError(f"the sink's SQL endpoint {url} is not reachable: {error}") from error
        if response.status != 200:
            raise SqlClientError(f"{response.status}: {body.decode(errors='replace')}")
        return body

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
