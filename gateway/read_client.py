"""``EventReader`` through the sink's HTTP endpoint, for a gateway whose ClickHouse is the sink's embedded engine
(only the sink process may open it): ``POST {sink_url}/read/events`` with the query as JSON and the sink's reader
token (``CALIPER_SINK__READER_TOKEN``: the read API answers events as they were sent, so no analyst credential may
call it); the sink answers with the page (``sinks.read_model`` runs there). Jobs' status likewise: ``POST
{sink_url}/read/jobs`` with ``{"tenant", "job_id"}``, 404 when the sink has no record of the job."""

from __future__ import annotations

import aiohttp

from schemas.read_api import (
    READ_EVENTS_PATH,
    READ_JOBS_PATH,
    EventPage,
    EventQuery,
    JobStatus,
    ReadBusyError,
    ReadUnavailableError,
)


def _refusal(response: aiohttp.ClientResponse) -> ReadUnavailableError:
    """Why the sink did not answer a read: busy (429, ``Retry-After``) or unavailable."""
    if response.status == 429:
        retry_after = response.headers.get("Retry-After", "1")
        return ReadBusyError("the sink serves as many reads as it may",
                             retry_after=int(retry_after) if retry_after.isdigit() else 1)
    return ReadUnavailableError(f"the sink answered {response.status}")


class HttpEventReader:
    def __init__(self, sink_url: str, token: str, *, timeout_seconds: float = 30.0) -> None:
        self.url = f"{sink_url.rstrip('/')}{READ_EVENTS_PATH}"
        self.jobs_url = f"{sink_url.rstrip('/')}{READ_JOBS_PATH}"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def read_events(self, query: EventQuery) -> EventPage:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.post(self.url, json=query.to_json()) as response:
                if response.status != 200:
                    raise _refusal(response)
                return EventPage.from_json(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ReadUnavailableError(f"the sink is not reachable: {type(error).__name__}") from error

    async def read_job(self, tenant: str, job_id: str) -> JobStatus | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.post(self.jobs_url, json={"tenant": tenant, "job_id": job_id}) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise _refusal(response)
                return JobStatus.from_json(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as error:
            raise ReadUnavailableError(f"the sink is not reachable: {type(error).__name__}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
