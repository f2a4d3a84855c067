"""The gateway over HTTP, publishing to the real broker: every endpoint, status code and the token flow."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from caliper_pipeline.senders.samples import (
    envelope,
    generic_caliper_event,
    hub_grade_event,
    timeback_activity_event,
    timeback_time_spent_event,
)
from gateway.clients import ClientRegistry
from gateway.main import build_app
from gateway.settings import INGEST_SCOPE, GatewaySettings
from gateway.tokens import key_id
from schemas.avro.codec import RawEventCodec
from schemas.jobs import JobRecord
from schemas.kafka import KafkaSettings, Source

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(clients_file=tmp_path / "clients.json", max_body_bytes=64 * 1024,
                           jwt_secret=secrets.token_urlsafe(32))


@pytest.fixture
async def client(gateway_settings: GatewaySettings, kafka_settings: KafkaSettings) -> AsyncIterator[TestClient]:
    app = build_app(gateway_settings, kafka_settings)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def credentials(gateway_settings: GatewaySettings) -> tuple[str, str]:
    client, secret = ClientRegistry(gateway_settings.clients_file).add("school-a", client_id="app-a")
    return client.client_id, secret


async def _token(client: TestClient, credentials: tuple[str, str], **extra: str) -> str:
    response = await client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                         "client_id": credentials[0], "client_secret": credentials[1],
                                                         **extra})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return str(body["access_token"])


async def _consume_raw(kafka: KafkaSettings, source: Source, expect: int, timeout: float = 15) -> list[object]:
    consumer = AIOKafkaConsumer(kafka.topics.raw(source), auto_offset_reset="earliest",
                                **kafka.client_options())  # type: ignore[arg-type]
    await consumer.start()
    codec = RawEventCodec()
    found: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            found += [event for ms in batches.values() for m in ms for event in codec.decode_events(m.value)]
    finally:
        await consumer.stop()
    return found


async def test_timeback_envelope_is_acknowledged_after_kafka_has_every_event(
        client: TestClient, credentials: tuple[str, str], kafka_settings: KafkaSettings) -> None:
    token = await _token(client, credentials)
    payload = envelope(timeback_activity_event("s1"), timeback_time_spent_event("s1"), generic_caliper_event("s2"))
    response = await client.post("/caliper/event", json=payload, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    body = await response.json()
    job_id = body.pop("jobId")  # delivery receipts: the body keeps its three fields as they were, plus the job
    assert body == {"status": "success", "message": "3 events accepted", "errors": None}
    timeback = await _consume_raw(kafka_settings, Source.TIMEBACK, 2)
    generic = await _consume_raw(kafka_settings, Source.CALIPER, 1)
    assert {e.job_id for e in timeback + generic} == {job_id}  # type: ignore[attr-defined]
    consumer = AIOKafkaConsumer(kafka_settings.topics.jobs, auto_offset_reset="earliest",
                                isolation_level="read_committed", **kafka_settings.client_options())  # type: ignore[arg-type]
    await consumer.start()
    try:  # the job's record, committed with its events
        records = [JobRecord.from_json(m.value or b"") for ms in (await consumer.getmany(timeout_ms=5000)).values()
                   for m in ms]
    finally:
        await consumer.stop()
    ids = tuple(e["id"] for e in payload["data"])
    assert [(r.job_id, r.accepted, r.event_ids) for r in records] == [(job_id, 3, ids)]
    assert sorted(e.event_type for e in timeback) == ["ActivityEvent", "TimeSpentEvent"]  # type: ignore[attr-defined]
    assert {e.tenant for e in timeback + generic} == {"school-a"}  # type: ignore[attr-defined]
    assert all(e.received_time_ms > 0 for e in timeback)  # type: ignore[attr-defined]
    assert generic[0].student_id == "https://example.edu/users/s2"  # type: ignore[attr-defined]


async def test_invalid_item_rejects_the_whole_envelope_and_names_the_field(
        client: TestClient, credentials: tuple[str, str], kafka_settings: KafkaSettings) -> None:
    token = await _token(client, credentials)
    bad = timeback_activity_event("s1")
    del bad["actor"]["email"]
    response = await client.post("/caliper/event", json=envelope(timeback_activity_event("s1"), bad),
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status == 400
    body = await response.json()
    assert body["status"] == "error"
    assert "data[1].actor.email" in [e["path"] for e in body["errors"]]
    assert await _consume_raw(kafka_settings, Source.TIMEBACK, 1, timeout=3) == []
    rejected = AIOKafkaConsumer(kafka_settings.topics.rejected, auto_offset_reset="earliest",
                                **kafka_settings.client_options())  # type: ignore[arg-type]
    await rejected.start()
    try:
        batches = await rejected.getmany(timeout_ms=5000)
    finally:
        await rejected.stop()
    assert any(b"data[1].actor.email" in m.value for ms in batches.values() for m in ms)


async def test_validate_endpoint_publishes_nothing(client: TestClient, credentials: tuple[str, str],
                                                   kafka_settings: KafkaSettings) -> None:
    token = await _token(client, credentials)
    response = await client.post("/caliper/event/validate", json=envelope(timeback_activity_event()),
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert (await response.json())["status"] == "success"
    assert await _consume_raw(kafka_settings, Source.TIMEBACK, 1, timeout=3) == []


async def test_hub_event_contract(client: TestClient, credentials: tuple[str, str],
                                  kafka_settings: KafkaSettings) -> None:
    token = await _token(client, credentials)
    headers = {"Authorization": f"Bearer {token}"}
    event = hub_grade_event()
    response = await client.post("/hub/v1/events", json=event, headers=headers)
    assert response.status == 200
    assert await response.json() == {"@context": "http://purl.imsglobal.org/ctx/caliper/v1p2", "id": event["id"]}
    published = await _consume_raw(kafka_settings, Source.HUB, 1)
    assert published[0].event_id == event["id"]  # type: ignore[attr-defined]

    missing = hub_grade_event()
    del missing["object"]["assignable"]["skillCode"]
    del missing["object"]["totalTime"]
    missing["action"] = "Finished"
    response = await client.post("/hub/v1/events", json=missing, headers=headers)
    assert response.status == 400
    lines = (await response.json())["message"]
    assert "Field object.assignable.skillCode not informed" in lines
    assert "Field object.totalTime not informed" in lines
    assert any("action" in line and "Viewed" in line and "Graded" in line for line in lines)


async def test_status_codes(client: TestClient, credentials: tuple[str, str],
                            gateway_settings: GatewaySettings) -> None:
    token = await _token(client, credentials)
    auth = {"Authorization": f"Bearer {token}"}
    payload = envelope(timeback_activity_event())
    assert (await client.post("/caliper/event", json=payload)).status == 401
    assert (await client.post("/caliper/event", json=payload, headers={"Authorization": "Token x"})).status == 401
    assert (await client.post("/caliper/event", json=payload,
                               headers={"Authorization": "Bearer not-a-jwt"})).status == 401
    key = gateway_settings.jwt_secret.get_secret_value()
    expired = jwt.encode({"iss": gateway_settings.jwt_issuer, "sub": "app-a", "tenant": "school-a",
                          "scope": INGEST_SCOPE, "iat": int(time.time()) - 70, "exp": int(time.time()) - 10},
                         key, algorithm="HS256", headers={"kid": key_id(key)})
    response = await client.post("/caliper/event", json=payload, headers={"Authorization": f"Bearer {expired}"})
    assert response.status == 401 and "expired" in (await response.json())["message"]
    scoped = await _token(client, credentials, scope="https://purl.imsglobal.org/spec/caliper/v1p1/scope/event.read")
    assert (await client.post("/caliper/event", json=payload,
                               headers={"Authorization": f"Bearer {scoped}"})).status == 403
    as_text = {**auth, "Content-Type": "text/plain"}
    assert (await client.post("/caliper/event", data=b"{}", headers=as_text)).status == 415
    big = envelope(*[timeback_activity_event() for _ in range(200)])
    assert (await client.post("/caliper/event", json=big, headers=auth)).status == 413
    response = await client.post("/caliper/event", data=b'{"sensor": ', headers={**auth,
                                                                               "Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["status"] == "error"
    old = {**payload, "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p0"}  # 1.1 and 1.2 are accepted
    assert (await client.post("/caliper/event", json=old, headers=auth)).status == 422
    hub_malformed = await client.post("/hub/v1/events", data=b"[", headers={**auth,
                                                                            "Content-Type": "application/json"})
    assert hub_malformed.status == 400 and isinstance((await hub_malformed.json())["message"], list)


async def test_rate_limit_answers_429_with_retry_after(gateway_settings: GatewaySettings,
                                                       kafka_settings: KafkaSettings) -> None:
    registry = ClientRegistry(gateway_settings.clients_file)
    _, secret = registry.add("school-b", client_id="slow-app", rate_limit_per_second=2)
    app = build_app(gateway_settings, kafka_settings)
    async with TestClient(TestServer(app)) as client:
        token = await _token(client, ("slow-app", secret))
        auth = {"Authorization": f"Bearer {token}"}
        statuses = [(await client.post("/caliper/event", json=envelope(timeback_activity_event()), headers=auth))
                    for _ in range(4)]
    assert [r.status for r in statuses[:2]] == [200, 200]
    assert statuses[-1].status == 429 and int(statuses[-1].headers["Retry-After"]) >= 1


async def test_revoked_client_is_refused_within_a_second(client: TestClient, credentials: tuple[str, str],
                                                         gateway_settings: GatewaySettings) -> None:
    token = await _token(client, credentials)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/caliper/event", json=envelope(timeback_activity_event()), headers=auth)).status == 200
    ClientRegistry(gateway_settings.clients_file).revoke(credentials[0])
    await asyncio.sleep(1.1)
    assert (await client.post("/caliper/event", json=envelope(timeback_activity_event()), headers=auth)).status == 401
    wrong = await client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                     "client_id": credentials[0], "client_secret": credentials[1]})
    assert wrong.status == 401


async def test_kafka_down_answers_503_and_acknowledges_nothing(gateway_settings: GatewaySettings,
                                                                credentials: tuple[str, str]) -> None:
    from caliper_pipeline.local.broker import free_port

    dead = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    app = build_app(gateway_settings.model_copy(update={"publish_timeout_seconds": 2.0}), dead)
    app.cleanup_ctx.clear()  # the producer cannot even start: the gateway must still answer, with 503
    async with TestClient(TestServer(app)) as client:
        token = await _token(client, credentials)
        response = await client.post("/caliper/event", json=envelope(timeback_activity_event()),
                                     headers={"Authorization": f"Bearer {token}"})
        assert response.status == 503
        assert int(response.headers["Retry-After"]) > 0
        assert (await client.get("/readyz")).status == 503


async def test_service_endpoints(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    config = await (await client.get("/caliper/event")).json()
    assert config["caliper_supported_versions"] == ["http://purl.imsglobal.org/ctx/caliper/v1p2",
                                                    "http://purl.imsglobal.org/ctx/caliper/v1p1"]
    assert config["caliper_maximum_payload_size"] == 64 * 1024
    document = await (await client.get("/openapi.json")).json()
    assert {"/caliper/event", "/caliper/event/validate", "/hub/v1/events", "/oauth2/token"} <= set(document["paths"])
    await client.get("/caliper/event")
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_requests_total" in metrics
