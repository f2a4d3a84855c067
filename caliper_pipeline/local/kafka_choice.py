"""Which Kafka a process started on this machine uses: the cluster the settings name, or a local one it starts.

``choose_kafka`` is the one place that decides, for ``caliper-pipeline kafka`` and ``up``, ``LocalPipeline``, the
stage benches and the tests' session broker: bootstrap servers given -> that cluster, nothing to start or stop;
otherwise one local broker, or with more than one node (``CALIPER_LOCAL__KAFKA_BROKERS`` or ``brokers``) a local
cluster of them, with the heap and data directory of ``LocalStackSettings`` unless the caller names its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from caliper_pipeline.local.broker import KafkaDistribution, LocalKafkaBroker, LocalKafkaError
from caliper_pipeline.local.cluster import LocalKafkaCluster
from caliper_pipeline.settings import LocalStackSettings
from schemas.kafka import KafkaSettings


@dataclass
class ChosenKafka:
    """The cluster named by ``configured`` (started elsewhere), or the local ``broker`` or ``cluster`` this
    process starts, restarts on the same ports and stops."""

    configured: str = ""
    broker: LocalKafkaBroker | None = None
    cluster: LocalKafkaCluster | None = None

    @property
    def local(self) -> bool:
        """True when this process runs the Kafka (and so must start and stop it)."""
        return self.broker is not None or self.cluster is not None

    @property
    def distribution(self) -> KafkaDistribution | None:
        """The Apache Kafka the local nodes run (None for a configured cluster)."""
        local = self.cluster or self.broker
        return local.distribution if local is not None else None

    @property
    def nodes(self) -> dict[int, LocalKafkaBroker]:
        """The local nodes by node id: the one broker is node 1; none for a configured cluster."""
        if self.cluster is not None:
            return self.cluster.nodes
        return {1: self.broker} if self.broker is not None else {}

    @property
    def size(self) -> int:
        """Nodes of the local Kafka (0 for a configured cluster)."""
        if self.cluster is not None:
            return self.cluster.size
        return 1 if self.broker is not None else 0

    @property
    def replication_factor(self) -> int | None:
        """Of the topics on the local Kafka (3 at most); None for a configured cluster (as its settings say)."""
        if self.cluster is not None:
            return self.cluster.replication_factor
        return 1 if self.broker is not None else None

    @property
    def bootstrap_servers(self) -> str:
        if self.cluster is not None:
            return self.cluster.bootstrap_servers
        if self.broker is not None:
            return self.broker.bootstrap_servers
        return self.configured

    def start(self) -> str:
        """Start the local Kafka (if any); return the bootstrap servers."""
        if self.cluster is not None:
            return self.cluster.start()
        if self.broker is not None:
            return self.broker.start()
        return self.configured

    def restart(self) -> str:
        """Start the local Kafka again on the ports of its last start, which every client was given."""
        if self.broker is not None and self.broker.ports is not None:
            return self.broker.restart()
        if self.broker is None and self.cluster is None:
            raise LocalKafkaError(f"the Kafka at {self.configured} is not started by this process")
        return self.start()

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def settings_for(self, kafka: KafkaSettings) -> KafkaSettings:
        """``kafka`` on this Kafka: its bootstrap servers and, for a local one, the replication it allows."""
        update: dict[str, object] = {"bootstrap_servers": self.bootstrap_servers}
        if self.replication_factor is not None:
            update["replication_factor"] = self.replication_factor
        return kafka.model_copy(update=update)

    def __enter__(self) -> ChosenKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def choose_kafka(local: LocalStackSettings, *, bootstrap: str | None = None, data_dir: Path | None = None,
                 brokers: int | None = None, distribution: KafkaDistribution | None = None) -> ChosenKafka:
    """The configured cluster when ``bootstrap`` names one, else a local broker (``brokers`` 1) or cluster (more),
    not started yet. ``brokers``, ``data_dir`` and ``distribution`` default to ``local``'s."""
    if bootstrap:
        return ChosenKafka(configured=bootstrap)
    distribution = distribution or KafkaDistribution(local.kafka_version, local.cache_dir)
    nodes = brokers or local.kafka_brokers
    if nodes > 1:
        return ChosenKafka(cluster=LocalKafkaCluster(distribution, data_dir or local.kafka_cluster_dir,
                                                     brokers=nodes, heap=local.kafka_node_heap))
    return ChosenKafka(broker=LocalKafkaBroker(distribution, data_dir or local.kafka_data_dir, heap=local.kafka_heap))
