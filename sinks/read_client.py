"""``EventReader`` through the sink's HTTP endpoint, for a gateway whose ClickHouse is the sink's embedded engine
(only the sink process may open it): ``POST {sink_url}/read/events`` with the query as JSON and the sink's analyst
token; the sink answers with the page (``sinks.read_model`` runs there)."""

from __future__ import annotations

import aiohttp

from schemas.read_api import EventPage, EventQuery, ReadUnavailableError


class HttpEventReader:
    def __init__(self, sink_url: str, token: str, *, timeout_seconds: float = 30.0) -> None:
        self.url = f"{sink_url.rstrip('/')}/read/events"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def read_events(self, query: EventQuery) -> EventPage:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.post(self.url, json=query.to_json()) as response:
                if response.status != 200:
                    raise ReadUnavailableError(f"the sink answered {response.status}")
                return EventPage.from_json(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ReadUnavailableError(f"the sink is not reachable: {type(error).__name__}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
