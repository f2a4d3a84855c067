"""The production files replicate Kafka the way the local three-node cluster the fault tests run on does:
compose's ``cluster`` profile and the Strimzi resources set the same replication factor and
``min.insync.replicas`` for the pipeline's topics, the consumer offsets and the transaction state log as
``LocalKafkaBroker.server_properties`` of a node of ``LocalKafkaCluster``, and as ``ensure_topics`` for the topics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from caliper_pipeline.local.broker import BrokerPorts, ClusterLayout, KafkaDistribution, LocalKafkaBroker
from caliper_pipeline.ops.topics import min_insync_replicas

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DIR = ROOT / "deploy" / "compose"
K8S_DIR = ROOT / "deploy" / "k8s"
REPLICATION_KEYS = ("default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
                    "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                    "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr",
                    "unclean.leader.election.enable")


def _yaml() -> Any:
    return pytest.importorskip("yaml")


def proved(tmp_path: Path) -> dict[str, str]:
    """The replication settings of a node of the local three-node cluster."""
    node = LocalKafkaBroker(KafkaDistribution("4.1.1", tmp_path), tmp_path, node_id=1,
                            layout=ClusterLayout("id", "1@h:1,2@h:2,3@h:3", replication_factor=3))
    properties = node.server_properties(BrokerPorts(9092, 9093))
    return {key: properties[key] for key in REPLICATION_KEYS}


def test_the_local_cluster_replicates_everything_three_times_with_two_in_sync(tmp_path: Path) -> None:
    assert proved(tmp_path) == {
        "default.replication.factor": "3", "min.insync.replicas": "2", "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3", "share.coordinator.state.topic.min.isr": "2",
        "unclean.leader.election.enable": "false"}
    assert min_insync_replicas(3) == 2 and min_insync_replicas(1) == 1


def _substitute(value: str, env: dict[str, str]) -> str:
    """compose's ``${VAR:-default}`` and ``${VAR}``."""
    return re.sub(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), value)


def test_compose_cluster_profile_uses_the_proved_replication(tmp_path: Path) -> None:
    env = dict(line.split("=", 1) for line in (COMPOSE_DIR / "cluster.env").read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    services = _yaml().safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]
    for name in ("kafka", "kafka-2", "kafka-3"):
        kafka_env = {key: _substitute(str(value), env) for key, value in services[name]["environment"].items()}
        as_properties = {key.removeprefix("KAFKA_").lower().replace("_", "."): value
                         for key, value in kafka_env.items()}
        assert {key: as_properties.get(key) for key in REPLICATION_KEYS} == proved(tmp_path), name
    for name in ("topics", "gateway", "streams", "sink"):  # the clients create and expect the same replication
        assert _substitute(services[name]["environment"]["CALIPER_KAFKA__REPLICATION_FACTOR"], env) == "3", name


def test_strimzi_resources_use_the_proved_replication(tmp_path: Path) -> None:
    docs = [doc for doc in _yaml().safe_load_all((K8S_DIR / "base" / "kafka.yaml").read_text()) if doc]
    (kafka,) = [doc for doc in docs if doc["kind"] == "Kafka"]
    config = {key: str(value).lower() for key, value in kafka["spec"]["kafka"]["config"].items()}
    assert {key: config.get(key) for key in REPLICATION_KEYS} == proved(tmp_path)
    (pool,) = [doc for doc in docs if doc["kind"] == "KafkaNodePool"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"broker", "controller"}
    topics = [doc for doc in _yaml().safe_load_all((K8S_DIR / "base" / "kafka-topics.yaml").read_text()) if doc]
    for topic in topics:  # what ensure_topics gives each topic of a three-node cluster
        assert topic["spec"]["replicas"] == 3, topic["metadata"]["name"]
        assert topic["spec"]["config"]["min.insync.replicas"] == str(min_insync_replicas(3)), topic["metadata"]["name"]
    for overlay in (K8S_DIR / "overlays").iterdir():  # no overlay changes the replication
        for path in overlay.glob("*.yaml"):
            text = path.read_text()
            assert not any(key in text for key in REPLICATION_KEYS), path
            for doc in _yaml().safe_load_all(text):
                if doc and doc.get("kind") == "ConfigMap" and "CALIPER_KAFKA__REPLICATION_FACTOR" in doc["data"]:
                    assert doc["data"]["CALIPER_KAFKA__REPLICATION_FACTOR"] == "3", path
    base_config = _yaml().safe_load((K8S_DIR / "base" / "config.yaml").read_text())
    assert base_config["data"]["CALIPER_KAFKA__REPLICATION_FACTOR"] == "3"
