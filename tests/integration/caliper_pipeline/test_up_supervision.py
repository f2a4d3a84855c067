"""``caliper-pipeline up`` as an orchestrator: its secrets, its restart policy, and nothing left after it dies.

One ``up`` (its own local broker, home and ports) serves the tests of this module, in order: the secrets it
generated and hands to its processes, a child SIGKILLed and restarted, then ``up`` itself
SIGKILLed: no process it started may survive it, nor hold its ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from caliper_pipeline.local.broker import REPO_ROOT, KafkaDistribution, free_port
from caliper_pipeline.local.processes import die_with_parent
from gateway.settings import GatewaySettings

pytestmark = [pytest.mark.integration, pytest.mark.stack]


@dataclass
class RunningUp:
    process: subprocess.Popen[bytes]
    home: Path
    output: Path
    env: dict[str, str]
    gateway_port: int
    sink_port: int

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        return {k: int(v) for k, v in json.loads((self.home / "processes.json").read_text()).items()}


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a dead child its new parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (children, their children, ...), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid for pid in found if alive(pid)}


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def port_listening(port: int) -> bool:
    """Whether a socket LISTENs on the port, read from the kernel's socket tables (/proc/net/tcp, tcp6: state 0A).
    Not a bind() probe: bind also fails while another process's outgoing connection happens to use that port as its
    ephemeral source port, which a busy machine does; and not a connect(): to a port of the ephemeral range with
    nothing listening, the kernel may pick that same port as the source and connect the socket to itself."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_for(condition: object, timeout: float, what: str, up: RunningUp | None = None) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f}s: {what}" + (f"\nup's output:\n{up.text()[-3000:]}" if up else ""))


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, kafka_distribution: KafkaDistribution) -> Iterator[RunningUp]:
    home = tmp_path_factory.mktemp("up-home")
    gateway_port, sink_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIPER_")} | {
        "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
        "CALIPER_LOCAL__HOME": str(home), "CALIPER_LOCAL__CACHE_DIR": str(kafka_distribution.cache_dir),
        "CALIPER_LOCAL__KAFKA_HEAP": "384m", "CALIPER_KAFKA__PARTITIONS": "2",
        "CALIPER_GATEWAY__PORT": str(gateway_port), "CALIPER_SINK__HTTP_PORT": str(sink_port),
    }
    output = home / "up-output.log"
    with output.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "caliper_pipeline.cli", "up"], env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, cwd=home, preexec_fn=die_with_parent())
    running = RunningUp(process, home, output, env, gateway_port, sink_port)
    try:
        wait_for(lambda: "caliper-pipeline is up" in running.text() or process.poll() is not None, 150,
                 "up started", running)
        assert process.poll() is None, f"up exited with {process.returncode}:\n{running.text()[-3000:]}"
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_up_generates_its_secrets_and_gives_them_to_its_processes(up: RunningUp) -> None:
    files = {name: up.home / name for name in ("jwt-secret", "sink-analyst-token", "sink-admin-token")}
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600, path
    demo = json.loads((up.home / "demo-client.json").read_text())
    form = urllib.parse.urlencode({"grant_type": "client_credentials", **demo}).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{up.gateway_port}/oauth2/token", data=form, timeout=10) as answer:
        token = json.loads(answer.read())["access_token"]
    development_secret = GatewaySettings().jwt_secret.get_secret_value()
    with pytest.raises(jwt.InvalidSignatureError):  # anyone could sign a token with the secret in the source
        jwt.decode(token, development_secret, algorithms=["HS256"], options={"verify_aud": False})
    jwt.decode(token, files["jwt-secret"].read_text(), algorithms=["HS256"], options={"verify_aud": False})
    analyst_token = files["sink-analyst-token"].read_text()
    assert f"token={analyst_token}" in up.text(), "the banner shows the analyst token"
    # `caliper-pipeline sql` finds the analyst token under the home by itself
    result = subprocess.run([sys.executable, "-m", "caliper_pipeline.cli", "sql", "SELECT 40 + 2 AS answer",
                             "--format", "jsoneachrow"], env=up.env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"answer": 42}


def test_a_killed_process_is_restarted(up: RunningUp) -> None:
    before = up.pids()
    os.kill(before["gateway"], signal.SIGKILL)
    wait_for(lambda: up.pids()["gateway"] != before["gateway"] and alive(up.pids()["gateway"]), 30,
             "the gateway restarted", up)
    wait_for(lambda: http_ok(f"http://127.0.0.1:{up.gateway_port}/readyz"), 60, "the new gateway ready", up)
    assert f"gateway (pid {before['gateway']}) exited with code -9" in up.text()
    after = up.pids()
    assert {k: v for k, v in after.items() if k != "gateway"} == {k: v for k, v in before.items() if k != "gateway"}
    assert up.process.poll() is None, "a crashed child no longer stops the stack"


def test_nothing_outlives_up_killed_with_sigkill(up: RunningUp) -> None:
    started = set(up.pids().values()) - {up.process.pid}
    everything = descendants(up.process.pid) | started
    assert len(started) == 4 and started <= everything, (started, everything)  # kafka, sink, streams, gateway
    up.process.kill()
    up.process.wait()
    wait_for(lambda: not any(alive(pid) for pid in everything), 20,
             f"every process of the stack gone; alive: {[p for p in everything if alive(p)]}")
    for port in (up.gateway_port, up.sink_port):
        # the kernel closes a killed process's listening socket as the process exits: an instant after the last
        # process is reaped, the socket table may still show it (seen once, `ss` a moment later showed nothing)
        wait_for(lambda port=port: not port_listening(port), 5, f"port {port} no longer listening")
