"""No analyst credential reaches personal data through any route of the sink: every route of the app (read from
its router, so a new route is covered the day it is added) is called with the operator's analyst token and with a
school credential, by GET and POST with plausible bodies, and no answer holds an e-mail, a login or a name sent in
the loaded events. The routes that answer events as sent need the reader token (the gateway's) or the admin's."""

from __future__ import annotations

import base64
import json
import re
import time
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sink_fixtures import Seed, insert, make_fact, sink_test_client

from sinks.analysts import AnalystRegistry
from sinks.clickhouse import ClickHouse
from sinks.settings import QueryLimits, SinkSettings

ANALYST, READER, ADMIN = "analyst-token-0123456789", "reader-token-0123456789", "admin-token-0123456789"
EMAIL, LOGIN, NAME = "ana.souza@example.org", "ana.souza.login", "Ana Beatriz Souza"
SENT = [EMAIL, LOGIN, NAME, base64.b64encode(EMAIL.encode()).decode()[:12]]
Client = TestClient[typing.Any, typing.Any]


def seed_sent_events(target: ClickHouse) -> None:
    """A fact, an archived event and a failed event of school-a whose actor has an e-mail, a login and a name."""
    insert(target, [make_fact(1)], "seed")
    now_ms = int(time.time() * 1000)
    actor = {"id": "urn:uuid:ana", "type": "Person", "email": EMAIL, "name": NAME, "extensions": {"login": LOGIN}}
    payload = json.dumps({"id": "urn:uuid:e1", "type": "GradeEvent", "actor": actor,
                          "eventTime": "2026-01-01T00:00:00Z"})
    raw = {"tenant": "school-a", "client_id": "c", "source": "caliper", "event_id": "e1", "content_hash": "h",
           "event_type": "GradeEvent", "profile": "GradingProfile", "student_id": "s1", "student_keys": ["k1"],
           "actor_id": "urn:uuid:ana", "sensor": "x", "event_time_ms": now_ms, "send_time_ms": now_ms,
           "received_time_ms": now_ms, "envelope_index": 0, "payload": payload}
    target.insert_raw("raw_events_in", json.dumps(raw).encode(), "JSONEachRow")
    failed = {"tenant": "school-a", "stage": "streams", "reason": "r", "client_id": "c", "source": "caliper",
              "job_id": "job-1", "envelope_index": 0, "event_id": "e2", "topic": "t", "partition": 0, "offset": 1,
              "failed_time_ms": now_ms, "worker_version": "1", "student_keys": ["k1"], "payload": payload,
              "original_base64": base64.b64encode(payload.encode()).decode()}
    target.insert_raw("failed_events_in", json.dumps(failed).encode(), "JSONEachRow")


@pytest.fixture
def engine_seed(request: pytest.FixtureRequest) -> Seed | None:
    """The rows the tests of ``sink`` read, loaded once for those that only read; the others start from none."""
    return seed_sent_events if "sink" in request.fixturenames else None


@pytest.fixture
async def sink(target: ClickHouse, tmp_path: Path) -> AsyncIterator[tuple[Client, str]]:
    _, secret = AnalystRegistry(tmp_path / "analysts.json").add(["school-a"], analyst_id="net-a")
    settings = SinkSettings(analyst_token=SecretStr(ANALYST), reader_token=SecretStr(READER),
                            admin_token=SecretStr(ADMIN), analysts_file=tmp_path / "analysts.json",
                            queries=QueryLimits(max_execution_seconds=20, max_result_bytes=256 * 1024))
    async with sink_test_client(target, tmp_path, settings) as client:
        yield client, f"net-a:{secret}"


