"""An envelope is all-or-nothing at the Kafka level: a request the gateway answers with an error leaves none of its
events visible to the consumers that read committed data (the streams worker), on the real broker."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from gateway.clients import ClientRegistry
from gateway.main import build_app
from gateway.settings import GatewaySettings
from schemas.avro.codec import RawEventCodec
from schemas.kafka import KafkaSettings

pytestmark = pytest.mark.integration


async def visible(kafka: KafkaSettings, isolation: str, seconds: float = 3.0) -> int:
    """How many events (not records: a batch record holds a request's events for one partition) a consumer with
    this isolation level reads from the raw topics."""
    codec = RawEventCodec()
    consumer = AIOKafkaConsumer(*kafka.topics.raw_topics, **kafka.client_options(), isolation_level=isolation,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = 0
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            batches = (await consumer.getmany(timeout_ms=200)).values()
            seen += sum(len(codec.decode_events(message.value or b"")) for batch in batches for message in batch)
    finally:
        await consumer.stop()
    return seen


async def test_a_request_answered_503_leaves_none_of_its_events_visible(
        tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    """A request that timed out and was answered 503 had already put 22,954 of its 100,000
    events on the raw topic, and the streams worker processed them."""
    # an envelope Kafka cannot take within the gateway's publish timeout: how long 20,000 events take depends on the
    # machine and its load (a quiet machine publishes 40,000 in under 0.2 s since the batched transactions), so the
    # timeout shrinks until a request is refused; each acknowledged one is counted
    big = envelope(*(timeback_activity_event(f"student-{i}", xp=i) for i in range(20_000)))
    acknowledged = 0
    for attempt, timeout in enumerate((0.2, 0.1, 0.05, 0.025)):
        settings = GatewaySettings(clients_file=tmp_path / f"clients-{attempt}.json",
                                   jwt_secret=secrets.token_urlsafe(32), publish_timeout_seconds=timeout,
                                   max_body_bytes=64 << 20, default_rate_limit_per_second=1e9,
                                   max_events_per_envelope=40_000)
        _, secret = ClientRegistry(settings.clients_file).add("school-a", client_id="app-a")
        async with TestClient(TestServer(build_app(settings, kafka_settings))) as client:
            token = (await (await client.post("/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": "app-a", "client_secret": secret})).json())
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            answer = await client.post("/caliper/event", json=big, headers=auth)
            if answer.status == 200:
                acknowledged += 20_000
                continue
            assert answer.status == 503 and answer.headers["Retry-After"]
            assert "none was published" in (await answer.json())["message"]
            small = await client.post("/caliper/event", json=envelope(timeback_activity_event("after", xp=1)),
                                      headers=auth)
            assert small.status == 200, await small.text()
            break
    else:
        pytest.fail("20,000 events were published within 0.025 s")
    # only the acknowledged requests' events: none of the refused one
    assert await visible(kafka_settings, "read_committed", 10.0) == acknowledged + 1
    # ... although part of the refused one did reach the log (what a read_uncommitted consumer sees)
    assert await visible(kafka_settings, "read_uncommitted", 10.0) > acknowledged + 1
