"""``caliper-pipeline up``: the whole pipeline on one machine.

Starts the local Apache Kafka broker (unless ``CALIPER_KAFKA__BOOTSTRAP_SERVERS`` names one; a cluster of
``CALIPER_LOCAL__KAFKA_BROKERS`` nodes when that is more than 1, each node supervised on its own), creates the topics,
then the sink (which owns the embedded ClickHouse), a streams worker and the gateway as child processes; prints
the gateway URL and a demo client's credentials; stops everything on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from caliper_pipeline.local.broker import LocalKafkaBroker
from caliper_pipeline.local.kafka_choice import choose_kafka
from caliper_pipeline.local.processes import ChildProcess
from caliper_pipeline.local.stack_secrets import StackSecrets
from caliper_pipeline.local.supervisor import Supervised, Supervisor
from caliper_pipeline.ops.topics import ensure_topics, min_insync_replicas
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from schemas.kafka import KafkaSettings
from schemas.version import PIPELINE_VERSION

DEMO_TENANT = "demo-school"
DEMO_CLIENT_ID = "demo-client"
PIDS_FILE = "processes.json"  # under home: the pid of up and of every process it runs


def demo_credentials(settings: Settings) -> tuple[str, str]:
    """The local demo client (created on first run; its secret kept under home for the local stack only). A
    demo client whose secret file is gone gets a new secret; a revoked one stays revoked (an error says so)."""
    path = settings.local.home / "demo-client.json"
    registry = ClientRegistry(settings.gateway.clients_file)
    client = registry.get(DEMO_CLIENT_ID)
    if path.exists() and client is not None and not client.revoked:
        saved = json.loads(path.read_text())
        return saved["client_id"], saved["client_secret"]
    if client is None:
        client, secret = registry.add(DEMO_TENANT, client_id=DEMO_CLIENT_ID)
    else:
        client, secret = registry.rotate(DEMO_CLIENT_ID)
    path.write_text(json.dumps({"client_id": client.client_id, "client_secret": secret}))
    os.chmod(path, 0o600)
    return client.client_id, secret


def wait_http_ok(url: str, timeout: float, children: list[ChildProcess]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited early; its log ({child.log_path}):\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} was not ready within {timeout:.0f}s")


class StopRequested(BaseException):
    """SIGTERM or SIGHUP reached ``up``: stop the stack as Ctrl-C does (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on the way swallows it)."""


def _raise_stop(signum: int, frame: object) -> None:
    raise StopRequested(signal.Signals(signum).name)


class BrokerProcess:
    """The local broker (or one node of the local cluster) as a supervised process: restarted on the same ports,
    so every client finds it again."""

    def __init__(self, broker: LocalKafkaBroker, name: str = "kafka") -> None:
        self.name = name
        self.broker = broker
        self._last: subprocess.Popen[bytes] | None = broker.process

    def start(self) -> None:
        self.broker.restart()
        self._last = self.broker.process

    def alive(self) -> bool:
        return self._last is not None and self._last.poll() is None

    @property
    def pid(self) -> int | None:
        return self._last.pid if self._last else None

    @property
    def returncode(self) -> int | None:
        return self._last.poll() if self._last else None

    def tail(self, lines: int = 30) -> str:
        try:
            text = (self.broker.data_dir / "logs" / "server.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def run_stack(settings: Settings, *, demo: bool, exit_after_demo: bool) -> int:
    """Start the stack, keep its processes running (``Supervisor``) until Ctrl-C, SIGTERM or SIGHUP, then stop
    everything. Whatever ends ``up`` (SIGKILL included), the kernel ends every process it started
    (``processes.die_with_parent``)."""
    started = time.monotonic()
    previous = {signum: signal.signal(signum, _raise_stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    home = settings.local.home
    home.mkdir(parents=True, exist_ok=True)
    chosen = choose_kafka(settings.local, bootstrap=settings.kafka.bootstrap_servers)
    children: list[ChildProcess] = []
    supervisor: Supervisor | None = None
    try:
        chosen.start()
        kafka = chosen.settings_for(settings.kafka)
        asyncio.run(ensure_topics(kafka))
        client_id, secret = demo_credentials(settings)
        stack_secrets = StackSecrets.kept(settings)
        env = {**os.environ, "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
               "CALIPER_KAFKA__REPLICATION_FACTOR": str(kafka.replication_factor), "PYTHONUNBUFFERED": "1"}
        children = [ChildProcess.pipeline_command(
                        name, [name], {**env, **settings.local.process_env(name), **stack_secrets.env_for(name)},
                        settings.local.log_dir)
                    for name in ("sink", "streams", "gateway")]
        for child in children:
            child.start()
        processes: list[Supervised] = [
            *children, *(BrokerProcess(node, f"kafka-{node_id}" if chosen.cluster else "kafka")
                         for node_id, node in chosen.nodes.items())]
        supervisor = Supervisor(processes, pids_file=home / PIDS_FILE)
        gateway_url = settings.gateway.base_url
        # while starting, a process that exits is a configuration error: fail fast with its log
        wait_http_ok(f"{settings.sink.base_url()}/readyz", 180, children)
        wait_http_ok(f"{gateway_url}/readyz", 120, children)
        print(_banner(settings, kafka, client_id, secret, stack_secrets.analyst_token,
                      chosen.local, time.monotonic() - started, children), flush=True)
        if demo:
            from caliper_pipeline.client.sink_client import SinkClient
            from caliper_pipeline.senders.demo import run_demo

            sink = SinkClient(settings.sink.base_url(), stack_secrets.analyst_token)
            ok = run_demo(settings, gateway_url, client_id, secret, sink)
            if exit_after_demo:
                return 0 if ok else 1
        elif exit_after_demo:
            return 0
        while True:
            time.sleep(0.5)
            supervisor.check()
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping", flush=True)
        return 0
    except StopRequested as stop:
        print(f"{stop}: stopping", flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for child in reversed(children):
            child.stop()
        chosen.stop()
        if supervisor is not None:
            supervisor.remove_pids()
        took = ", ".join(f"{c.name} {c.stop_seconds:.1f}s" for c in reversed(children) if c.stop_seconds is not None)
        print(f"stopped: {took}" + (", kafka" if chosen.local else ""), flush=True)


def _banner(settings: Settings, kafka: KafkaSettings, client_id: str, secret: str, analyst_token: str,
            local_kafka: bool, seconds: float, children: list[ChildProcess]) -> str:
    url = settings.gateway.base_url
    sink_url = settings.sink.base_url()
    where = "embedded chDB at " + str(Path(settings.clickhouse.data_path).resolve()) if settings.clickhouse.embedded \
        else f"ClickHouse server {settings.clickhouse.host}:{settings.clickhouse.port}"
    nodes = f", {settings.local.kafka_brokers} nodes" if local_kafka and settings.local.kafka_brokers > 1 else ""
    kafka_note = f" (local Apache Kafka {settings.local.kafka_version}{nodes})" if local_kafka else ""
    if kafka.replication_factor > 1:
        kafka_note += (f", topics replicated {kafka.replication_factor}x, min.insync.replicas "
                       f"{min_insync_replicas(kafka.replication_factor)}")
    pids = ", ".join(f"{c.name} pid {c.pid}" for c in children)
    home = settings.local.home
    return (
        f"\ncaliper-pipeline is up in {seconds:.1f}s (version {PIPELINE_VERSION})\n"
        f"  gateway      {url}   (POST /caliper/event, POST /hub/v1/events, GET /openapi.json)\n"
        f"  kafka        {kafka.bootstrap_servers}{kafka_note}\n"
        f"  clickhouse   {where}\n"
        f"  sql          caliper-pipeline sql \"SELECT count() FROM learning.learning_facts\"   "
        f"(reads the analyst token from {home})\n"
        f"  analyst      token={analyst_token}\n"
        f"               curl -s -H 'Authorization: Bearer {analyst_token}' --data-binary 'SELECT 1' "
        f"'{sink_url}/sql?format=pretty'\n"
        f"  processes    {pids}; logs in {settings.local.log_dir}\n"
        f"  schools      caliper-pipeline analysts add --tenant T   (an analyst credential that reads T's rows only)\n"
        f"  secrets      kept in {home} (mode 0600): jwt-secret, sink-analyst-token, sink-admin-token, ...\n"
        f"  demo client  client_id={client_id} client_secret={secret}\n"
        f"  token        curl -s -d grant_type=client_credentials -d client_id={client_id} "
        f"-d client_secret={secret} {url}/oauth2/token\n"
        "Ctrl-C stops everything.\n"
    )
