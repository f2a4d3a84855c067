"""The pipeline's processes on one machine, for the benchmarks, the soak and the fault-injection tests.

``LocalPipeline`` starts (optionally) a local broker, then the sink, a streams worker and the gateway as child
processes of ``caliper_pipeline.cli`` in a work directory, on free ports and with topics of their own; it can
kill, stop and restart any of them. Its secrets (the gateway's signing secret, the sink's analyst and admin
tokens, the privacy keys) are new for each run and given to each process in its environment. Results are read
back through the sink's ``POST /sql`` (``sink_client.SinkClient`` with the run's analyst token).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

from caliper_pipeline.local_kafka import REPO_ROOT, KafkaDistribution, LocalKafkaBroker, free_port
from caliper_pipeline.local_secrets import StackSecrets
from caliper_pipeline.processes import ChildProcess
from caliper_pipeline.settings import LocalStackSettings, Settings
from caliper_pipeline.sink_client import SinkClient
from caliper_pipeline.stack import wait_http_ok
from caliper_pipeline.topics import ensure_topics
from gateway.clients import ClientRegistry
from schemas.kafka import KafkaSettings
from sinks.tables import FACT_TABLE


class LocalPipeline:
    """The pipeline's processes on one machine, in ``work_dir``: broker (optional), sink, streams, gateway.

    Every process is a child (``ChildProcess``) of this one, in its own session; ``kill``/``restart``/``stop``
    are for fault injection. ``kafka_bootstrap`` uses an existing broker (else a local one in ``work_dir``).
    """

    PROCESSES = ("sink", "streams", "gateway")

    def __init__(self, settings: Settings, work_dir: Path, *, kafka_bootstrap: str | None = None,
                 topic_prefix: str | None = None, partitions: int | None = None,
                 extra_env: dict[str, str] | None = None, broker: LocalKafkaBroker | None = None) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.kafka_bootstrap = kafka_bootstrap or settings.kafka.bootstrap_servers or None
        self.run_id = secrets.token_hex(4)
        self.topic_prefix = topic_prefix or f"e2e{self.run_id}."
        self.partitions = partitions or settings.kafka.partitions
        self.extra_env = extra_env or {}
        self.broker: LocalKafkaBroker | None = broker  # a broker this pipeline starts, kills and stops
        self.children: dict[str, ChildProcess] = {}
        self.gateway_port = free_port()
        self.sink_port = free_port()
        self.clients_file = work_dir / "clients.json"
        # new for this run (configured ones kept): the gateway refuses the development signing secret, the sink
        # answers /sql only with the analyst token, the streams worker refuses to run without its privacy keys
        self.secrets = StackSecrets.generate(settings)
        self.client_id = ""
        self.client_secret = ""
        self.database = settings.clickhouse.database

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def sink_url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    @property
    def admin_token(self) -> str:
        return self.secrets.admin_token

    @property
    def sink_client(self) -> SinkClient:
        return SinkClient(self.sink_url, self.secrets.analyst_token)

    @property
    def kafka(self) -> KafkaSettings:
        return self.settings.kafka.model_copy(update={
            "bootstrap_servers": self.kafka_bootstrap or "", "topic_prefix": self.topic_prefix,
            "partitions": self.partitions})

    def env(self, process: str | None = None) -> dict[str, str]:
        """The environment of the pipeline's processes; with ``process``, including that one's secrets."""
        python_path = os.environ.get("PYTHONPATH", "")
        return {
            **os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{python_path}" if python_path else str(REPO_ROOT),
            "CALIPER_LOCAL__HOME": str(self.work_dir),
            "CALIPER_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap or "",
            "CALIPER_KAFKA__TOPIC_PREFIX": self.topic_prefix,
            "CALIPER_KAFKA__PARTITIONS": str(self.partitions),
            "CALIPER_GATEWAY__PORT": str(self.gateway_port),
            "CALIPER_GATEWAY__CLIENTS_FILE": str(self.clients_file),
            "CALIPER_SINK__HTTP_PORT": str(self.sink_port),
            "CALIPER_SINK__GROUP_ID": f"sink-{self.run_id}",
            "CALIPER_STREAMS__APP_ID": f"streams-{self.run_id}",
            "CALIPER_CLICKHOUSE__DATA_PATH": str(self.work_dir / "chdb"),
            **(LocalStackSettings(home=self.work_dir).process_env(process) if process else {}),
            **(self.secrets.env_for(process) if process else {}),
            **self.extra_env,
        }

    def start_broker(self) -> str:
        if self.broker is None:
            distribution = KafkaDistribution(self.settings.local.kafka_version, self.settings.local.cache_dir)
            self.broker = LocalKafkaBroker(distribution, self.work_dir / "kafka", heap=self.settings.local.kafka_heap)
        elif self.broker.ports is not None:
            # a restart must keep the ports the other processes know; LocalKafkaBroker.start() alone re-checks
            # them with a bind() that fails while connections of the killed broker sit in TIME_WAIT, and then
            # moves to new ports, stranding every client
            old = self.broker
            self.broker = LocalKafkaBroker(old.distribution, old.data_dir, host=old.host, heap=old.heap,
                                           ports=old.ports)
        self.kafka_bootstrap = self.broker.start()
        return self.kafka_bootstrap

    def start(self, ready_timeout: float = 180.0) -> LocalPipeline:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not self.kafka_bootstrap or self.broker is not None:
            self.start_broker()
        asyncio.run(ensure_topics(self.kafka))
        client, self.client_secret = ClientRegistry(self.clients_file).add(
            f"bench-{self.run_id}", client_id=f"bench-{self.run_id}", rate_limit_per_second=1e9)
        self.client_id = client.client_id
        for name in self.PROCESSES:
            self.start_process(name)
        self.wait_ready("sink", ready_timeout)
        self.wait_ready("gateway", ready_timeout)
        return self

    def start_process(self, name: str) -> ChildProcess:
        child = ChildProcess.pipeline_command(name, [name], self.env(name), self.work_dir / "logs")
        child.start()
        self.children[name] = child
        return child

    def kill(self, name: str) -> None:
        """SIGKILL one process (``broker`` included)."""
        if name == "broker":
            assert self.broker is not None
            self.broker.kill()
        else:
            self.children[name].kill()

    def stop_process(self, name: str) -> None:
        """SIGTERM one process (SIGKILL after a timeout)."""
        if name == "broker":
            assert self.broker is not None
            self.broker.stop()
        else:
            self.children[name].stop()

    def restart(self, name: str, *, wait: bool = True, timeout: float = 180.0) -> None:
        if name == "broker":
            self.start_broker()
            return
        self.start_process(name)
        if wait and name in ("sink", "gateway"):
            self.wait_ready(name, timeout)

    def wait_ready(self, name: str, timeout: float = 180.0) -> None:
        url = {"sink": self.sink_url, "gateway": self.gateway_url}[name] + "/readyz"
        wait_http_ok(url, timeout, list(self.children.values()))

    def pids(self) -> dict[str, int]:
        pids = {name: child.pid for name, child in self.children.items() if child.alive() and child.pid}
        if self.broker is not None and self.broker.process is not None and self.broker.process.poll() is None:
            pids["kafka"] = self.broker.process.pid
        return {k: v for k, v in pids.items() if v}

    def stop(self) -> None:
        for name in reversed(self.PROCESSES):
            child = self.children.get(name)
            if child is not None:
                child.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------- reading back

    def sql(self, statement: str, timeout: float = 120.0) -> list[dict[str, Any]]:
        return SinkClient(self.sink_url, self.secrets.analyst_token, timeout=timeout).rows(statement)

    def counts_by_tenant(self) -> dict[str, dict[str, int]]:
        return counts_by_tenant(self.sink_client, self.database)

    def topic_message_count(self, topic: str) -> int:
        return asyncio.run(topic_message_count(self.kafka, topic))


def counts_by_tenant(client: SinkClient, database: str = "learning") -> dict[str, dict[str, int]]:
    """Per tenant: distinct event ids, distinct facts, and rows under FINAL (equal to facts when no duplicate)."""
    rows = client.rows(f"SELECT tenant, uniqExact(event_id) AS events, uniqExact(fact_id) AS facts, "
                       f"count() AS rows FROM {database}.{FACT_TABLE} FINAL GROUP BY tenant")
    return {row["tenant"]: {"events": int(row["events"]), "facts": int(row["facts"]), "rows": int(row["rows"])}
            for row in rows}


async def topic_message_count(kafka: KafkaSettings, topic: str) -> int:
    """Messages currently on a topic (end offsets minus beginning offsets over its partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return 0
        ends = await consumer.end_offsets(assigned)
        begins = await consumer.beginning_offsets(assigned)
        return sum(ends[tp] - begins[tp] for tp in assigned)
    finally:
        await consumer.stop()
