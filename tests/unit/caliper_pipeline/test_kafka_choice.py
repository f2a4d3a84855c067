"""One decision for "start a local Kafka, or use the cluster the settings name": ``kafka_choice.choose_kafka``,
called by ``kafka``, ``up``, ``LocalPipeline``, the stage benches and the tests' session broker (no broker runs
here: the choice and its settings are checked on objects not started)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import caliper_pipeline
from caliper_pipeline.local.broker import BrokerPorts, KafkaDistribution, LocalKafkaBroker, LocalKafkaError
from caliper_pipeline.local.cluster import LocalKafkaCluster
from caliper_pipeline.local.kafka_choice import ChosenKafka, choose_kafka
from caliper_pipeline.local.pipeline import LocalPipeline
from caliper_pipeline.settings import LocalStackSettings, Settings
from schemas.kafka import KafkaSettings


def local(tmp_path: Path, **values: object) -> LocalStackSettings:
    return LocalStackSettings(home=tmp_path / "home", cache_dir=tmp_path / "cache", **values)


def test_a_configured_cluster_is_used_as_is(tmp_path: Path) -> None:
    chosen = choose_kafka(local(tmp_path, kafka_brokers=3), bootstrap="kafka-1:9092,kafka-2:9092")
    assert not chosen.local and chosen.nodes == {} and chosen.size == 0 and chosen.distribution is None
    assert chosen.start() == "kafka-1:9092,kafka-2:9092"
    kafka = chosen.settings_for(KafkaSettings(replication_factor=3))
    assert (kafka.bootstrap_servers, kafka.replication_factor) == ("kafka-1:9092,kafka-2:9092", 3)
    with pytest.raises(LocalKafkaError, match="not started by this process"):
        chosen.restart()
    chosen.stop()  # nothing to stop


def test_one_local_broker_by_default(tmp_path: Path) -> None:
    settings = local(tmp_path, kafka_heap="640m")
    chosen = choose_kafka(settings, bootstrap="")
    assert chosen.local and chosen.cluster is None and chosen.size == 1
    broker = chosen.broker
    assert broker is not None
    assert (broker.data_dir, broker.heap) == (settings.kafka_data_dir, "640m")
    assert broker.distribution == KafkaDistribution(settings.kafka_version, settings.cache_dir)
    assert chosen.nodes == {1: broker}
    broker.ports = BrokerPorts(broker=19092, controller=19093)  # as once started
    kafka = chosen.settings_for(KafkaSettings(replication_factor=3))  # one node cannot hold three replicas
    assert (kafka.bootstrap_servers, kafka.replication_factor) == ("127.0.0.1:19092", 1)


def test_a_local_cluster_when_more_than_one_node(tmp_path: Path) -> None:
    settings = local(tmp_path, kafka_brokers=4, kafka_node_heap="256m")
    chosen = choose_kafka(settings)
    cluster = chosen.cluster
    assert cluster is not None and chosen.broker is None
    assert (cluster.data_dir, cluster.heap, cluster.size) == (settings.kafka_cluster_dir, "256m", 4)
    assert chosen.replication_factor == 3 and chosen.size == 4


def test_the_caller_names_nodes_directory_and_distribution(tmp_path: Path) -> None:
    distribution = KafkaDistribution("4.0.0", tmp_path / "jars")
    chosen = choose_kafka(local(tmp_path, kafka_brokers=3), brokers=1, data_dir=tmp_path / "mine",
                          distribution=distribution)
    assert chosen.broker is not None and chosen.broker.data_dir == tmp_path / "mine"
    assert chosen.distribution is distribution
    assert choose_kafka(local(tmp_path), brokers=2).size == 2


def test_local_pipeline_decides_through_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALIPER_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("CALIPER_LOCAL__KAFKA_BROKERS", raising=False)
    configured = Settings(kafka=KafkaSettings(bootstrap_servers="kafka:9092", replication_factor=2))
    on_cluster = LocalPipeline(configured, tmp_path / "a")
    assert not on_cluster.chosen.local and on_cluster.kafka.bootstrap_servers == "kafka:9092"
    assert on_cluster.replication_factor == 2 and on_cluster.broker is None and on_cluster.cluster is None
    three = LocalPipeline(Settings(), tmp_path / "b", brokers=3)
    assert three.cluster is not None and three.cluster.data_dir == tmp_path / "b" / "kafka"
    assert three.replication_factor == 3 and three.brokers == 3
    given = LocalKafkaBroker(KafkaDistribution("4.1.1", tmp_path), tmp_path / "given")
    assert LocalPipeline(configured, tmp_path / "c", broker=given).chosen == ChosenKafka(broker=given)


def test_no_other_module_builds_a_local_kafka() -> None:
    """Only the choice builds a broker or a cluster (and a cluster its nodes): every caller goes through it."""
    allowed = {Path(inspect.getsourcefile(choose_kafka) or ""), Path(inspect.getsourcefile(LocalKafkaCluster) or "")}
    package = Path(caliper_pipeline.__file__).parent
    builds = re.compile(r"\bLocalKafka(Broker|Cluster)\(")
    offenders = [str(path.relative_to(package.parent)) for path in sorted(package.rglob("*.py"))
                 if path not in allowed and builds.search(path.read_text())]
    assert offenders == []
