"""Bounds of one request and of all requests together, without a broker: bodies and their encodings, JSON depth,
events per envelope and per client burst (the rate limiter charged by events, before validation), the bytes
held in memory at once, the size of each event as Kafka takes it; ``/validate`` answers like ``/caliper/event``;
events and entities counted apart."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from gateway_doubles import GatewayHarness, gateway, gateway_settings

from caliper_pipeline.senders.samples import envelope, generic_caliper_event, hub_grade_event, timeback_activity_event
from gateway.keys import BODY_BUDGET
from gateway.settings import GatewaySettings
from schemas.caliper import validate_endpoint_config

JSON = {"Content-Type": "application/json"}


def _nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


async def _post(gw: GatewayHarness, path: str, body: bytes, auth: dict[str, str], **headers: str) -> tuple[int, Any]:
    response = await gw.client.post(path, data=body, headers={**auth, **JSON, **headers})
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


async def test_gzip_declared_on_a_plain_body_is_400_naming_the_encoding(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        body = orjson.dumps(envelope(timeback_activity_event()))
        status, answer = await _post(gw, "/caliper/event", body, auth, **{"Content-Encoding": "gzip"})
        assert status == 400 and "Content-Encoding: gzip" in answer["message"]
        assert [e["path"] for e in answer["errors"]] == ["body"]
        status, answer = await _post(gw, "/hub/v1/events", orjson.dumps(hub_grade_event()), auth,
                                     **{"Content-Encoding": "gzip"})
        assert status == 400 and isinstance(answer["message"], list)
        assert gw.publisher.published == []
        # real compressed bodies are fine; an unknown coding is 415; a body too large once decoded is 413
        assert (await _post(gw, "/caliper/event", gzip.compress(body), auth, **{"Content-Encoding": "gzip"}))[0] == 200
        assert (await _post(gw, "/caliper/event", zlib.compress(body), auth,
                            **{"Content-Encoding": "deflate"}))[0] == 200
        status, answer = await _post(gw, "/caliper/event", body, auth, **{"Content-Encoding": "compress"})
        assert status == 415 and answer["errors"][0]["path"] == "Content-Encoding"
        bomb = gzip.compress(b" " * (gw.settings.max_body_bytes + 10) + body)
        assert len(bomb) < gw.settings.max_body_bytes
        assert (await _post(gw, "/caliper/event", bomb, auth, **{"Content-Encoding": "gzip"}))[0] == 413


async def test_json_nested_beyond_the_limit_is_400_naming_the_path(tmp_path: Path) -> None:
    """The finding: nesting between 256 and 1,023 levels passed validation and failed in orjson when publishing
    (a 500). Now refused right after parsing, on every endpoint, naming where the limit is crossed."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        deep = timeback_activity_event()
        deep["extensions"] = _nested(300)
        for path in ("/caliper/event", "/caliper/event/validate"):
            status, answer = await _post(gw, path, json.dumps(envelope(deep)).encode(), auth)
            assert status == 400, (path, answer)
            (error,) = answer["errors"]
            assert error["path"].startswith("data[0].extensions.a.a") and "64 levels" in error["message"]
            assert error["path"].count(".a") == 64 - 4  # names the 64th level: envelope, data, event, extensions, 60
        hub = hub_grade_event()
        hub["extensions"] = _nested(100)
        status, answer = await _post(gw, "/hub/v1/events", json.dumps(hub).encode(), auth)
        assert status == 400 and "extensions.a.a" in answer["message"][0]
        fine = timeback_activity_event()
        fine["extensions"] = _nested(50)
        assert (await _post(gw, "/caliper/event", orjson.dumps(envelope(fine)), auth))[0] == 200
        assert len(gw.publisher.published) == 1
        assert [r.endpoint for r in gw.publisher.rejections] == [  # the refused requests, for the operators
            "/caliper/event", "/hub/v1/events"]  # not the dry run of /validate


