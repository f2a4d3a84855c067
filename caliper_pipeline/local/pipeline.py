"""The pipeline's processes on one machine, for the benchmarks, the soak and the fault-injection tests.

``LocalPipeline`` starts (optionally) a local broker or a local cluster of brokers, then the sink, streams workers
and gateways as child processes of ``caliper_pipeline.cli`` in a work directory, on free ports and with topics of
their own; it can kill, stop and restart any of them. Its secrets (the gateway's signing secret, the sink's analyst
and admin tokens, the privacy keys) are new for each run and given to each process in its environment. Results
are read back through the sink's ``POST /sql`` (``sink_client.SinkClient`` with the run's analyst token).

Processes are named by their role, numbered from the second on: ``sink``, ``streams``, ``streams-2``, ...,
``gateway``, ``gateway-2``, ...; the Kafka nodes of a local cluster are ``kafka-1``, ``kafka-2``, ... (a single
local broker is ``broker``). The streams workers share one consumer group; the gateways share the clients file
and signing secret, so a token from one is valid at every other.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path
from typing import Any

from caliper_pipeline.client.sink_client import SinkClient
from caliper_pipeline.local.broker import REPO_ROOT, LocalKafkaBroker, free_port
from caliper_pipeline.local.cluster import LocalKafkaCluster
from caliper_pipeline.local.kafka_choice import ChosenKafka, choose_kafka
from caliper_pipeline.local.processes import ChildProcess
from caliper_pipeline.local.stack import wait_http_ok
from caliper_pipeline.local.stack_secrets import StackSecrets
from caliper_pipeline.ops.topics import ensure_topics
from caliper_pipeline.settings import LocalStackSettings, Settings
from gateway.clients import ClientRegistry
from schemas.kafka import KafkaSettings
from sinks.tables import FACT_TABLE

KAFKA_NODE = re.compile(r"kafka-([0-9]+)")


def numbered(role: str, count: int) -> list[str]:
    """``role``, ``role-2``, ... ``role-<count>``."""
    return [role if index == 1 else f"{role}-{index}" for index in range(1, count + 1)]


def role_of(name: str) -> str:
    return name.split("-", 1)[0]


class LocalPipeline:
    """The pipeline's processes on one machine, in ``work_dir``: Kafka (optional), sink, streams, gateways.

    Every process is a child (``ChildProcess``) of this one, in its own session; ``kill``/``restart``/``stop``
    are for fault injection. ``kafka_bootstrap`` uses an existing broker (else a local one in ``work_dir``:
    ``brokers`` nodes, default ``CALIPER_LOCAL__KAFKA_BROKERS``; or the given ``broker`` / ``cluster``).
    """

    def __init__(self, settings: Settings, work_dir: Path, *, kafka_bootstrap: str | None = None,
                 topic_prefix: str | None = None, partitions: int | None = None,
                 extra_env: dict[str, str] | None = None, broker: LocalKafkaBroker | None = None,
                 cluster: LocalKafkaCluster | None = None, brokers: int | None = None, gateways: int = 1,
                 streams_workers: int = 1) -> None:
        self.settings = settings
        self.work_dir = work_dir
        if broker is not None or cluster is not None:  # given: this pipeline starts, kills and stops it
            self.chosen = ChosenKafka(broker=broker, cluster=cluster)
        else:
            self.chosen = choose_kafka(settings.local, bootstrap=kafka_bootstrap or settings.kafka.bootstrap_servers,
                                       data_dir=work_dir / "kafka", brokers=brokers)
        self.kafka_bootstrap = self.chosen.configured or None  # a local Kafka's once started
        self.run_id = secrets.token_hex(4)
        self.topic_prefix = topic_prefix or f"e2e{self.run_id}."
        self.partitions = partitions or settings.kafka.partitions
        self.extra_env = extra_env or {}
        self.children: dict[str, ChildProcess] = {}
        self.process_names = ["sink", *numbered("streams", streams_workers), *numbered("gateway", gateways)]
        self.gateway_ports = {name: free_port() for name in self.process_names if role_of(name) == "gateway"}
        self.sink_port = free_port()
        self.clients_file = work_dir / "clients.json"
        # new for this run (configured ones kept): the gateway refuses the development signing secret, the sink
        # answers /sql only with the analyst token, the streams worker refuses to run without its privacy keys
        self.secrets = StackSecrets.generate(settings)
        self.client_id = ""
        self.client_secret = ""
        self.database = settings.clickhouse.database

    @property
    def broker(self) -> LocalKafkaBroker | None:
        """The local broker this pipeline starts, kills and stops (None on a cluster or a configured Kafka)."""
        return self.chosen.broker

    @property
    def cluster(self) -> LocalKafkaCluster | None:
        """The local cluster this pipeline starts, kills and stops (None on one broker or a configured Kafka)."""
        return self.chosen.cluster

    @property
    def brokers(self) -> int:
        """Nodes of the local Kafka (0 on a configured one)."""
        return self.chosen.size

    @property
    def gateway_port(self) -> int:
        return self.gateway_ports["gateway"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.gateway_ports.values()]

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
    def replication_factor(self) -> int:
        """A local Kafka's (3 at most); a configured cluster's as configured."""
        return self.chosen.replication_factor or self.settings.kafka.replication_factor

    @property
    def kafka(self) -> KafkaSettings:
        return self.settings.kafka.model_copy(update={
            "bootstrap_servers": self.kafka_bootstrap or "", "topic_prefix": self.topic_prefix,
            "partitions": self.partitions, "replication_factor": self.replication_factor})

    @property
    def streams_group(self) -> str:
        """The consumer group of the streams workers (faust's app id)."""
        return f"streams-{self.run_id}"

    def env(self, process: str | None = None) -> dict[str, str]:
        """The environment of the pipeline's processes; with ``process``, including that one's secrets."""
        python_path = os.environ.get("PYTHONPATH", "")
        role = role_of(process) if process else None
        own: dict[str, str] = {}
        if role == "gateway":
            assert process is not None
            own["CALIPER_GATEWAY__PORT"] = str(self.gateway_ports[process])
        if role == "streams":
            assert process is not None
            # each worker its own faust data directory (they would share one: same app id, same home)
            own.update(LocalStackSettings(home=self.work_dir / process if process != "streams" else self.work_dir)
                       .process_env("streams"))
        return {
            **os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{python_path}" if python_path else str(REPO_ROOT),
            "CALIPER_LOCAL__HOME": str(self.work_dir),
            "CALIPER_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap or "",
            "CALIPER_KAFKA__TOPIC_PREFIX": self.topic_prefix,
            "CALIPER_KAFKA__PARTITIONS": str(self.partitions),
            "CALIPER_KAFKA__REPLICATION_FACTOR": str(self.replication_factor),
            "CALIPER_GATEWAY__PORT": str(self.gateway_port),
            "CALIPER_GATEWAY__CLIENTS_FILE": str(self.clients_file),
            "CALIPER_SINK__HTTP_PORT": str(self.sink_port),
            "CALIPER_SINK__GROUP_ID": f"sink-{self.run_id}",
            "CALIPER_STREAMS__APP_ID": self.streams_group,
            "CALIPER_CLICKHOUSE__DATA_PATH": str(self.work_dir / "chdb"),
            **own,
            **(self.secrets.env_for(role) if role else {}),
            **self.extra_env,
        }

    def start_broker(self) -> str:
        """Start the local Kafka (a broker or a cluster); again on the same ports when it ran before."""
        self.kafka_bootstrap = self.chosen.restart()
        return self.kafka_bootstrap

    def start(self, ready_timeout: float = 180.0) -> LocalPipeline:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.chosen.local:
            self.start_broker()
        asyncio.run(ensure_topics(self.kafka))
        client, self.client_secret = ClientRegistry(self.clients_file).add(
            f"bench-{self.run_id}", client_id=f"bench-{self.run_id}", rate_limit_per_second=1e9)
        self.client_id = client.client_id
        for name in self.process_names:
            self.start_process(name)
        for name in self.process_names:
            if role_of(name) in ("sink", "gateway"):
                self.wait_ready(name, ready_timeout)
        return self

    def start_process(self, name: str) -> ChildProcess:
        child = ChildProcess.pipeline_command(name, [role_of(name)], self.env(name), self.work_dir / "logs")
        child.start()
        self.children[name] = child
        return child

    def _node(self, name: str) -> int | None:
        """The cluster node a name like ``kafka-2`` stands for."""
        match = KAFKA_NODE.fullmatch(name)
        if match is None:
            return None
        if self.cluster is None:
            raise KeyError(f"{name}: this pipeline runs no local cluster")
        return int(match.group(1))

    def kill(self, name: str) -> None:
        """SIGKILL one process (``broker`` and ``kafka-<n>`` included)."""
        if name == "broker":
            assert self.broker is not None
            self.broker.kill()
        elif (node := self._node(name)) is not None:
            assert self.cluster is not None
            self.cluster.kill(node)
        else:
            self.children[name].kill()

    def stop_process(self, name: str) -> None:
        """SIGTERM one process (SIGKILL after a timeout)."""
        if name == "broker":
            assert self.broker is not None
            self.broker.stop()
        elif (node := self._node(name)) is not None:
            assert self.cluster is not None
            self.cluster.stop_node(node)
        else:
            self.children[name].stop()

    def restart(self, name: str, *, wait: bool = True, timeout: float = 180.0) -> None:
        if name == "broker":
            self.start_broker()
            return
        if (node := self._node(name)) is not None:
            assert self.cluster is not None
            self.cluster.restart_node(node, timeout=timeout)
            return
        self.start_process(name)
        if wait and role_of(name) in ("sink", "gateway"):
            self.wait_ready(name, timeout)

    def wait_ready(self, name: str, timeout: float = 180.0) -> None:
        base = self.sink_url if name == "sink" else f"http://127.0.0.1:{self.gateway_ports[name]}"
        wait_http_ok(f"{base}/readyz", timeout, list(self.children.values()))

    def pids(self) -> dict[str, int]:
        pids = {name: child.pid for name, child in self.children.items() if child.alive() and child.pid}
        if self.broker is not None and self.broker.process is not None and self.broker.process.poll() is None:
            pids["kafka"] = self.broker.process.pid
        if self.cluster is not None:
            pids.update({f"kafka-{node}": pid for node, pid in self.cluster.pids().items()})
        return {k: v for k, v in pids.items() if v}

    def stop(self) -> None:
        for name in reversed(self.process_names):
            child = self.children.get(name)
            if child is not None:
                child.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()

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
