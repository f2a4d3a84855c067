"""Delivery receipts end to end (real broker, real chDB, the pipeline as processes): a sender follows its jobs to
``completed`` / ``completed_with_errors`` with exact counts and reasons, the failed events are in ClickHouse, and a
tenant cannot read another tenant's job."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from pipeline_harness import LocalPipeline, publish_as_a_laxer_gateway
from pydantic import SecretStr

from caliper_pipeline.bench.gateway_bench import access_token
from caliper_pipeline.client.receipts import wait_for_jobs
from caliper_pipeline.client.sink_client import SinkQueryError, sql_literal
from caliper_pipeline.ops.failed_replay import replay_failed
from caliper_pipeline.senders.samples import envelope, generic_caliper_event, timeback_activity_event
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from schemas.kafka import Source
from sinks.settings import SinkSettings

pytestmark = [pytest.mark.integration, pytest.mark.stack]


def post(url: str, token: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, orjson.loads(response.read()), dict(response.headers)


def get(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def test_jobs_are_followed_to_completion_with_exact_counts_and_reasons(pipeline: LocalPipeline) -> None:
    token = access_token(pipeline.gateway_url, pipeline.client_id, pipeline.client_secret)
    tenant = ClientRegistry(pipeline.clients_file).get(pipeline.client_id).tenant  # type: ignore[union-attr]
    person = {"id": "https://example.edu/users/1", "type": "Person"}
    good = [timeback_activity_event("s1"), generic_caliper_event(), person]
    status, body, headers = post(f"{pipeline.gateway_url}/caliper/event", token, envelope(*good))
    assert status == 200 and body["message"] == "2 events and 1 entity accepted"
    clean_job = body["jobId"]
    assert headers["Location"] == f"/jobs/{clean_job}"
    # a job whose second event the worker cannot normalize (a Timeback ActivityEvent without its required parts)
    broken = {"id": "urn:uuid:7d0f0b1e-0000-4000-8000-00000000b0b0", "type": "ActivityEvent",
              "profile": "TimebackProfile", "eventTime": "2026-01-01T10:00:00Z"}
    mixed_items = [timeback_activity_event("s2"), broken, generic_caliper_event()]
    mixed_job = publish_as_a_laxer_gateway(pipeline, tenant, pipeline.client_id, mixed_items)

    summary = asyncio.run(wait_for_jobs(pipeline.gateway_url, token, [clean_job, mixed_job], timeout=120))
    clean, mixed = summary.statuses[clean_job], summary.statuses[mixed_job]
    assert clean["status"] == "completed", clean
    assert clean["counts"] == {"accepted": 2, "entities": 1, "loaded": 2, "deadLettered": 0, "rejectedAtLoad": 0,
                               "processing": 0}
    assert clean["eventIds"] == [good[0]["id"], good[1]["id"]] and clean["failures"] == []
    assert mixed["status"] == "completed_with_errors", mixed
    assert mixed["counts"] == {"accepted": 3, "entities": 0, "loaded": 2, "deadLettered": 1, "rejectedAtLoad": 0,
                               "processing": 0}
    assert mixed["eventIds"] == [item["id"] for item in mixed_items]
    [failure] = mixed["failures"]
    assert (failure["index"], failure["eventId"], failure["stage"]) == (1, broken["id"], "streams")
    assert failure["reason"].startswith("NormalizationError: invalid ActivityEvent"), failure
    # the facts carry their job; the failed event is in ClickHouse, for analysts without what was sent
    loaded = pipeline.sql(f"SELECT envelope_index FROM {pipeline.database}.learning_facts "
                          f"WHERE job_id = {sql_literal(mixed_job)} ORDER BY envelope_index")
    assert [row["envelope_index"] for row in loaded] == [0, 2]
    [failed] = pipeline.sql(f"SELECT tenant, stage, reason, client_id, job_id, envelope_index, event_id "
                            f"FROM {pipeline.database}.failed_events_summary WHERE job_id = {sql_literal(mixed_job)}")
    assert failed == {"tenant": tenant, "stage": "streams", "reason": failure["reason"],
                      "client_id": pipeline.client_id, "job_id": mixed_job, "envelope_index": 1,
                      "event_id": broken["id"]}
    with pytest.raises(SinkQueryError, match="failed_events"):
        pipeline.sql(f"SELECT payload FROM {pipeline.database}.failed_events")

    # replay chooses from those tables: by job (a dry run counts), by reason and tenant; what it re-published
    settings = Settings(kafka=pipeline.kafka, sink=SinkSettings(sink_url=pipeline.sink_url,
                                                                admin_token=SecretStr(pipeline.admin_token)))
    counted = asyncio.run(replay_failed(settings, {"job_id": mixed_job}, dry_run=True))
    assert (counted.read, counted.republished) == (1, 0)
    assert asyncio.run(replay_failed(settings, {"tenant": tenant, "reason": "no such reason"})).read == 0
    replayed = asyncio.run(replay_failed(settings, {"tenant": tenant, "reason": "invalid ActivityEvent"}))
    assert (replayed.read, replayed.republished) == (1, 1)
    assert dict(replayed.by_destination) == {pipeline.kafka.topics.raw(Source.TIMEBACK): 1}
    # this worker still refuses it: a second failure of the same event (a new raw position), same job and index
    deadline = time.monotonic() + 60
    while len(again := pipeline.sql(f"SELECT envelope_index, offset FROM {pipeline.database}.failed_events_summary "
                                    f"WHERE job_id = {sql_literal(mixed_job)}")) < 2:
        assert time.monotonic() < deadline, again
        time.sleep(0.5)
    assert [row["envelope_index"] for row in again] == [1, 1] and again[0]["offset"] != again[1]["offset"]
    assert asyncio.run(wait_for_jobs(pipeline.gateway_url, token, [mixed_job])).statuses[mixed_job]["counts"][
        "deadLettered"] == 1  # still one event of the job, dead-lettered


def test_a_tenant_cannot_read_another_tenants_job(pipeline: LocalPipeline, tmp_path: Path) -> None:
    token = access_token(pipeline.gateway_url, pipeline.client_id, pipeline.client_secret)
    _, body, _ = post(f"{pipeline.gateway_url}/caliper/event", token, envelope(generic_caliper_event()))
    job = body["jobId"]
    other, secret = ClientRegistry(pipeline.clients_file).add(f"other-{time.time_ns()}")
    deadline = time.monotonic() + 10
    while True:  # the gateway re-reads the clients file within a second
        try:
            other_token = access_token(pipeline.gateway_url, other.client_id, secret)
            break
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    summary = asyncio.run(wait_for_jobs(pipeline.gateway_url, token, [job], timeout=60))
    assert summary.statuses[job]["status"] == "completed"  # it exists, for its own tenant
    foreign = get(f"{pipeline.gateway_url}/jobs/{job}/status", other_token)
    unknown = get(f"{pipeline.gateway_url}/jobs/{'b' * 40}/status", other_token)
    assert foreign[0] == unknown[0] == 404
    assert foreign[1] == unknown[1]  # the same answer: no way to tell another tenant's job from none
    assert get(f"{pipeline.gateway_url}/jobs/{job}", other_token)[0] == 404
