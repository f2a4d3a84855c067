"""The one client of the sink's SQL endpoint, for every tool that reads results back (sync and async).

It depends only on the sink's HTTP contract: ``POST {sink_url}/sql?format=<json|jsoneachrow|csv|tsv|pretty>``,
the statement as the body, ``Authorization: Bearer <analyst token>``; 200 answers the result, any other status a
JSON body ``{"error": "..."}``. Failures raise ``SinkQueryError`` (the sink answered an error: its status and
message) or ``SinkUnreachableError`` (no answer), both ``SinkClientError``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from schemas.errors import PipelineError

if TYPE_CHECKING:
    import aiohttp

    from caliper_pipeline.settings import Settings

SqlFormat = Literal["json", "jsoneachrow", "csv", "tsv", "pretty"]
FORMATS: tuple[SqlFormat, ...] = ("json", "jsoneachrow", "csv", "tsv", "pretty")
ANALYST_TOKEN_FILE = "sink-analyst-token"  # under the stack's home (written by ``up``)


class SinkClientError(PipelineError):
    """A statement sent to the sink's ``POST /sql`` did not produce a result."""


class SinkQueryError(SinkClientError):
    """The sink answered with an error status; ``message`` is the sink's own explanation."""

    def __init__(self, status: int, message: str, url: str) -> None:
        hint = " (the analyst token is missing or wrong: CALIPER_SINK__ANALYST_TOKEN, or the one `up` keeps " \
               "under its home)" if status in (401, 403) else ""
        super().__init__(f"the sink refused the query ({status}): {message}{hint}")
        self.status = status
        self.message = message
        self.url = url


class SinkUnreachableError(SinkClientError):
    """No answer from the sink (refused connection, timeout, broken response)."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"the sink at {url} is not reachable: {reason}")
        self.url = url
        self.reason = reason


def sql_literal(value: str) -> str:
    """A ClickHouse string literal (backslashes and quotes escaped), for the statements tools compose; the
    endpoint takes one statement of text, without bound parameters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_message(body: bytes | str) -> str:
    """The sink's ``{"error": ...}`` message, or the start of the body when it is something else."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        document = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return document["error"]
    return text[:500]


def parse_rows(body: bytes | str) -> list[dict[str, Any]]:
    """Rows of a ``jsoneachrow`` answer."""
    text = body.decode() if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_analyst_token(settings: Settings) -> str:
    """The analyst token: ``CALIPER_SINK__ANALYST_TOKEN``, else the one ``up`` keeps under the home (not created
    here: a tool that reads must not invent a token the sink does not know), else empty."""
    configured = getattr(settings.sink, "analyst_token", None)  # the sink's setting (being added by the sink)
    if configured is not None and configured.get_secret_value():
        return str(configured.get_secret_value())
    path: Path = settings.local.home / ANALYST_TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


class SinkClient:
    """``POST /sql`` of one sink, authenticated with an analyst token."""

    def __init__(self, sink_url: str, analyst_token: str = "", *, timeout: float = 120.0) -> None:
        self.sink_url = sink_url.rstrip("/")
        self.analyst_token = analyst_token
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, sink_url: str | None = None, *, timeout: float = 120.0) -> SinkClient:
        return cls(sink_url or settings.sink.base_url(), read_analyst_token(settings), timeout=timeout)

    def url(self, sql_format: SqlFormat) -> str:
        if sql_format not in FORMATS:
            raise SinkClientError(f"unknown SQL format {sql_format!r}; one of {', '.join(FORMATS)}")
        return f"{self.sink_url}/sql?{urllib.parse.urlencode({'format': sql_format})}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.analyst_token:
            headers["Authorization"] = f"Bearer {self.analyst_token}"
        return headers

    # ------------------------------------------------------------------------------------------------- blocking

    def query(self, statement: str, sql_format: SqlFormat = "jsoneachrow") -> bytes:
        """The sink's answer to one statement, in ``sql_format``."""
        url = self.url(sql_format)
        request = urllib.request.Request(url, data=statement.encode(), headers=self.headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            raise SinkQueryError(error.code, error_message(error.read()), url) from error
        except urllib.error.URLError as error:
            raise SinkUnreachableError(self.sink_url, error.reason) from error
        except OSError as error:  # reset connection, timeout while reading, ...
            raise SinkUnreachableError(self.sink_url, error) from error

    def rows(self, statement: str) -> list[dict[str, Any]]:
        return parse_rows(self.query(statement, "jsoneachrow"))

    def metrics(self) -> str:
        """The sink's Prometheus metrics (``GET /metrics``, analyst token)."""
        request = urllib.request.Request(f"{self.sink_url}/metrics", headers=self.headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read()).decode()
        except urllib.error.HTTPError as error:
            raise SinkQueryError(error.code, error_message(error.read()), f"{self.sink_url}/metrics") from error
        except OSError as error:  # unreachable, reset, timeout
            raise SinkUnreachableError(self.sink_url, error) from error

    # ---------------------------------------------------------------------------------------------------- async

    async def query_async(self, session: aiohttp.ClientSession, statement: str,
                          sql_format: SqlFormat = "jsoneachrow") -> bytes:
        import aiohttp

        url = self.url(sql_format)
        try:
            async with session.post(url, data=statement.encode(), headers=self.headers(),
                                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                body = await response.read()
                if response.status != 200:
                    raise SinkQueryError(response.status, error_message(body), url)
                return body
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SinkUnreachableError(self.sink_url, error) from error

    async def rows_async(self, session: aiohttp.ClientSession, statement: str) -> list[dict[str, Any]]:
        return parse_rows(await self.query_async(session, statement, "jsoneachrow"))
