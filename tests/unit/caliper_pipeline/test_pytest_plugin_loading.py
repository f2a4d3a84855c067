"""The pytest plugin's loading: declared as the pytest11 entry point, found through it, and inert (nothing heavy
imported, nothing started) in a session that does not request its fixture; ``wait_for_job`` giving up on a job
still processing."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from caliper_pipeline.local.broker import REPO_ROOT
from caliper_pipeline.testing import CaliperPipeline, PipelineJobTimeoutError

INERT_TEST = '''
import sys

def test_nothing_of_the_stack_is_imported(request):
    manager = request.config.pluginmanager
    assert manager.get_plugin("caliper_pipeline.testing")
    heavy = [name for name in ("caliper_pipeline.local.pipeline", "aiokafka", "chdb", "faust", "aiohttp", "gateway")
             if name in sys.modules]
    assert heavy == []
'''


def run_pytest(directory: Path, *options: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    paths = [str(REPO_ROOT), *([str(extra_path)] if extra_path else []), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *options, str(directory)],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=False)


def declared_entry_point() -> str:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return str(pyproject["project"]["entry-points"]["pytest11"]["caliper_pipeline.testing"])


def test_the_entry_point_is_declared() -> None:
    assert declared_entry_point() == "caliper_pipeline.testing"


def test_the_declared_entry_point_loads_the_plugin_and_it_stays_inert(tmp_path: Path) -> None:
    # an installed distribution's metadata, as pip writes it from the pyproject's declaration
    site = tmp_path / "site"
    dist_info = site / "caliper_pipeline_entry_point-0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: caliper-pipeline-entry-point\nVersion: 0.0\n")
    (dist_info / "entry_points.txt").write_text(f"[pytest11]\ncaliper_pipeline.testing = {declared_entry_point()}\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_inert.py").write_text(INERT_TEST)

    found = run_pytest(tests, "--fixtures", extra_path=site)
    assert "caliper_pipeline [session scope]" in found.stdout, found.stdout + found.stderr
    passed = run_pytest(tests, extra_path=site)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    disabled = run_pytest(tests, "--fixtures", "-p", "no:caliper_pipeline.testing", extra_path=site)
    assert "caliper_pipeline [session scope]" not in disabled.stdout, disabled.stdout


def test_the_plugin_option_loads_it_without_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "test_inert.py").write_text(INERT_TEST)
    result = run_pytest(tmp_path, "-p", "caliper_pipeline.testing")
    assert result.returncode == 0, result.stdout + result.stderr


class ProcessingJobs(http.server.BaseHTTPRequestHandler):
    """A gateway whose every job is still processing."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "processing", "counts": {"accepted": 1, "processing": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_wait_for_job_raises_with_the_last_status_when_the_job_is_still_processing() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProcessingJobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        pipeline = SimpleNamespace(gateway_url=f"http://127.0.0.1:{server.server_address[1]}")
        api = CaliperPipeline(pipeline)  # type: ignore[arg-type]
        with pytest.raises(PipelineJobTimeoutError) as raised:
            api.wait_for_job("a-token", "job-1", timeout=0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.job_id == "job-1"
    assert raised.value.status == {"status": "processing", "counts": {"accepted": 1, "processing": 1}}
