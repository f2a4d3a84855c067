"""The real Timeback Python SDK (``timeback-caliper``, unmodified, in a virtualenv of its own: it needs Python >= 3.12)
against a real gateway + streams + sink on the session's Kafka broker: every call a sender makes returns what the
SDK expects (``timeback_sdk_script.py`` makes the calls and prints their results as JSON).

The virtualenv is built once per SDK version under pytest's cache directory (the system's temporary directory
without pytest's cache). Without a Python >= 3.12 on the
machine the test is skipped, except in CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from pipeline_harness import LocalPipeline, publish_as_a_laxer_gateway

from caliper_pipeline.senders.samples import generic_caliper_event, timeback_activity_event
from gateway.clients import ClientRegistry
from schemas.timeback_read import stored_event_id

pytestmark = pytest.mark.integration
SDK_VERSION = "0.4.0"
SCRIPT = Path(__file__).with_name("timeback_sdk_script.py")
SDK_CHECK = "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"


def python_for_the_sdk() -> str | None:
    """A Python >= 3.12 that runs: on PATH, else one of pyenv's versions (pyenv's shims on PATH run only the
    versions its configuration selects)."""
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which(name) for name in ("python3.12", "python3.13", "python3.14", "python3")]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.1[2-9]*/bin/python3"))
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", SDK_CHECK], capture_output=True, timeout=30).returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="module")
def sdk_python(request: pytest.FixtureRequest) -> Path:
    """The python of a virtualenv holding ``timeback-caliper`` (built once, then reused from pytest's cache)."""
    name = f"timeback-caliper-{SDK_VERSION}"
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: a directory of the machine's
    home = Path(cache.mkdir(name)) if cache is not None else Path(tempfile.gettempdir()) / name
    home.mkdir(parents=True, exist_ok=True)
    python = home / "venv" / "bin" / "python"
    if (home / "venv" / "ready").exists():
        return python
    interpreter = python_for_the_sdk()
    if interpreter is None:
        message = "no Python >= 3.12 on this machine: the Timeback SDK needs one"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    building = home / f"building-{os.getpid()}"  # built aside, then renamed in place whole (runs at once)
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([interpreter, "-m", "venv", str(building)], check=True, timeout=300)
    subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"timeback-caliper=={SDK_VERSION}"], check=True, timeout=600)
    (building / "ready").touch()
    shutil.rmtree(home / "venv", ignore_errors=True)
    os.replace(building, home / "venv")  # its python finds its packages from where it is: nothing to rewrite
    return python


def run_sdk(python: Path, pipeline: LocalPipeline, sensor: str, ids: dict[str, str], failed_job: str) -> Any:
    done = subprocess.run(
        [str(python), str(SCRIPT), pipeline.gateway_url, pipeline.client_id, pipeline.client_secret, sensor,
         orjson.dumps(ids).decode(), failed_job],
        capture_output=True, text=True, timeout=600, env={"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr[-4000:]
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def test_the_timeback_sdk_works_unmodified_against_the_gateway(sdk_python: Path, pipeline: LocalPipeline) -> None:
    sensor = f"https://sdk.example/sensors/{uuid.uuid4()}"
    ids = {name: f"urn:uuid:{uuid.uuid4()}" for name in ("activity", "time_spent", "question_seen",
                                                          "question_graded")}
    tenant = ClientRegistry(pipeline.clients_file).get(pipeline.client_id).tenant  # type: ignore[union-attr]
    broken = {"id": f"urn:uuid:{uuid.uuid4()}", "type": "ActivityEvent", "profile": "TimebackProfile",
              "eventTime": "2026-01-01T10:00:00Z"}  # a worker cannot normalize it: dead-lettered
    mixed = [timeback_activity_event("s2"), broken, generic_caliper_event()]
    failed_job = publish_as_a_laxer_gateway(pipeline, tenant, pipeline.client_id, mixed)
    started = time.monotonic()
    out = run_sdk(sdk_python, pipeline, sensor, ids, failed_job)
    print(f"SDK {SDK_VERSION} run in {time.monotonic() - started:.1f}s:", orjson.dumps(out).decode())

    assert all(isinstance(job, str) and len(job) == 40 for job in out["sent"].values())  # send_*: a job id each
    assert out["first_status"]["id"] == out["sent"]["activity"]
    assert out["first_status"]["state"] in ("waiting", "active", "completed")
    for name, status in out["waited"].items():  # wait_for_completion: completed, the event loaded, its ids
        assert (status["id"], status["state"]) == (out["sent"][name], "completed"), status
        assert status["returnValue"] == {"status": "success", "results": [
            {"allocatedId": str(stored_event_id(ids[name])), "externalId": ids[name]}]}, status
        assert status["processedOn"]
    # a job with an event that failed: wait_for_completion raises, get_status says which were loaded
    assert out["failed_wait"].startswith("JobFailedError"), out["failed_wait"]
    failed = out["failed_status"]
    assert failed["state"] == "failed" and failed["returnValue"]["status"] == "error"
    assert [r["externalId"] for r in failed["returnValue"]["results"]] == [mixed[0]["id"], mixed[2]["id"]]

    newest_first = [ids[name] for name in ("activity", "time_spent", "question_seen", "question_graded")]
    listed = out["list"]
    assert listed["pagination"] == {"total": 4, "totalPages": 2, "currentPage": 1, "limit": 3}
    assert len(listed["events"]) == 3 and set(e["externalId"] for e in listed["events"]) <= set(newest_first)
    second = out["list_page_2"]
    assert second["pagination"] == {"total": 4, "totalPages": 2, "currentPage": 2, "limit": 3}
    assert {e["externalId"] for e in listed["events"] + second["events"]} == set(newest_first)
    assert sorted(out["streamed"]) == sorted(newest_first)  # stream(): offset pages until the total
    by_type = {e["externalId"]: e for e in listed["events"] + second["events"]}
    assert {(by_type[ids[n]]["type"], by_type[ids[n]]["action"]) for n in ids} == {
        ("ActivityEvent", "Completed"), ("TimeSpentEvent", "SpentTime"), ("AssessmentItemEvent", "Started"),
        ("GradeEvent", "Graded")}
    assert all(e["sensor"] == sensor and e["id"] == stored_event_id(e["externalId"]) for e in by_type.values())
    # actorId and actorEmail: the two Timeback events name the student with the email
    assert {e["externalId"] for e in out["list_by_actor"]["events"]} == {ids["activity"], ids["time_spent"]}
    assert out["list_by_actor"]["pagination"]["total"] == 2
    assert out["list_by_time"]["events"] == [] and out["list_by_time"]["pagination"]["total"] == 0

    got = out["get"]  # events.get(externalId): the same event as listed
    assert got == by_type[ids["activity"]]
    assert got["actor"]["email"] == "s1@sdk.example" and got["object"]["subject"] == "Math"
    assert got["clientAppId"] == pipeline.client_id and got["created_at"] and got["deleted_at"] is None
    assert out["get_unknown"].endswith("404"), out["get_unknown"]