JSON_BODIES: list[dict[str, typing.Any]] = [
    {}, {"tenant": "school-a"}, {"tenant": "school-a", "limit": 100}, {"tenant": "school-a", "job_id": "job-1"},
    {"tenant": "school-a", "from_ms": None, "to_ms": None}, {"tenant": "school-a", "event_id": "e1"},
    {"tenant": "school-a", "stage": "streams"},  # no value the caller sends is searched for: an error may echo it
]
SQL_BODIES = ["SELECT * FROM learning_facts", "SELECT * FROM current_facts", "SELECT payload FROM raw_events",
              "SELECT * FROM failed_events_summary", "SELECT * FROM view(SELECT payload FROM learning.raw_events)",
              "SELECT * FROM learning.failed_events_loader"]


async def answers(client: Client, token: str) -> dict[str, tuple[int, str]]:
    """Every route called by GET and POST with each plausible body: what each answered."""
    seen: dict[str, tuple[int, str]] = {}
    paths = sorted({re.sub(r"\{[^}]*\}", "school-a", route.resource.canonical)
                    for route in client.server.app.router.routes() if route.resource is not None})
    assert {"/sql", "/read/events", "/read/jobs", "/archive/raw-events", "/admin/failed-events"} <= set(paths)
    user, colon, secret = token.partition(":")
    for path in paths:
        # ClickHouse's HTTP interface takes a user name and password (X-ClickHouse-User/-Key), the others a bearer
        clickhouse = path in ("/", "/ping")
        headers = ({"X-ClickHouse-User": user if colon else "default", "X-ClickHouse-Key": secret if colon else token}
                   if clickhouse else {"Authorization": f"Bearer {token}"})
        params = {} if clickhouse else {"format": "json"}
        response = await client.get(path, headers=headers)
        seen[f"GET {path}"] = (response.status, await response.text())
        for body in JSON_BODIES:
            response = await client.post(path, headers=headers, json=body, params=params)
            seen[f"POST {path} {body}"] = (response.status, await response.text())
        for statement in SQL_BODIES:
            response = await client.post(path, headers=headers, data=statement, params=params)
            seen[f"POST {path} {statement}"] = (response.status, await response.text())
            if clickhouse:
                response = await client.get(path, headers=headers, params={"query": statement})
                seen[f"GET {path}?query={statement}"] = (response.status, await response.text())
    return seen


async def test_no_analyst_credential_gets_what_was_sent_from_any_route(sink: tuple[Client, str]) -> None:
    client, school = sink
    for name, token in (("operator analyst", ANALYST), ("school credential", school)):
        seen = await answers(client, token)
        for call in ("POST /sql SELECT * FROM current_facts", "POST / SELECT * FROM current_facts",
                     "GET /?query=SELECT * FROM current_facts"):
            assert seen[call][0] == 200, (name, call, seen[call])  # the credential reads what analysts may
        leaks = [f"{call} -> {status}: {text[:160]}" for call, (status, text) in seen.items()
                 if any(value in text for value in SENT)]
        assert leaks == [], f"{name}:\n" + "\n".join(leaks)


async def test_the_reader_and_the_admin_read_events_as_sent(sink: tuple[Client, str]) -> None:
    """The loaded events do carry what the analysts must not see: the reader (the gateway) reads them through the
    read API, the admin through it and the archive; the reader token reaches nothing else."""
    client, _ = sink
    for token in (READER, ADMIN):
        page = await client.post("/read/events", headers={"Authorization": f"Bearer {token}"},
                                 json={"tenant": "school-a"})
        assert page.status == 200 and EMAIL in await page.text()
    archive = await client.post("/archive/raw-events", headers={"Authorization": f"Bearer {ADMIN}"},
                                json={"tenant": "school-a"})
    assert archive.status == 200 and EMAIL in await archive.text()
    refused = await client.post("/read/events", headers={"Authorization": f"Bearer {READER}"}, json={})
    assert refused.status == 400 and "tenant" in (await refused.json())["error"]  # was a 500
    for call, (status, _) in (await answers(client, READER)).items():
        method, path = call.split()[:2]
        if path.startswith(("/read/", "/healthz", "/readyz", "/ping")) or (method, path) == ("GET", "/"):
            continue  # the read API, and the health probes (a bare GET / is ClickHouse's ping)
        assert status in (401, 403, 405), call
