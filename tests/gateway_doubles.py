"""Test doubles for the gateway's two outer boundaries, so its own behaviour is tested without a broker:
``FakePublisher`` (the Kafka producer: records what it was given) and ``FakeReader`` (the read side)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

from gateway.clients import Client, ClientRegistry
from gateway.errors import KafkaUnavailableError
from gateway.keys import REGISTRY, TOKENS
from gateway.main import build_app
from gateway.publisher import EncodedEvent, EventPublisher
from gateway.server import GatewayRunner
from gateway.settings import INGEST_SCOPE, READ_SCOPE, GatewaySettings
from schemas.avro.codec import RawEventCodec
from schemas.jobs import JobRecord
from schemas.kafka import KafkaSettings
from schemas.read_api import EventPage, EventQuery, EventReader, JobStatus, encode_cursor
from schemas.records import RawEvent
from schemas.side_topics import RejectedRequest

UNUSED_KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:9")
# a request carrying this header reaches the gateway from that remote address (every test request comes from
# 127.0.0.1; the gateway itself trusts no header for the address, only the connection's peer)
REMOTE_ADDRESS_HEADER = "X-Test-Remote-Address"


@web.middleware
async def remote_address_from_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    remote = request.headers.get(REMOTE_ADDRESS_HEADER)
    return await handler(request if remote is None else request.clone(remote=remote))


def gateway_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    """Gateway settings with a random signing secret and a clients file of the test's own."""
    return GatewaySettings(**{"clients_file": tmp_path / "clients.json", "jwt_secret": secrets.token_urlsafe(32),
                              **overrides})


class FakePublisher(EventPublisher):
    """Stands in for Kafka: ``published`` holds every acknowledged message (encoded as for the broker; ``events``
    decodes them), ``rejections`` every rejected-topic record; ``failure`` (an exception) makes ``publish`` raise."""

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(UNUSED_KAFKA, settings)
        self.published: list[EncodedEvent] = []
        self.jobs: list[JobRecord] = []
        self.rejections: list[RejectedRequest] = []
        self.failure: BaseException | None = None
        self.ready = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, events: list[EncodedEvent], jobs: Sequence[JobRecord] = ()) -> None:
        if self.failure is not None:
            raise self.failure
        self.published.extend(events)
        self.jobs.extend(JobRecord.from_json(job.to_json()) for job in jobs)  # as a reader of the topic sees it

    @property
    def events(self) -> list[RawEvent]:
        codec = RawEventCodec()
        return [codec.decode_record(message.value) for message in self.published]

    def record_rejection(self, record: RejectedRequest) -> None:
        self.rejections.append(RejectedRequest.from_json(record.to_json()))  # as a reader of the topic sees it

    async def is_ready(self) -> bool:
        return self.ready


class KafkaDown(KafkaUnavailableError):
    def __init__(self) -> None:
        super().__init__("Kafka did not acknowledge the events", retry_after=5)


class FakeReader:
    """An ``EventReader`` answering a fixed page (of the events whose ``externalId`` is the query's ``event_id``, when
    it names one); ``queries`` holds what it was asked."""

    def __init__(self, events: list[dict[str, Any]] | None = None, failure: Exception | None = None,
                 jobs: dict[tuple[str, str], JobStatus] | None = None) -> None:
        self.events = events or []
        self.jobs = jobs or {}  # (tenant, job id) -> its status
        self.job_queries: list[tuple[str, str]] = []
        self.failure = failure
        self.queries: list[EventQuery] = []
        self.closed = False

    async def read_events(self, query: EventQuery) -> EventPage:
        self.queries.append(query)
        if self.failure is not None:
            raise self.failure
        events = [e for e in self.events if e.get("externalId") == query.event_id] if query.event_id else self.events
        end = query.offset + query.limit
        return EventPage(events=events[query.offset:end], limit=query.limit, offset=query.offset,
                         next_cursor=encode_cursor(end, "fake") if end < len(events) else None, total=len(events),
                         position=query.offset)

    async def read_job(self, tenant: str, job_id: str) -> JobStatus | None:
        self.job_queries.append((tenant, job_id))
        if self.failure is not None:
            raise self.failure
        return self.jobs.get((tenant, job_id))

    async def close(self) -> None:
        self.closed = True


class GatewayHarness:
    """A running gateway (in-process test server) with a fake publisher, and helpers to call it."""

    def __init__(self, client: TestClient, settings: GatewaySettings, publisher: FakePublisher) -> None:
        self.client = client
        self.settings = settings
        self.publisher = publisher
        self.registry = ClientRegistry(settings.clients_file)

    def add_client(self, tenant: str = "school-a", **options: Any) -> tuple[Client, str]:
        return self.registry.add(tenant, **options)

    def token(self, client: Client, scopes: set[str] | None = None) -> str:
        token, _ = self.client.app[TOKENS].issue(client, scopes)
        return token

    def auth(self, client: Client, scopes: set[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client, scopes)}"}

    async def ingest_auth(self, tenant: str = "school-a", **options: Any) -> dict[str, str]:
        client, _ = self.add_client(tenant, **options)
        return self.auth(client, {INGEST_SCOPE, READ_SCOPE})


class GatewayTestServer(TestServer):
    """aiohttp's test server with the gateway's own runner (``gateway.server``), as ``run_gateway`` serves it."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        # as run_gateway: a handler runs to its end when its caller goes away (aiohttp's test server cancels it)
        return GatewayRunner(self.app, **{**kwargs, "handler_cancellation": False})


@asynccontextmanager
async def gateway(settings: GatewaySettings, *, reader: EventReader | None = None) -> AsyncIterator[GatewayHarness]:
    publisher = FakePublisher(settings)
    app = build_app(settings, UNUSED_KAFKA, publisher=publisher, reader=reader)
    app[REGISTRY].refresh_seconds = 0  # clients added by a test are seen at once (the file is re-read each second)
    app.middlewares.append(remote_address_from_header)
    async with TestClient(GatewayTestServer(app)) as client:
        yield GatewayHarness(client, settings, publisher)
