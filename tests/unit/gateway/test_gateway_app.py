"""The gateway's own HTTP behaviour without a broker (``build_app(publisher=FakePublisher(...))``): the error
formats of its contracts, the catch-all 500, unknown routes and methods, the ingest answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import orjson
import pytest
from gateway_doubles import KafkaDown, gateway, gateway_settings

from caliper_pipeline.senders.samples import envelope, generic_caliper_event, hub_grade_event, timeback_activity_event
from gateway.settings import INGEST_SCOPE, READ_SCOPE
from gateway.tokens import key_id
from schemas.jobs import JOB_ID_PATTERN
from schemas.kafka import Source


async def test_an_envelope_is_published_and_acknowledged(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        response = await gw.client.post("/caliper/event", json=envelope(timeback_activity_event("s1"),
                                                                        timeback_activity_event("s2")), headers=auth)
        assert response.status == 200
        body = await response.json()
        job_id = body.pop("jobId")
        assert body == {"status": "success", "message": "2 events accepted", "errors": None}
        assert JOB_ID_PATTERN.fullmatch(job_id) and response.headers["Location"] == f"/jobs/{job_id}"
        assert {e.job_id for e in gw.publisher.events} == {job_id}
        assert [e.envelope_index for e in gw.publisher.events] == [0, 1]
        [job] = gw.publisher.jobs  # published with the events (one transaction: EventPublisher.publish)
        assert (job.job_id, job.accepted, job.entities, job.event_indexes) == (job_id, 2, 0, (0, 1))
        assert job.event_ids == tuple(e.event_id for e in gw.publisher.events)
        assert [e.student_id for e in gw.publisher.events] == [
            "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/s1",
            "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/s2"]
        assert {e.source for e in gw.publisher.published} == {Source.TIMEBACK}
        assert {e.tenant for e in gw.publisher.events} == {"school-a"}


async def test_an_unexpected_exception_is_a_json_500_without_internals(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        gw.publisher.failure = RuntimeError("secret internals: password=hunter2")
        response = await gw.client.post("/caliper/event", json=envelope(timeback_activity_event()), headers=auth)
        assert response.status == 500 and response.content_type == "application/json"
        body = await response.json()
        assert body["status"] == "error" and body["errors"] is None
        assert "hunter2" not in await response.text() and "RuntimeError" not in await response.text()
        hub = await gw.client.post("/hub/v1/events", json=hub_grade_event(), headers=auth)
        assert hub.status == 500 and hub.content_type == "application/json"
        assert isinstance((await hub.json())["message"], list) and "hunter2" not in await hub.text()
    assert "hunter2" in caplog.text and "Traceback" in caplog.text  # logged, with its traceback


async def test_kafka_unavailable_is_503_with_retry_after(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        gw.publisher.failure = KafkaDown()
        response = await gw.client.post("/caliper/event", json=envelope(timeback_activity_event()), headers=auth)
        assert response.status == 503 and response.headers["Retry-After"] == "5"
        gw.publisher.ready = False
        assert (await gw.client.get("/readyz")).status == 503


async def test_unknown_routes_are_json_404_in_each_format(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        response = await gw.client.get("/no/such/thing")
        assert response.status == 404 and response.content_type == "application/json"
        assert (await response.json())["status"] == "error"
        hub = await gw.client.post("/hub/v2/events", json={})
        assert hub.status == 404 and isinstance((await hub.json())["message"], list)
        oauth = await gw.client.post("/oauth2/authorize", data={})
        assert oauth.status == 404 and (await oauth.json())["error"] == "invalid_request"


async def test_405_answers_carry_allow(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        response = await gw.client.delete("/caliper/event")
        assert response.status == 405 and response.content_type == "application/json"
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
        assert "DELETE" in (await response.json())["message"]
        hub = await gw.client.get("/hub/v1/events")
        assert hub.status == 405 and hub.headers["Allow"] == "POST"
        assert isinstance((await hub.json())["message"], list)
        token = await gw.client.get("/oauth2/token")
        assert token.status == 405 and token.headers["Allow"] == "POST"
        assert (await token.json())["error"] == "invalid_request"


async def test_hub_errors_have_the_hubs_format(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        missing = hub_grade_event()
        del missing["object"]["assignable"]["skillCode"]
        response = await gw.client.post("/hub/v1/events", json=missing, headers=auth)
        assert response.status == 400
        assert "Field object.assignable.skillCode not informed" in (await response.json())["message"]
        unauthorized = await gw.client.post("/hub/v1/events", json=hub_grade_event())
        assert unauthorized.status == 401 and isinstance((await unauthorized.json())["message"], list)
        assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
        assert gw.publisher.published == []
        assert [r.endpoint for r in gw.publisher.rejections] == ["/hub/v1/events"]  # only the content error


def test_importing_the_gateway_loads_neither_sinks_nor_pyarrow() -> None:
    code = ("import sys, gateway.main; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sinks', 'pyarrow', 'streams', 'chdb'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


async def test_status_codes_of_the_ingest_endpoints(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, max_body_bytes=64 * 1024)
    async with gateway(settings) as gw:
        client, _ = gw.add_client("school-a")
        auth = gw.auth(client)
        payload = envelope(timeback_activity_event())
        key = settings.jwt_secret.get_secret_value()
        now = int(time.time())
        expired = jwt.encode({"iss": settings.jwt_issuer, "sub": client.client_id, "tenant": "school-a",
                              "scope": INGEST_SCOPE, "iat": now - 100, "exp": now - 10}, key, algorithm="HS256",
                             headers={"kid": key_id(key)})
        for headers in ({}, {"Authorization": "Token x"}, {"Authorization": "Bearer not-a-jwt"},
                        {"Authorization": f"Bearer {expired}"}):
            response = await gw.client.post("/caliper/event", json=payload, headers=headers)
            assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "expired" in (await response.json())["message"]
        read_only = gw.auth(client, {READ_SCOPE})
        assert (await gw.client.post("/caliper/event", json=payload, headers=read_only)).status == 403
        assert (await gw.client.post("/caliper/event", data=b"{}", headers={**auth, "Content-Type": "text/plain"})
                ).status == 415
        big = envelope(*[timeback_activity_event() for _ in range(200)])
        assert (await gw.client.post("/caliper/event", json=big, headers=auth)).status == 413
        malformed = await gw.client.post("/caliper/event", data=b'{"sensor": ',
                                         headers={**auth, "Content-Type": "application/json"})
        assert malformed.status == 400 and (await malformed.json())["errors"][0]["message"].startswith("malformed")
        old = {**payload, "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p0"}  # 1.1 and 1.2 are accepted
        assert (await gw.client.post("/caliper/event", json=old, headers=auth)).status == 422
        hub = await gw.client.post("/hub/v1/events", data=b"[", headers={**auth, "Content-Type": "application/json"})
        assert hub.status == 400 and isinstance((await hub.json())["message"], list)
        assert gw.publisher.published == []
        assert sorted(r.status for r in gw.publisher.rejections) == [400, 400, 422]  # content refusals only


async def test_optional_nulls_are_dropped_before_publishing(tmp_path: Path) -> None:
    """At the gateway, an envelope with ``null`` on optional properties is accepted and what
    goes to Kafka no longer carries them (``schemas.caliper.check_envelope``'s payload)."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        event = generic_caliper_event()
        event["object"]["description"] = None
        event["referrer"] = None
        response = await gw.client.post("/caliper/event", json=envelope(event), headers=auth)
        assert response.status == 200, await response.text()
        (published,) = gw.publisher.events
        sent = orjson.loads(published.payload)
        assert "referrer" not in sent and "description" not in sent["object"]
        assert sent["object"]["name"] == event["object"]["name"]


async def test_validate_is_a_dry_run_that_records_no_rejection(tmp_path: Path) -> None:
    """A refusal of ``/caliper/event/validate`` writes nothing to the rejected-requests topic (the sink's failed
    events); the same bodies sent to ``/caliper/event`` are recorded."""
    async with gateway(gateway_settings(tmp_path, max_body_bytes=64 * 1024)) as gw:
        auth = await gw.ingest_auth()
        invalid = envelope(timeback_activity_event())
        del invalid["data"][0]["actor"]
        old = {**envelope(timeback_activity_event()), "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p0"}
        big = envelope(*[timeback_activity_event() for _ in range(200)])
        json_headers = {**auth, "Content-Type": "application/json"}
        for path in ("/caliper/event/validate", "/caliper/event"):
            statuses = [(await gw.client.post(path, json=invalid, headers=auth)).status,
                        (await gw.client.post(path, data=b'{"sensor": ', headers=json_headers)).status,
                        (await gw.client.post(path, json=old, headers=auth)).status,
                        (await gw.client.post(path, json=big, headers=auth)).status]
            assert statuses == [400, 400, 422, 413], path
            if path.endswith("/validate"):
                assert gw.publisher.rejections == [], "a dry run records nothing"
        assert {r.endpoint for r in gw.publisher.rejections} == {"/caliper/event"}
        assert sorted(r.status for r in gw.publisher.rejections) == [400, 400, 422]  # content refusals only
        assert gw.publisher.published == []