async def test_an_envelope_larger_than_the_clients_burst_is_413(tmp_path: Path) -> None:
    """The finding: the first request of a new client passed the rate limiter whatever its size."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth(rate_limit_per_second=10)
        eleven = orjson.dumps(envelope(*[timeback_activity_event() for _ in range(11)]))
        for path in ("/caliper/event", "/caliper/event/validate"):
            status, answer = await _post(gw, path, eleven, auth)
            assert status == 413 and answer["errors"][0]["path"] == "data", (path, answer)
            assert "at most 10 at once" in answer["errors"][0]["message"]
        ten = orjson.dumps(envelope(*[timeback_activity_event() for _ in range(10)]))
        assert (await _post(gw, "/caliper/event", ten, auth))[0] == 200
        response = await gw.client.post("/caliper/event", data=orjson.dumps(envelope(timeback_activity_event())),
                                        headers={**auth, **JSON})
        assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
        assert len(gw.publisher.published) == 10


async def test_the_rate_is_charged_by_events_before_validation(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth(rate_limit_per_second=10)
        invalid = [timeback_activity_event() for _ in range(10)]
        del invalid[3]["actor"]
        assert (await _post(gw, "/caliper/event", orjson.dumps(envelope(*invalid)), auth))[0] == 400
        status, _ = await _post(gw, "/caliper/event", orjson.dumps(envelope(timeback_activity_event())), auth)
        assert status == 429  # the ten refused events were charged
        assert gw.publisher.published == []


async def test_events_per_envelope_are_bounded(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, max_events_per_envelope=5)) as gw:
        auth = await gw.ingest_auth()
        six = orjson.dumps(envelope(*[timeback_activity_event() for _ in range(6)]))
        for path in ("/caliper/event", "/caliper/event/validate"):
            status, answer = await _post(gw, path, six, auth)
            assert status == 413 and answer["errors"][0]["path"] == "data" and "at most 5" in answer["message"]


async def test_an_event_larger_than_kafka_takes_is_413_naming_it(tmp_path: Path) -> None:
    """The finding: such an event got a 503 inviting retries forever (and /validate called it valid)."""
    async with gateway(gateway_settings(tmp_path, max_event_bytes=4096)) as gw:
        auth = await gw.ingest_auth()
        big = timeback_activity_event()
        big["extensions"] = {"notes": "x" * 5000}
        body = orjson.dumps(envelope(timeback_activity_event(), big))
        answers = [await _post(gw, path, body, auth) for path in ("/caliper/event", "/caliper/event/validate")]
        assert answers[0] == answers[1]
        status, answer = answers[0]
        assert status == 413 and [e["path"] for e in answer["errors"]] == ["data[1]"]
        assert "4096 bytes" in answer["errors"][0]["message"]
        hub = hub_grade_event()
        hub["extensions"] = {"notes": "x" * 5000}
        status, answer = await _post(gw, "/hub/v1/events", orjson.dumps(hub), auth)
        assert status == 413 and answer["message"][0].startswith("this event is")
        assert gw.publisher.published == []
    assert GatewaySettings().max_event_bytes < 1_048_576  # below the producer's and the broker's message limit


async def test_validate_answers_like_the_ingest_endpoint(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, max_events_per_envelope=3, max_event_bytes=4096)) as gw:
        auth = await gw.ingest_auth()
        invalid = timeback_activity_event()
        del invalid["actor"]
        deep, big = timeback_activity_event(), timeback_activity_event()
        deep["extensions"], big["extensions"] = _nested(80), {"x": "y" * 5000}
        bodies = [envelope(invalid), envelope(deep), envelope(big), envelope(*[generic_caliper_event()] * 4),
                  {**envelope(timeback_activity_event()), "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1"}]
        for body in bodies:
            encoded = orjson.dumps(body)
            assert await _post(gw, "/caliper/event/validate", encoded, auth) == \
                await _post(gw, "/caliper/event", encoded, auth)
        assert gw.publisher.published == []


async def _slow_body(first: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    yield first
    await release.wait()
    yield b"]}"


async def test_bodies_in_flight_are_bounded_503_before_reading(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, max_body_bytes=64 * 1024, max_inflight_body_bytes=64 * 1024)
    async with gateway(settings) as gw:
        auth = await gw.ingest_auth()
        events = orjson.dumps([timeback_activity_event() for _ in range(50)])
        head = b'{"sensor": "https://example.edu/s", "sendTime": "2024-01-01T00:00:00Z", "dataVersion": ' \
               b'"http://purl.imsglobal.org/ctx/caliper/v1p2", "data": ' + events[:-1]
        assert 40 * 1024 < len(head) < 60 * 1024
        release = asyncio.Event()
        slow = asyncio.ensure_future(gw.client.post("/caliper/event", data=_slow_body(head, release),
                                                    headers={**auth, **JSON}))  # chunked: counted as read
        budget = gw.client.app[BODY_BUDGET]
        while budget.in_use < len(head):  # the slow request's first chunk is read and held
            await asyncio.sleep(0.01)
        body = orjson.dumps(envelope(*[timeback_activity_event() for _ in range(20)]))
        assert len(head) + len(body) > settings.max_inflight_body_bytes
        response = await gw.client.post("/caliper/event", data=body, headers={**auth, **JSON})
        assert response.status == 503 and int(response.headers["Retry-After"]) > 0
        assert "too many request bodies" in (await response.json())["message"]
        release.set()
        assert (await slow).status == 200
        assert budget.in_use == 0  # released with the answer
        assert (await gw.client.post("/caliper/event", data=body, headers={**auth, **JSON})).status == 200


async def test_a_chunked_body_is_capped_as_it_is_read(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path, max_body_bytes=8 * 1024)) as gw:
        auth = await gw.ingest_auth()

        async def endless() -> AsyncIterator[bytes]:
            yield b'{"data": ["'
            for _ in range(100):
                yield b"x" * 1024

        response = await gw.client.post("/caliper/event", data=endless(), headers={**auth, **JSON})
        assert response.status == 413 and "8192" in (await response.json())["message"]


async def test_events_and_entities_are_counted_apart(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        person = {"id": "https://example.edu/users/554433", "type": "Person"}
        document = {"id": "https://example.edu/etexts/201.epub", "type": "Document", "name": "IMS Caliper"}
        mixed = orjson.dumps(envelope(generic_caliper_event(), generic_caliper_event(), person))
        assert (await _post(gw, "/caliper/event", mixed, auth))[1]["message"] == "2 events and 1 entity accepted"
        assert (await _post(gw, "/caliper/event/validate", mixed, auth))[1]["message"] == \
            "2 events and 1 entity are valid"
        entities = orjson.dumps(envelope(person, document, {**person, "id": "https://example.edu/users/1"}))
        answer = (await _post(gw, "/caliper/event", entities, auth))[1]
        assert answer.pop("jobId") and answer == {
            "status": "success", "message": "0 events and 3 entities accepted", "errors": None}
        assert gw.publisher.jobs[-1].accepted == 0 and gw.publisher.jobs[-1].entities == 3  # entities: not followed
        one = orjson.dumps(envelope(generic_caliper_event(), document))
        assert (await _post(gw, "/caliper/event", one, auth))[1]["message"] == "1 event and 1 entity accepted"
        events = orjson.dumps(envelope(generic_caliper_event(), generic_caliper_event()))
        assert (await _post(gw, "/caliper/event", events, auth))[1]["message"] == "2 events accepted"


async def test_the_endpoint_configuration_is_truthful(tmp_path: Path) -> None:
    from importlib.metadata import version

    async with gateway(gateway_settings(tmp_path, max_body_bytes=123_456, max_event_bytes=50_000)) as gw:
        config = await (await gw.client.get("/caliper/event")).json()
    assert validate_endpoint_config(config) == []
    assert config["caliper_maximum_payload_size"] == 123_456
    extensions = config["caliper_supported_extensions"]
    assert extensions["endpoint_version"] == version("caliper-pipeline")
    assert extensions["maximum_event_size"] == 50_000
    assert {"ReadingGradingProfile", "TimebackProfile", "GradingProfile", "SessionProfile"} <= set(
        extensions["profiles"])
