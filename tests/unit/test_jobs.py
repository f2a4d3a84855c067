"""Delivery receipts, the job side: job ids bound to a tenant, job records, the gateway's answers with the job."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from caliper_pipeline.samples import envelope, generic_caliper_event, hub_grade_event
from schemas.jobs import JOB_ID_PATTERN, JobIds, JobRecord, issued_ms, job_records
from schemas.side_topics import SideTopicRecordError
from tests.gateway_doubles import gateway, gateway_settings


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
