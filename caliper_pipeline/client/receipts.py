"""Waiting on delivery receipts: follow jobs (``GET /jobs/{jobId}/status``) until each is complete, for tests,
scripts and ``caliper-pipeline loadgen --verify``.

``wait_for_jobs`` polls every job that is still ``processing`` (a few at a time) until all are complete or the
timeout passes, and returns a ``ReceiptSummary``: the last status of each job, when each was first seen complete,
and the totals of events loaded, failed (dead-lettered, rejected at load) and still processing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from schemas.errors import PipelineError
from schemas.read_api import PROCESSING

DONE = frozenset({"completed", "completed_with_errors"})


class ReceiptError(PipelineError):
    """The gateway answered a job's status with something other than 200."""

    def __init__(self, job_id: str, status: int, body: str) -> None:
        super().__init__(f"GET /jobs/{job_id}/status answered {status}: {body[:300]}")
        self.job_id = job_id
        self.status = status


@dataclass(slots=True)
class ReceiptSummary:
    """What became of the events of a set of jobs."""

    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its last status (JSON)
    completed_at: dict[str, float] = field(default_factory=dict)  # job id -> when first seen complete (epoch s)
    polls: int = 0

    def _total(self, name: str) -> int:
        return sum(int(s["counts"].get(name) or 0) for s in self.statuses.values())

    @property
    def accepted(self) -> int:
        return self._total("accepted")

    @property
    def loaded(self) -> int:
        return self._total("loaded")

    @property
    def dead_lettered(self) -> int:
        return self._total("deadLettered")

    @property
    def rejected_at_load(self) -> int:
        return self._total("rejectedAtLoad")

    @property
    def failed(self) -> int:
        return self.dead_lettered + self.rejected_at_load

    @property
    def processing(self) -> int:
        """Events not accounted for yet (a job whose record is not loaded yet counts as one unknown job)."""
        return sum(int(s["counts"]["processing"]) for s in self.statuses.values()
                   if s["counts"].get("processing") is not None)

    @property
    def pending_jobs(self) -> list[str]:
        return [job for job, s in self.statuses.items() if s["status"] not in DONE]

    def reasons(self) -> dict[str, int]:
        """How many failed events per reason."""
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            for failure in status.get("failures", []):
                counts[failure["reason"]] = counts.get(failure["reason"], 0) + 1
        return counts

    def line(self) -> str:
        return (f"jobs {len(self.statuses)} ({len(self.pending_jobs)} still processing): events accepted "
                f"{self.accepted}, loaded {self.loaded}, failed {self.failed} (dead-lettered {self.dead_lettered}, "
                f"rejected at load {self.rejected_at_load}), still processing {self.processing}")


async def job_status(session: aiohttp.ClientSession, gateway_url: str, token: str, job_id: str) -> dict[str, Any]:
    """One job's status (the gateway's JSON); ``ReceiptError`` for any answer but 200."""
    async with session.get(f"{gateway_url.rstrip('/')}/jobs/{job_id}/status",
                           headers={"Authorization": f"Bearer {token}"}) as response:
        if response.status != 200:
            raise ReceiptError(job_id, response.status, await response.text())
        answer: dict[str, Any] = await response.json()
        return answer


async def wait_for_jobs(gateway_url: str, token: str, job_ids: Iterable[str], *, timeout: float = 120.0,
                        poll_seconds: float = 0.25, concurrency: int = 8,
                        session: aiohttp.ClientSession | None = None) -> ReceiptSummary:
    """Follow ``job_ids`` until every one is complete or ``timeout`` passes (then the summary says which are
    still processing)."""
    summary = ReceiptSummary(statuses={job: {"status": PROCESSING, "counts": {}} for job in dict.fromkeys(job_ids)})
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    gate = asyncio.Semaphore(concurrency)

    async def poll(job: str) -> None:
        async with gate:
            status = await job_status(client, gateway_url, token, job)
        summary.polls += 1
        summary.statuses[job] = status
        if status["status"] in DONE:
            summary.completed_at.setdefault(job, time.time())

    deadline = time.monotonic() + timeout
    try:
        while True:
            pending = summary.pending_jobs
            if pending:
                await asyncio.gather(*(poll(job) for job in pending))
            if not summary.pending_jobs or time.monotonic() >= deadline:
                return summary
            await asyncio.sleep(poll_seconds)
    finally:
        if own:
            await client.close()


