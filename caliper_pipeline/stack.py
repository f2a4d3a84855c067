"""``caliper-pipeline up``: the whole pipeline on one machine.

Starts the local Apache Kafka broker (unless ``CALIPER_KAFKA__BOOTSTRAP_SERVERS`` names one), creates the topics,
then the sink (which owns the embedded ClickHouse), a streams worker and the gateway as child processes; prints
the gateway URL and a demo client's credentials; stops everything on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from caliper_pipeline.admin import local_admin_token, local_privacy_keys
from caliper_pipeline.local_kafka import KafkaDistribution, LocalKafkaBroker
from caliper_pipeline.processes import ChildProcess
from caliper_pipeline.settings import Settings
from caliper_pipeline.topics import ensure_topics
from gateway.clients import ClientRegistry

DEMO_TENANT = "demo-school"
DEMO_CLIENT_ID = "demo-client"


def demo_credentials(settings: Settings) -> tuple[str, str]:
    """The local demo client (created on first run; its secret kept in ``var/`` for the local stack only)."""
    path = settings.local.home / "demo-client.json"
    registry = ClientRegistry(settings.gateway.clients_file)
    client = registry.get(DEMO_CLIENT_ID)
    if path.exists() and client is not None and not client.revoked:
        saved = json.loads(path.read_text())
        return saved["client_id"], saved["client_secret"]
    client, secret = registry.add(DEMO_TENANT, client_id=DEMO_CLIENT_ID)
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


def run_stack(settings: Settings, *, demo: bool, exit_after_demo: bool) -> int:
    started = time.monotonic()
    home = settings.local.home
    home.mkdir(parents=True, exist_ok=True)
    log_dir = home / "logs"
    broker: LocalKafkaBroker | None = None
    kafka = settings.kafka
    if not kafka.bootstrap_servers:
        distribution = KafkaDistribution(settings.local.kafka_version, settings.local.cache_dir)
        broker = LocalKafkaBroker(distribution, settings.local.kafka_data_dir, heap=settings.local.kafka_heap)
        kafka = kafka.model_copy(update={"bootstrap_servers": broker.start()})
    children: list[ChildProcess] = []
    try:
        asyncio.run(ensure_topics(kafka))
        client_id, secret = demo_credentials(settings)
        env = {**os.environ, "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "PYTHONUNBUFFERED": "1",
               "CALIPER_SINK__ADMIN_TOKEN": local_admin_token(settings),
               **local_privacy_keys(settings)}
        children = [ChildProcess.pipeline_command(name, [name], env, log_dir)
                    for name in ("sink", "streams", "gateway")]
        for child in children:
            child.start()
        gateway_url = settings.gateway.base_url
        wait_http_ok(f"{settings.sink.base_url()}/readyz", 180, children)
        wait_http_ok(f"{gateway_url}/readyz", 120, children)
        print(_banner(settings, kafka.bootstrap_servers, client_id, secret, broker is not None,
                      time.monotonic() - started, children), flush=True)
        if demo:
            from caliper_pipeline.demo import run_demo

            ok = run_demo(settings, gateway_url, client_id, secret)
            if exit_after_demo:
                return 0 if ok else 1
        elif exit_after_demo:
            return 0
        return _wait_for_stop(children)
    finally:
        for child in reversed(children):
            child.stop()
        if broker is not None:
            broker.stop()
        took = ", ".join(f"{c.name} {c.stop_seconds:.1f}s" for c in reversed(children) if c.stop_seconds is not None)
        print(f"stopped: {took}" + (", kafka" if broker else ""), flush=True)


def _wait_for_stop(children: list[ChildProcess]) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            for child in children:
                if not child.alive():
                    print(f"{child.name} exited; stopping the stack. Its log ({child.log_path}):\n{child.tail()}")
                    return 1
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping", flush=True)
    return 0


def _banner(settings: Settings, bootstrap: str, client_id: str, secret: str, local_kafka: bool,
            seconds: float, children: list[ChildProcess]) -> str:
    url = settings.gateway.base_url
    where = "embedded chDB at " + str(Path(settings.clickhouse.data_path).resolve()) if settings.clickhouse.embedded \
        else f"ClickHouse server {settings.clickhouse.host}:{settings.clickhouse.port}"
    kafka_note = f" (local Apache Kafka {settings.local.kafka_version})" if local_kafka else ""
    pids = ", ".join(f"{c.name} pid {c.pid}" for c in children)
    return (
        f"\ncaliper-pipeline is up in {seconds:.1f}s\n"
        f"  gateway      {url}   (POST /caliper/event, POST /hub/v1/events, GET /openapi.json)\n"
        f"  kafka        {bootstrap}{kafka_note}\n"
        f"  clickhouse   {where}; SQL: caliper-pipeline sql \"SELECT count() FROM learning.learning_facts\"\n"
        f"  processes    {pids}; logs in {settings.local.home / 'logs'}\n"
        f"  demo client  client_id={client_id} client_secret={secret}\n"
        f"  token        curl -s -d grant_type=client_credentials -d client_id={client_id} "
        f"-d client_secret={secret} {url}/oauth2/token\n"
        "Ctrl-C stops everything.\n"
    )
