"""A local Apache Kafka cluster: several KRaft nodes from the same jars, each a process of its own.

Every node is broker and controller (like the compose ``cluster`` profile and the Strimzi node pool), the
controllers form one quorum of all nodes, and the cluster's topics are replicated on up to three of them with
``min.insync.replicas`` a majority (RF 3 / min ISR 2; the transaction state log and the consumer offsets alike).
Each node has its own ports and data directory under ``data_dir`` (``node-<id>``); ``cluster.json`` keeps the
cluster id and the ports, so a restart finds its data and gives clients the same addresses.

Nodes are killed, stopped and restarted one by one (fault injection); ``quorum_leader`` and ``leader_of_most``
say which node to break. Like ``LocalKafkaBroker``, no node outlives the process that started it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from caliper_pipeline.local import cluster_state
from caliper_pipeline.local.broker import (
    BrokerPorts,
    ClusterLayout,
    KafkaDistribution,
    LocalKafkaBroker,
    LocalKafkaError,
    free_port,
    kraft_cluster_id,
    port_is_free,
)

log = logging.getLogger(__name__)

INTERNAL_TOPICS = ["__consumer_offsets", "__transaction_state"]


class LocalKafkaCluster:
    """``brokers`` combined broker+controller nodes on loopback, numbered from 1."""

    def __init__(self, distribution: KafkaDistribution, data_dir: Path, *, brokers: int = 3,
                 host: str = "127.0.0.1", heap: str = "384m") -> None:
        if brokers < 1:
            raise LocalKafkaError(f"a cluster needs at least one node, not {brokers}")
        self.distribution = distribution
        self.data_dir = data_dir
        self.host = host
        self.heap = heap
        self.size = brokers
        self.layout: ClusterLayout | None = None
        self.nodes: dict[int, LocalKafkaBroker] = {}

    # -------------------------------------------------------------------------------------------------- layout

    def _state_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def _plan(self) -> dict[int, BrokerPorts]:
        """The cluster id and every node's ports: those of the last run when all are free, else new ones."""
        state_file = self._state_file()
        saved = json.loads(state_file.read_text()) if state_file.exists() else {}
        cluster_id = saved.get("cluster_id") or kraft_cluster_id()
        ports = {int(node): BrokerPorts(**p) for node, p in saved.get("ports", {}).items()}
        if len(ports) != self.size or not all(port_is_free(p, self.host) for node in ports.values()
                                              for p in (node.broker, node.controller)):
            if ports:
                log.warning("the ports of the last run of %s are taken (or the size changed): new ports", self.data_dir)
            ports = {node: BrokerPorts(free_port(self.host), free_port(self.host)) for node in self.node_ids}
        replication = min(3, self.size)
        voters = ",".join(f"{node}@{self.host}:{ports[node].controller}" for node in self.node_ids)
        self.layout = ClusterLayout(cluster_id=cluster_id, voters=voters, replication_factor=replication)
        state_file.write_text(json.dumps({"cluster_id": cluster_id, "ports": {
            str(node): {"broker": p.broker, "controller": p.controller} for node, p in ports.items()}}))
        return ports

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.size + 1))

    @property
    def replication_factor(self) -> int:
        return min(3, self.size)

    @property
    def bootstrap_servers(self) -> str:
        if not self.nodes:
            raise LocalKafkaError("the cluster is not started")
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    def node_bootstrap(self, node_id: int) -> str:
        return self.nodes[node_id].bootstrap_servers

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 120.0) -> str:
        """Start every node, wait until each answers and all are registered brokers; return the bootstrap list."""
        self.distribution.install()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = self._plan()
        assert self.layout is not None
        self.nodes = {node: LocalKafkaBroker(self.distribution, self.data_dir / f"node-{node}", host=self.host,
                                             heap=self.heap, ports=ports[node], node_id=node, layout=self.layout)
                      for node in self.node_ids}
        try:
            for node in self.nodes.values():
                node.launch()
            self._wait_nodes(self.node_ids, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Apache Kafka %s cluster of %d nodes ready at %s", self.distribution.version, self.size,
                 self.bootstrap_servers)
        return self.bootstrap_servers

    def _wait_nodes(self, node_ids: Iterable[int], timeout: float) -> None:
        wanted = list(node_ids)
        deadline = time.monotonic() + timeout
        for node in wanted:
            self.nodes[node].wait_ready(max(1.0, deadline - time.monotonic()))
        while True:  # each has registered with the controller and is unfenced: it appears in the metadata
            try:
                registered = asyncio.run(self.registered_brokers())
            except Exception:  # not answering yet
                registered = set()
            if set(wanted) <= registered:
                return
            if time.monotonic() > deadline:
                raise LocalKafkaError(f"nodes {sorted(set(wanted) - registered)} did not register within "
                                      f"{timeout:.0f}s; see {self.data_dir}/node-*/logs")
            time.sleep(0.5)

    async def registered_brokers(self) -> set[int]:
        async with cluster_state.admin_client(self.bootstrap_servers) as admin:
            described = await admin.describe_cluster()
        return {broker["node_id"] for broker in described["brokers"]}

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every node at once, SIGKILL after ``timeout``. Each node's broker first asks the controller quorum
        to approve its controlled shutdown; a node whose peers' controllers are already gone waits for an approval
        that cannot come (the quorum has no majority left), so it is killed after the timeout; its logs are
        recovered at the next start."""
        nodes = [node for node in self.nodes.values() if node.process is not None]
        if not nodes:
            return
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            list(pool.map(lambda node: node.stop(timeout), nodes))

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (fault injection)."""
        self.nodes[node_id].kill()

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """SIGTERM one node: a controlled shutdown (its leaderships move first)."""
        self.nodes[node_id].stop(timeout)

    def restart_node(self, node_id: int, *, timeout: float = 120.0) -> None:
        """Start a stopped or killed node again on its data directory and ports; wait until it is registered."""
        node = self.nodes[node_id]
        if node.alive():
            node.stop()
        node.launch()
        self._wait_nodes([node_id], timeout)

    def alive(self, node_id: int) -> bool:
        return self.nodes[node_id].alive()

    def pids(self) -> dict[int, int]:
        return {node_id: node.process.pid for node_id, node in self.nodes.items()
                if node.process is not None and node.alive()}

    def __enter__(self) -> LocalKafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------------------------------- state

    def quorum_leader(self) -> int:
        """The node whose controller leads the quorum (the active controller)."""
        return asyncio.run(cluster_state.describe_quorum(self.bootstrap_servers)).leader_id

    def leader_of_most(self, topics: list[str]) -> int:
        """The node that leads the most partitions of ``topics`` (the lowest id among equals)."""
        counts = asyncio.run(cluster_state.leaders(self.bootstrap_servers, topics))
        counts.pop(-1, None)
        if not counts:
            raise LocalKafkaError(f"no partition of {topics} has a leader")
        return min(counts, key=lambda node: (-counts[node], node))

    def wait_in_sync(self, topics: list[str], timeout: float = 90.0) -> None:
        """Wait until every partition of ``topics`` and of the internal topics has a leader and all its replicas
        in sync (after a node came back: the next fault must not find it still catching up)."""
        deadline = time.monotonic() + timeout
        behind: list[cluster_state.PartitionState] = []
        while time.monotonic() < deadline:
            try:
                behind = asyncio.run(cluster_state.under_replicated(self.bootstrap_servers, topics))
                behind += asyncio.run(cluster_state.under_replicated(self.bootstrap_servers, INTERNAL_TOPICS,
                                                                     missing_ok=True))
            except Exception as error:  # a node is still joining
                log.debug("cluster state unavailable: %r", error)
            else:
                if not behind:
                    return
            time.sleep(0.5)
        raise LocalKafkaError(f"{len(behind)} partitions still under-replicated after {timeout:.0f}s: {behind[:3]}")