def completion_seconds(accepted_at: Mapping[str, float], summary: ReceiptSummary) -> list[float]:
    """For each job both acknowledged (epoch s of its 200) and complete: the seconds from the 200 to the first
    poll that saw it complete (an upper bound, by at most the poll interval)."""
    return sorted(summary.completed_at[job] - at for job, at in accepted_at.items() if job in summary.completed_at)


@dataclass(slots=True)
class FollowedJob:
    token: str  # a token of the job's tenant (only it may read the job)
    accepted_at: float  # epoch s of the 200


async def follow_jobs(gateway_url: str, jobs: Mapping[str, FollowedJob], running: asyncio.Event, *,
                      sample_every: int = 25, poll_seconds: float = 0.5,
                      timeout: float = 120.0) -> tuple[ReceiptSummary, ReceiptSummary]:
    """While ``running`` is set (a load run in progress), follow every ``sample_every``-th job of ``jobs`` (a
    mapping the run keeps filling) live, so the time from its 200 to ``completed`` is measured as it happens;
    once the run is over, wait (up to ``timeout``) for every job. Returns the summary of all the jobs and that
    of the jobs followed live (their ``completed_at`` is within ``poll_seconds`` of the truth)."""
    live = ReceiptSummary()
    seen: set[str] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        gate = asyncio.Semaphore(8)

        stopped_at = float("inf")

        async def poll(job: str) -> None:
            async with gate:
                try:
                    status = await job_status(session, gateway_url, jobs[job].token, job)
                except (ReceiptError, aiohttp.ClientError, TimeoutError):
                    return
            live.polls += 1
            live.statuses[job] = status
            if status["status"] in DONE:
                live.completed_at.setdefault(job, time.time())

        while running.is_set() or live.pending_jobs:
            if not running.is_set() and time.monotonic() > stopped_at + timeout:
                break
            for job in list(jobs):
                if job not in seen:
                    seen.add(job)
                    if len(seen) % sample_every == 0:
                        live.statuses[job] = {"status": PROCESSING, "counts": {}}
            await asyncio.gather(*(poll(job) for job in live.pending_jobs))
            await asyncio.sleep(poll_seconds)
            if not running.is_set() and stopped_at == float("inf"):
                stopped_at = time.monotonic()
        by_token: dict[str, list[str]] = {}
        for job, followed in jobs.items():
            by_token.setdefault(followed.token, []).append(job)
        final = ReceiptSummary()
        deadline = time.monotonic() + timeout
        for token, group in by_token.items():
            part = await wait_for_jobs(gateway_url, token, group, timeout=max(1.0, deadline - time.monotonic()),
                                       poll_seconds=poll_seconds, session=session)
            final.statuses.update(part.statuses)
            final.completed_at.update(part.completed_at)
            final.polls += part.polls
        return final, live


T = TypeVar("T")


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_and_follow(url: str, run: Awaitable[T], jobs: Mapping[str, FollowedJob],
                         timeout: float) -> tuple[T, str]:
    """Await ``run`` (a load run filling ``jobs``) while following its jobs (every 25th live, all at the end):
    its result, and the receipts' report (events loaded, failed, still processing; seconds from 200 to
    completed of the jobs followed live)."""
    running = asyncio.Event()
    running.set()
    follower = asyncio.create_task(follow_jobs(url, jobs, running, timeout=timeout))
    try:
        result = await run
    finally:
        running.clear()
    final, live = await follower
    latencies = completion_seconds({job: jobs[job].accepted_at for job in live.statuses}, live)
    lines = [f"receipts: {final.line()}"]
    if latencies:
        lines.append(f"receipts: time from 200 to completed over {len(latencies)} jobs followed live: "
                     f"p50 {_percentile(latencies, 0.5):.2f} s, p95 {_percentile(latencies, 0.95):.2f} s, "
                     f"max {latencies[-1]:.2f} s")
    lines += [f"receipts: {count} failed: {reason[:150]}" for reason, count in
              sorted(final.reasons().items(), key=lambda item: -item[1])[:10]]
    return result, "\n".join(lines)
