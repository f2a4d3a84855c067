"""A pytest plugin: the whole pipeline for a sender's own test suite, as one session fixture.

Installed with the package, it is registered as the ``pytest11`` entry point ``caliper_pipeline.testing`` (or loaded
explicitly with ``pytest -p caliper_pipeline.testing``). Requesting the session fixture ``caliper_pipeline`` starts
the local stack (``LocalPipeline``: a local Kafka broker, the sink on embedded chDB, one streams worker and one
gateway) in a temporary directory on free ports, and stops it at the end of the session. A test that does not
request the fixture starts nothing: this module imports only pytest until then, because pytest loads it in every
run of an environment where the package is installed.

Kafka: ``CALIPER_TEST_KAFKA_BOOTSTRAP`` or ``CALIPER_KAFKA__BOOTSTRAP_SERVERS`` names an existing broker (for
example a testcontainers ``KafkaContainer`` the sender starts in its own session fixture); the pipeline then
creates topics of its own there (a unique prefix) instead of starting a broker.

The fixture's API is blocking (plain ``def`` tests call it): ``gateway_url``, ``new_client``, ``token``,
``wait_for_job``, ``sql``; ``pipeline`` is the underlying ``LocalPipeline`` for anything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from schemas.errors import PipelineError  # dependency-free: the module stays cheap to import

if TYPE_CHECKING:
    from caliper_pipeline.local.pipeline import LocalPipeline

EXTERNAL_BOOTSTRAP_ENV = "CALIPER_TEST_KAFKA_BOOTSTRAP"
# the sink loads every half second (a test's events are queryable soon after their job is accepted) and retries
# a failed load within two seconds
FAST_ENV = {"CALIPER_SINK__BATCH_SECONDS": "0.5", "CALIPER_SINK__RETRY_BACKOFF_MAX_SECONDS": "2"}
READY_TIMEOUT_SECONDS = 180.0

T = TypeVar("T")


class PipelineJobTimeoutError(PipelineError, TimeoutError):
    """A job was still processing when ``wait_for_job`` gave up; ``status`` is its last status body."""

    def __init__(self, job_id: str, timeout: float, status: dict[str, Any]) -> None:
        super().__init__(f"job {job_id} still processing after {timeout:.0f}s: {status}")
        self.job_id = job_id
        self.timeout = timeout
        self.status = status


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code; from inside a running event loop (an async test)
    in a thread of its own, since ``asyncio.run`` refuses to nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class CaliperPipeline:
    """The running pipeline as a sender's tests see it (what the ``caliper_pipeline`` fixture yields)."""

    def __init__(self, pipeline: LocalPipeline) -> None:
        self.pipeline = pipeline

    @property
    def gateway_url(self) -> str:
        return self.pipeline.gateway_url

    def new_client(self, tenant: str, timezone: str | None = None) -> tuple[str, str]:
        """Register a sender client of ``tenant`` (the tenant's time zone set when given); returns
        ``(client_id, client_secret)``. The gateway sees it within a second (``token`` waits for that)."""
        from gateway.clients import ClientRegistry

        client, secret = ClientRegistry(self.pipeline.clients_file).add(tenant, timezone=timezone)
        return client.client_id, secret

    def token(self, client_id: str, client_secret: str) -> str:
        """An access token from the gateway's ``POST /oauth2/token`` (client credentials)."""
        import aiohttp

        from caliper_pipeline.senders.traffic import fetch_token

        async def fetch() -> str:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                return await fetch_token(session, self.gateway_url, client_id, client_secret)

        return run_blocking(fetch())

    def wait_for_job(self, token: str, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``GET /jobs/{job_id}/status`` until the job is complete (``completed`` or
        ``completed_with_errors``); returns its status body. ``PipelineJobTimeoutError`` when still processing
        after ``timeout`` seconds; ``ReceiptError`` when the gateway answers anything but 200."""
        from caliper_pipeline.client.receipts import DONE, wait_for_jobs

        summary = run_blocking(wait_for_jobs(self.gateway_url, token, [job_id], timeout=timeout))
        status = summary.statuses[job_id]
        if status["status"] not in DONE:
            raise PipelineJobTimeoutError(job_id, timeout, status)
        return status

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Rows of a read-only statement, through the sink's ``POST /sql`` with the analyst token (tables are in
        the ``learning`` database, e.g. ``learning.learning_facts``)."""
        return self.pipeline.sql(query)


def start_pipeline(tmp_path_factory: pytest.TempPathFactory) -> LocalPipeline:
    """A started ``LocalPipeline`` in a new temporary directory; on an external broker when one is named."""
    from caliper_pipeline.local.pipeline import LocalPipeline
    from caliper_pipeline.settings import Settings

    # LocalPipeline itself falls back to CALIPER_KAFKA__BOOTSTRAP_SERVERS (through Settings)
    bootstrap = os.environ.get(EXTERNAL_BOOTSTRAP_ENV) or None
    pipeline = LocalPipeline(Settings(), tmp_path_factory.mktemp("caliper-pipeline"), kafka_bootstrap=bootstrap,
                             partitions=1, extra_env=FAST_ENV)
    try:
        pipeline.start(ready_timeout=READY_TIMEOUT_SECONDS)
    except BaseException:
        pipeline.stop()
        raise
    return pipeline


@pytest.fixture(scope="session")
def caliper_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaliperPipeline]:
    """The pipeline, started once for the session (see the module's docstring)."""
    pipeline = start_pipeline(tmp_path_factory)
    try:
        yield CaliperPipeline(pipeline)
    finally:
        pipeline.stop()
