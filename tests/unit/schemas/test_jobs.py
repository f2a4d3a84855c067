"""Delivery receipts, the job side: job ids bound to a tenant, job records, the gateway's answers with the job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from gateway_doubles import FakeReader, gateway, gateway_settings

from caliper_pipeline.client.receipts import FollowedJob, run_and_follow, wait_for_jobs
from caliper_pipeline.senders.samples import envelope, generic_caliper_event, hub_grade_event
from gateway.settings import INGEST_SCOPE
from schemas.jobs import JOB_ID_PATTERN, JobIds, JobRecord, issued_ms, job_records
from schemas.read_api import COMPLETED_WITH_ERRORS, FailedEventReceipt, JobStatus, ReadUnavailableError
from schemas.side_topics import SideTopicRecordError
from schemas.timeback_read import stored_event_id


def test_a_job_id_is_known_only_to_the_tenant_it_was_issued_to() -> None:
    ids = JobIds(["secret-1"])
    now = int(time.time() * 1000)
    job = ids.issue("school-a", now)
    assert JOB_ID_PATTERN.fullmatch(job) and issued_ms(job) == now
    assert ids.issued_to(job, "school-a")
    assert not ids.issued_to(job, "school-b")  # another tenant's job: as unknown as a guessed one
    assert not JobIds(["another secret"]).issued_to(job, "school-a")  # a forged id (other key)
    flipped = job[:20] + ("a" if job[20] != "a" else "b") + job[21:]
    assert not ids.issued_to(flipped, "school-a")
    for garbage in ("", "x", job.upper(), job + "a", "../" + job[3:], "0" * 40, "a" * 40, "é" * 40):
        assert not ids.issued_to(garbage, "school-a")
    assert len({ids.issue("school-a", now) for _ in range(1000)}) == 1000  # 88 random bits each


def test_job_ids_survive_a_key_rotation() -> None:
    job = JobIds(["old"]).issue("t", 1)
    assert JobIds(["new", "old"]).issued_to(job, "t")
    assert not JobIds(["new"]).issued_to(job, "t")


def test_a_large_job_is_split_into_parts_that_carry_the_totals() -> None:
    events = [(i, f"urn:uuid:{i:036d}") for i in range(5000)]
    parts = job_records(job_id="j" * 40, tenant="t", client_id="c", endpoint="caliper", received_time_ms=5,
                        events=events, entities=2, part_bytes=64 * 1024)
    assert len(parts) > 1 and all(p.parts == len(parts) and p.accepted == 5000 for p in parts)
    assert [p.part for p in parts] == list(range(len(parts)))
    assert [pair for p in parts for pair in zip(p.event_indexes, p.event_ids, strict=True)] == events
    assert all(len(p.to_json()) < 80 * 1024 for p in parts)
    assert all(JobRecord.from_json(p.to_json()) == p for p in parts)
    [empty] = job_records(job_id="j" * 40, tenant="t", client_id="c", endpoint="caliper", received_time_ms=5,
                          events=[], entities=3)
    assert (empty.accepted, empty.entities, empty.parts, empty.event_ids) == (0, 3, 1, ())


@pytest.mark.parametrize("change, problem", [
    ({"accepted": "3"}, "'accepted' must be int"),
    ({"event_ids": ["a", "b"]}, "differ in length"),
    ({"event_indexes": ["0"]}, "must hold integers"),
    ({"tenant": None}, "'tenant' must be str"),
])
def test_a_bad_job_record_is_named(change: dict[str, object], problem: str) -> None:
    [record] = job_records(job_id="j" * 40, tenant="t", client_id="c", endpoint="hub", received_time_ms=5,
                           events=[(0, "e")], entities=0)
    with pytest.raises(SideTopicRecordError, match=problem):
        JobRecord.from_json(orjson.dumps({**orjson.loads(record.to_json()), **change}))


async def test_the_hub_keeps_its_body_and_names_the_job_in_location(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        event = hub_grade_event()
        response = await gw.client.post("/hub/v1/events", json=event, headers=auth)
        assert response.status == 200
        assert set(await response.json()) == {"@context", "id"}  # the hub's contract body, unchanged
        location = response.headers["Location"]
        assert location.startswith("/jobs/")
        job_id = location.removeprefix("/jobs/")
        [raw] = gw.publisher.events
        assert (raw.job_id, raw.envelope_index) == (job_id, 0)
        [job] = gw.publisher.jobs
        assert (job.job_id, job.endpoint, job.accepted, job.event_ids) == (job_id, "hub", 1, (event["id"],))


async def test_each_request_is_its_own_job_and_refused_ones_are_none(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        first = await (await gw.client.post("/caliper/event", json=envelope(generic_caliper_event()),
                                            headers=auth)).json()
        second = await (await gw.client.post("/caliper/event", json=envelope(generic_caliper_event()),
                                             headers=auth)).json()
        assert first["jobId"] != second["jobId"]
        refused = await gw.client.post("/caliper/event", json={"data": []}, headers=auth)
        assert refused.status == 400 and "jobId" not in await refused.json()
        valid = await gw.client.post("/caliper/event/validate", json=envelope(generic_caliper_event()), headers=auth)
        assert valid.status == 200 and "jobId" not in await valid.json() and "Location" not in valid.headers
        assert [job.job_id for job in gw.publisher.jobs] == [first["jobId"], second["jobId"]]


async def test_a_job_status_is_answered_to_its_tenant_only(tmp_path: Path) -> None:
    reader = FakeReader()
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        auth_a = await gw.ingest_auth("school-a")
        auth_b = await gw.ingest_auth("school-b")
        accepted = await gw.client.post("/caliper/event", json=envelope(generic_caliper_event()), headers=auth_a)
        job_id = (await accepted.json())["jobId"]
        status = JobStatus(job_id=job_id, status=COMPLETED_WITH_ERRORS, accepted=2, loaded=1, dead_lettered=1,
                           received_time="2026-01-01T00:00:00.000Z", event_ids=["e1", "e2"],
                           failures=[FailedEventReceipt(1, "e2", "streams", "NormalizationError: no actor")])
        reader.jobs[("school-a", job_id)] = status
        for path in (f"/jobs/{job_id}/status", f"/jobs/{job_id}", accepted.headers["Location"]):
            answer = await gw.client.get(path, headers=auth_a)
            assert answer.status == 200 and await answer.json() == status.to_json()
        assert (await (await gw.client.get(f"/jobs/{job_id}", headers=auth_a)).json())["counts"] == {
            "accepted": 2, "entities": 0, "loaded": 1, "deadLettered": 1, "rejectedAtLoad": 0, "processing": 0}
        asked = len(reader.job_queries)
        other = await gw.client.get(f"/jobs/{job_id}/status", headers=auth_b)  # school-b: another tenant's job
        unknown = await gw.client.get(f"/jobs/{'a' * 40}/status", headers=auth_a)
        malformed = await gw.client.get("/jobs/..%2Fx/status", headers=auth_a)
        assert other.status == unknown.status == malformed.status == 404
        assert await other.json() == await unknown.json() == await malformed.json()  # no oracle
        assert len(reader.job_queries) == asked  # refused before the read side was asked
        assert (await gw.client.get(f"/jobs/{job_id}/status")).status == 401
        client, _ = gw.add_client("school-a")
        no_read = await gw.client.get(f"/jobs/{job_id}/status", headers=gw.auth(client, {INGEST_SCOPE}))
        assert no_read.status == 403


async def test_a_job_not_loaded_yet_is_processing_and_a_read_failure_is_503(tmp_path: Path) -> None:
    reader = FakeReader()
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        auth = await gw.ingest_auth("school-a")
        job_id = (await (await gw.client.post("/caliper/event", json=envelope(generic_caliper_event()),
                                              headers=auth)).json())["jobId"]
        early = await gw.client.get(f"/jobs/{job_id}/status", headers=auth)
        assert early.status == 200
        body = await early.json()
        assert body["status"] == "processing" and body["counts"]["accepted"] is None and body["eventIds"] is None
        reader.failure = ReadUnavailableError("down")
        down = await gw.client.get(f"/jobs/{job_id}/status", headers=auth)
        assert down.status == 503 and "Retry-After" in down.headers
    async with gateway(gateway_settings(tmp_path)) as gw:  # no read side at all
        auth = await gw.ingest_auth("school-a")
        job_id = (await (await gw.client.post("/caliper/event", json=envelope(generic_caliper_event()),
                                              headers=auth)).json())["jobId"]
        assert (await gw.client.get(f"/jobs/{job_id}/status", headers=auth)).status == 404


def test_a_job_status_reads_back_what_it_wrote() -> None:
    status = JobStatus(job_id="j" * 40, status=COMPLETED_WITH_ERRORS, accepted=3, entities=1, loaded=1,
                       dead_lettered=1, rejected_at_load=1, event_ids=["a", "b", "c"],
                       failures=[FailedEventReceipt(1, "b", "streams", "x"), FailedEventReceipt(2, "c", "sink", "y")],
                       loaded_ids=["a"], received_time="2026-01-01T10:00:00.000Z")
    assert JobStatus.from_json(orjson.loads(orjson.dumps(status.to_json()))) == status
    assert status.to_json()["counts"]["processing"] == 0
    assert status.to_json()["job"] == {"id": "j" * 40, "state": "failed", "processedOn": "2026-01-01T10:00:00.000Z",
                                       "returnValue": {"status": "error", "results": [
                                           {"allocatedId": str(stored_event_id("a")), "externalId": "a"}]}}


async def test_waiting_on_jobs_reports_loaded_failed_and_processing(tmp_path: Path) -> None:
    reader = FakeReader()
    async with gateway(gateway_settings(tmp_path), reader=reader) as gw:
        client, _ = gw.add_client("school-a")
        token = gw.token(client)
        jobs = {}
        for _ in range(3):
            answer = await gw.client.post("/caliper/event", json=envelope(generic_caliper_event(),
                                                                          generic_caliper_event()),
                                          headers={"Authorization": f"Bearer {token}"})
            jobs[(await answer.json())["jobId"]] = FollowedJob(token, time.time())
        done, failed, waiting = list(jobs)
        reader.jobs[("school-a", done)] = JobStatus(done, "completed", 2, loaded=2, event_ids=["a", "b"])
        reader.jobs[("school-a", failed)] = JobStatus(
            failed, COMPLETED_WITH_ERRORS, 2, loaded=1, dead_lettered=1, event_ids=["c", "d"],
            failures=[FailedEventReceipt(1, "d", "streams", "NormalizationError: x")])
        reader.jobs[("school-a", waiting)] = JobStatus(waiting, "processing", 2, loaded=1)
        url = str(gw.client.make_url("")).rstrip("/")
        summary = await wait_for_jobs(url, token, jobs, timeout=0.5, poll_seconds=0.1)
        assert (summary.accepted, summary.loaded, summary.failed, summary.processing) == (6, 4, 1, 1)
        assert summary.pending_jobs == [waiting] and set(summary.completed_at) == {done, failed}
        assert summary.reasons() == {"NormalizationError: x": 1}
        assert "loaded 4, failed 1 (dead-lettered 1, rejected at load 0), still processing 1" in summary.line()
        reader.jobs[("school-a", waiting)] = JobStatus(waiting, "completed", 2, loaded=2, event_ids=["e", "f"])
        result, report = await run_and_follow(url, asyncio.sleep(0.3, "the run"), jobs, timeout=5)
        assert result == "the run" and "still processing 0" in report and "1 failed: NormalizationError: x" in report
