"""The Timeback API's read shapes without a store: the numeric id, the job states the SDK's ``wait_for_completion``
acts on, ``pagination``, and ``GET /caliper/events/{eventId}`` (one event of the caller's tenant, 404 otherwise)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from gateway_doubles import FakeReader, gateway, gateway_settings

from gateway.settings import INGEST_SCOPE, READ_SCOPE
from schemas.read_api import (
    COMPLETED,
    COMPLETED_WITH_ERRORS,
    PROCESSING,
    EventPage,
    EventQuery,
    FailedEventReceipt,
    JobStatus,
    ReadUnavailableError,
)
from schemas.timeback_read import ENTITY_FIELDS, pagination, stored_event, stored_event_id

UPPER = "urn:uuid:C51570E4-F8ED-4C18-BB3A-DFE51B2CC594"


def test_the_numeric_id_is_stable_exact_in_json_and_tells_events_apart() -> None:
    ids = [stored_event_id(f"urn:uuid:00000000-0000-0000-0000-{i:012d}") for i in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(0 <= value < 2**53 for value in ids)  # a JSON number read as a double stays exact
    assert stored_event_id("urn:uuid:00000000-0000-0000-0000-000000000000") == ids[0]  # the same in every call


@pytest.mark.parametrize(("status", "accepted", "state", "outcome"), [
    (PROCESSING, None, "waiting", None),  # the job's record is not loaded yet
    (PROCESSING, 2, "active", None),
    (COMPLETED, 2, "completed", "success"),
    (COMPLETED_WITH_ERRORS, 2, "failed", "error"),  # wait_for_completion raises JobFailedError on it
])
def test_job_states_as_the_timeback_sdk_reads_them(status: str, accepted: int | None, state: str,
                                                   outcome: str | None) -> None:
    done = status != PROCESSING
    failures = [FailedEventReceipt(1, "e2", "streams", "no actor")] if status == COMPLETED_WITH_ERRORS else []
    loaded = ["e1"] if failures else ["e1", "e2"]
    job = JobStatus(job_id="j" * 40, status=status, accepted=accepted, event_ids=["e1", "e2"] if done else None,
                    failures=failures, loaded_ids=loaded if done else None,
                    received_time=None if accepted is None else "2026-01-01T00:00:00.000Z").to_json()
    assert job["status"] == status and job["job"]["id"] == job["jobId"]  # today's fields beside Timeback's
    assert job["job"]["state"] == state
    assert job["job"]["processedOn"] == (None if accepted is None else "2026-01-01T00:00:00.000Z")
    if outcome is None:
        assert job["job"]["returnValue"] is None
    else:
        assert job["job"]["returnValue"] == {"status": outcome, "results": [
            {"allocatedId": str(stored_event_id(event_id)), "externalId": event_id} for event_id in loaded]}


def test_pagination_counts_pages_from_the_position() -> None:
    assert pagination(0, 100, 0) == {"total": 0, "totalPages": 0, "currentPage": 1, "limit": 100}
    assert pagination(10, 3, 0) == {"total": 10, "totalPages": 4, "currentPage": 1, "limit": 3}
    assert pagination(10, 3, 9) == {"total": 10, "totalPages": 4, "currentPage": 4, "limit": 3}
    assert EventPage(limit=5, total=12, position=5).pagination()["currentPage"] == 2


def test_a_stored_event_flattens_the_caliper_fields() -> None:
    payload = {"id": UPPER, "type": "ActivityEvent", "profile": "TimebackProfile", "action": "Completed",
               "actor": {"id": "s1", "type": "TimebackUser"}, "object": "https://app.example/r/1",
               "edApp": ["not", "an", "entity"], "extensions": {"k": 1}}
    event = stored_event(payload, event_id=UPPER.lower(), event_type="ActivityEvent", sensor="https://s",
                         event_time="t0", send_time=None, created="t1", updated="t2", client_id="c1")
    assert event["externalId"] == UPPER.lower() and event["id"] == stored_event_id(UPPER.lower())
    assert event["sendTime"] == "t2"  # a source that sends no send time: its received time
    assert (event["created_at"], event["updated_at"], event["deleted_at"]) == ("t1", "t2", None)
    assert event["actor"] == payload["actor"] and event["object"] == payload["object"]
    assert event["edApp"] is None and event["extensions"] == {"k": 1} and event["clientAppId"] == "c1"
    assert set(ENTITY_FIELDS) <= set(event)
    hub = stored_event({"id": "h1"}, event_id="h1", event_type="GradeEvent", sensor="", event_time="t0",
                       send_time="t3", created="t1", updated="t2", client_id="")
    assert (hub["type"], hub["action"], hub["profile"], hub["clientAppId"], hub["sendTime"]) == (
        "GradeEvent", "", None, None, "t3")


async def test_one_event_of_the_callers_tenant_by_its_id(tmp_path: Path) -> None:
    stored = {"externalId": UPPER.lower(), "id": stored_event_id(UPPER.lower())}
    reader = FakeReader([stored, {"externalId": "https://app.example/events/1"}])
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        client, _ = gw.add_client("school-a")
        auth = gw.auth(client, {READ_SCOPE})
        # the SDK quotes the whole id (":" too); an upper-case urn:uuid is the same event
        answer = await gw.client.get(f"/caliper/events/{quote(UPPER, safe='')}", headers=auth)
        assert answer.status == 200 and await answer.json() == {"event": stored}
        assert reader.queries[-1] == EventQuery(tenant="school-a", limit=1, event_id=UPPER.lower())
        slashed = await gw.client.get(f"/caliper/events/{quote('https://app.example/events/1', safe='')}",
                                      headers=auth)
        assert slashed.status == 200 and reader.queries[-1].event_id == "https://app.example/events/1"
        missing = await gw.client.get("/caliper/events/urn%3Auuid%3Anone", headers=auth)
        assert missing.status == 404
        other, _ = gw.add_client("school-b")  # the reader is asked for the caller's tenant's event only
        await gw.client.get(f"/caliper/events/{quote(UPPER, safe='')}", headers=gw.auth(other, {READ_SCOPE}))
        assert reader.queries[-1].tenant == "school-b"
        long = await gw.client.get(f"/caliper/events/{'x' * 2049}", headers=auth)
        assert long.status == 400 and "eventId" in (await long.text())
        assert (await gw.client.get(f"/caliper/events/{quote(UPPER, safe='')}")).status == 401
        writer = gw.auth(client, {INGEST_SCOPE})
        assert (await gw.client.get(f"/caliper/events/{quote(UPPER, safe='')}", headers=writer)).status == 403
        reader.failure = ReadUnavailableError("down")
        down = await gw.client.get(f"/caliper/events/{quote(UPPER, safe='')}", headers=auth)
        assert down.status == 503 and "Retry-After" in down.headers
