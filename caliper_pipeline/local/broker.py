"""The real Apache Kafka broker, run as a local process: jars from Maven Central, KRaft.

``KafkaDistribution`` fetches the broker's jars once into a cache directory (``mvn dependency:copy-dependencies``
on ``caliper_pipeline/kafka/pom.xml``, package data shipped in the wheel). ``LocalKafkaBroker`` formats a data
directory, starts ``kafka.Kafka`` as broker and controller on loopback ports, waits until it answers metadata
requests, and stops it with SIGTERM (then SIGKILL after a timeout) so no JVM outlives it; the kernel SIGKILLs it if
the process that started it dies first (``processes.die_with_parent``). Alone it is a one-voter quorum with
replication factor 1; given a ``ClusterLayout`` it is one node of a cluster (``local.cluster.LocalKafkaCluster``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from caliper_pipeline.local.processes import die_with_parent
from caliper_pipeline.ops.topics import min_insync_replicas
from schemas.errors import PipelineError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_FILES = Path(__file__).resolve().parents[1] / "kafka"  # pom.xml (the jars to fetch), log4j2.xml: package data


class LocalKafkaError(PipelineError):
    """The local broker could not be provisioned, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on the port; connections of a stopped broker left in TIME_WAIT don't count
    (the JVM binds with SO_REUSEADDR, and so does this probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class KafkaDistribution:
    """Apache Kafka's jars at one version, resolved from Maven Central into ``cache_dir``."""

    version: str
    cache_dir: Path

    @property
    def libs(self) -> Path:
        return self.cache_dir.resolve() / f"kafka-{self.version}" / "libs"

    def is_installed(self) -> bool:
        return (self.libs / ".complete").exists()

    def install(self) -> Path:
        if self.is_installed():
            return self.libs
        if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", self.version):
            raise LocalKafkaError(f"not a Kafka version: {self.version!r}")
        if shutil.which("mvn") is None:
            raise LocalKafkaError("Maven (mvn) is needed to fetch Apache Kafka from Maven Central")
        self.libs.mkdir(parents=True, exist_ok=True)
        log.info("fetching Apache Kafka %s from Maven Central into %s", self.version, self.libs)
        command = [
            "mvn", "-q", "-B", "-f", str(KAFKA_FILES / "pom.xml"), "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}", f"-Dkafka.version={self.version}", "-DincludeScope=runtime",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalKafkaError(f"mvn failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
        if not any(self.libs.glob(f"kafka_2.13-{self.version}.jar")):
            raise LocalKafkaError(f"mvn finished but {self.libs} has no kafka_2.13-{self.version}.jar")
        (self.libs / ".complete").write_text(self.version)
        return self.libs

    def classpath(self) -> str:
        return str(self.libs / "*")


@dataclass(frozen=True)
class BrokerPorts:
    broker: int
    controller: int


@dataclass(frozen=True)
class ClusterLayout:
    """What every node of one local cluster is configured with: the cluster id its storage is formatted with,
    the controller quorum's voters (``id@host:port,...``) and the replication of the cluster's topics (the
    pipeline's, the transaction state log, the consumer offsets)."""

    cluster_id: str
    voters: str
    replication_factor: int

    @property
    def min_insync_replicas(self) -> int:
        return min_insync_replicas(self.replication_factor)


# fewer threads than Kafka's defaults (3 network, 8 I/O, 10 background) for each node of a local cluster: several
# JVMs share this machine's cores, and at its load a handful of threads per node keeps up
CLUSTER_NODE_THREADS = {"num.network.threads": "2", "num.io.threads": "2", "background.threads": "2",
                        "num.recovery.threads.per.data.dir": "1"}


class LocalKafkaBroker:
    """One KRaft node (broker + controller) on loopback, its data in ``data_dir``: a cluster of its own, or node
    ``node_id`` of the cluster ``layout`` describes."""

    def __init__(self, distribution: KafkaDistribution, data_dir: Path, *, host: str = "127.0.0.1",
                 heap: str = "768m", ports: BrokerPorts | None = None, node_id: int = 1,
                 layout: ClusterLayout | None = None) -> None:
        self.distribution = distribution
        self.data_dir = data_dir
        self.host = host
        self.heap = heap
        self.node_id = node_id
        self.layout = layout
        self._requested_ports = ports
        self.ports: BrokerPorts | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.ports is None:
            raise LocalKafkaError("the broker is not started")
        return f"{self.host}:{self.ports.broker}"

    def _choose_ports(self) -> BrokerPorts:
        """Reuse the ports of the last run of this data directory when free, else take free ones."""
        if self._requested_ports is not None:
            return self._requested_ports
        remembered = self.data_dir / "ports.json"
        if remembered.exists():
            saved = BrokerPorts(**json.loads(remembered.read_text()))
            if port_is_free(saved.broker, self.host) and port_is_free(saved.controller, self.host):
                return saved
        ports = BrokerPorts(broker=free_port(self.host), controller=free_port(self.host))
        remembered.write_text(json.dumps({"broker": ports.broker, "controller": ports.controller}))
        return ports

    def _write_config(self, ports: BrokerPorts) -> Path:
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in self.server_properties(ports).items()))
        return config

    def server_properties(self, ports: BrokerPorts) -> dict[str, str]:
        """The node's ``server.properties`` (the replication settings are those the deployment files must use:
        ``tests/unit/project/test_deploy_files.py`` compares them)."""
        log_dir = self.data_dir / "log"
        voters = self.layout.voters if self.layout else f"{self.node_id}@{self.host}:{ports.controller}"
        replicas = str(self.layout.replication_factor if self.layout else 1)
        min_isr = str(self.layout.min_insync_replicas if self.layout else 1)
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{ports.broker},CONTROLLER://{self.host}:{ports.controller}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{ports.broker}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(log_dir),
            "num.partitions": "6",
            # the pipeline's topics, the consumer offsets (min.insync.replicas applies to it) and the transaction
            # state log are all replicated alike: with 3 nodes a write needs 2 of them, so one may fail
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "unclean.leader.election.enable": "false",
            **(CLUSTER_NODE_THREADS if self.layout else {}),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        return properties

    def _java(self, *arguments: str, pre_touch: bool = False) -> list[str]:
        """The JVM's command; ``pre_touch`` (the broker, a long-running process) commits its whole fixed heap at
        start, so its resident memory is its bound from the first minute instead of rising for as long as G1
        takes to touch every page of the heap (which a soak cannot tell from a leak)."""
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        return [
            "java", f"-Xms{self.heap}", f"-Xmx{self.heap}", *(["-XX:+AlwaysPreTouch"] if pre_touch else []),
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={KAFKA_FILES / 'log4j2.xml'}",
            "-cp", self.distribution.classpath(), *arguments,
        ]

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        cluster_id = self.layout.cluster_id if self.layout else kraft_cluster_id()
        # --cluster-id=ID: an id starting with "-" (1 in 64) is not taken for an option
        result = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c",
                                           str(config)),
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting KRaft storage failed: {result.stdout}{result.stderr}")

    def start(self, timeout: float = 90.0) -> str:
        self.launch()
        self.wait_ready(timeout)
        return self.bootstrap_servers

    def launch(self) -> None:
        """Start the JVM without waiting for it (a cluster's nodes answer only once a quorum of them runs)."""
        self.distribution.install()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = self._choose_ports()
        config = self._write_config(self.ports)
        self._format_storage(config)
        with (self.data_dir / "logs" / "stderr.log").open("ab") as stderr_log:
            self.process = subprocess.Popen(self._java("kafka.Kafka", str(config), pre_touch=True),
                                            stdout=stderr_log, stderr=stderr_log, start_new_session=True,
                                            preexec_fn=die_with_parent())
        (self.data_dir / "broker.pid").write_text(str(self.process.pid))

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the node answers metadata requests; stop it and raise if it exits or does not answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process else None
                raise LocalKafkaError(f"the broker exited with {code}; see {self.data_dir}/logs")
            if asyncio.run(answers_metadata(self.bootstrap_servers)):
                log.info("Apache Kafka %s ready at %s", self.distribution.version, self.bootstrap_servers)
                return
            time.sleep(0.5)
        self.stop()
        raise LocalKafkaError(f"the broker did not answer within {timeout:.0f}s; see {self.data_dir}/logs")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self, timeout: float = 90.0) -> str:
        """Start again on the ports of the last start, which every client was given (``start`` alone would move
        to other ports when a probe finds them busy)."""
        self.stop()
        if self.ports is not None:
            self._requested_ports = self.ports
        return self.start(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the broker ignored SIGTERM for %.0fs; killing it", timeout)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL the broker (fault injection)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> LocalKafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kraft_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what StorageTool random-uuid does)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def answers_metadata(bootstrap_servers: str, timeout_ms: int = 3000) -> bool:
    """True when a broker at the address answers a metadata request."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms)
    quiet = logging.getLogger("aiokafka")
    previous_level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # connection refusals are expected while the broker boots
    try:
        await asyncio.wait_for(admin.start(), timeout_ms / 1000)
        await asyncio.wait_for(admin.describe_cluster(), timeout_ms / 1000)
        return True
    except Exception:  # any failure means "not (yet) answering"
        return False
    finally:
        await admin.close()
        quiet.setLevel(previous_level)
