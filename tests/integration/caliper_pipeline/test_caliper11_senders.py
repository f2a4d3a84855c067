"""Caliper 1.1 senders end to end (real broker, real chDB, the pipeline as processes): Canvas LMS Live Events in
Caliper format are accepted and loaded once each with their learner, score, time and ``caliper_version`` 1.1; the
npm ``ims-caliper`` sensor (the real package, installed with npm, its own HTTP client) is accepted."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from pipeline_harness import LocalPipeline

from caliper_pipeline.bench.gateway_bench import access_token
from caliper_pipeline.client.receipts import wait_for_jobs
from caliper_pipeline.client.sink_client import sql_literal
from caliper_pipeline.senders.samples import (
    canvas_envelope,
    canvas_grade_event,
    canvas_logged_in_event,
    canvas_navigation_event,
    canvas_quiz_submitted_event,
)
from schemas.coerce import time_to_ms

pytestmark = pytest.mark.integration

SENSOR_SCRIPT = Path(__file__).with_name("ims_caliper_sensor.js")
IMS_CALIPER = "ims-caliper@1.1.0"  # the newest release (Caliper 1.1)


def post(url: str, token: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, orjson.loads(response.read())


def loaded_job(pipeline: LocalPipeline, token: str, job_id: str, events: int) -> None:
    status = asyncio.run(wait_for_jobs(pipeline.gateway_url, token, [job_id], timeout=120)).statuses[job_id]
    assert status["status"] == "completed" and status["counts"]["loaded"] == events, status


def test_canvas_live_events_are_loaded_once_with_learner_score_and_time(pipeline: LocalPipeline) -> None:
    token = access_token(pipeline.gateway_url, pipeline.client_id, pipeline.client_secret)
    student, times = "21070000000000042", [f"2026-11-0{day}T1{day}:00:00.000Z" for day in range(1, 5)]
    events = [canvas_navigation_event(student, event_time=times[0]),
              canvas_quiz_submitted_event(student, event_time=times[1]),
              canvas_grade_event(student, score_given=7.5, max_score=10.0, event_time=times[2]),
              canvas_logged_in_event(student, event_time=times[3])]
    status, body = post(f"{pipeline.gateway_url}/caliper/event", token, canvas_envelope(*events))
    assert status == 200 and body["message"] == "4 events accepted"
    loaded_job(pipeline, token, body["jobId"], 4)
    rows = pipeline.sql(
        "SELECT event_id, count() AS n, any(student_id) AS student, any(caliper_version) AS version, "
        "any(score_given) AS given, any(max_score) AS max, any(toUnixTimestamp64Milli(event_time)) AS ms "
        f"FROM {pipeline.database}.learning_facts WHERE job_id = {sql_literal(body['jobId'])} GROUP BY event_id")
    by_event = {row["event_id"]: row for row in rows}
    assert set(by_event) == {event["id"] for event in events}
    for event, sent_at in zip(events, times, strict=True):
        row = by_event[event["id"]]
        assert (row["n"], row["student"], row["version"], row["ms"]) == (
            1, f"urn:instructure:canvas:user:{student}", "1.1", time_to_ms(sent_at)), row
    grade = by_event[events[2]["id"]]
    assert (grade["given"], grade["max"]) == (7.5, 10.0)
    assert by_event[events[0]["id"]]["given"] is None  # a navigation has no score: absent, not 0


def test_the_npm_ims_caliper_sensor_is_accepted(pipeline: LocalPipeline, tmp_path: Path) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm and node are needed to run the ims-caliper sensor")
    install = subprocess.run([npm, "install", IMS_CALIPER, "--no-audit", "--no-fund", "--silent"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, check=False)
    if install.returncode != 0:
        pytest.skip(f"npm could not install {IMS_CALIPER} (no registry here?): {install.stderr[-300:]}")
    token = access_token(pipeline.gateway_url, pipeline.client_id, pipeline.client_secret)
    actor = "https://example.edu/users/npm-sensor"
    sent = subprocess.run([node, str(SENSOR_SCRIPT), str(tmp_path), f"{pipeline.gateway_url}/caliper/event", token,
                           actor, "--log"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert sent.returncode == 0, (sent.stdout, sent.stderr)
    result = orjson.loads(sent.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, (result, (tmp_path / "caliper_js-debug.log").read_text()[-2000:])
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while not rows and time.monotonic() < deadline:  # loaded by the streams worker and the sink (seconds)
        time.sleep(0.5)
        rows = pipeline.sql(f"SELECT student_id, caliper_version, event_type FROM {pipeline.database}.current_facts "
                            f"WHERE event_id = {sql_literal(result['eventId'])}")
    assert rows == [{"student_id": actor, "caliper_version": "1.1", "event_type": "SessionEvent"}]
