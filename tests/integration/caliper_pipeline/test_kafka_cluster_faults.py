"""Scale-out on a real three-node Kafka cluster, under load, ending with EXACT counts by event id.

One pipeline for the module: a local cluster of three combined broker+controller KRaft nodes (topics, consumer
offsets and transaction state log RF 3 / min.insync.replicas 2), two gateways sharing the senders, three streams
workers in one consumer group, one sink (embedded ClickHouse). Each test drives load through both gateways
(senders retry 503 and unanswered requests with the same events until acknowledged), breaks something, repairs
it, and ends with every acknowledged event in ClickHouse exactly once and no other (``assert_exactly_once``). Each
prints how the fault looked from the senders (``Outage``: answers by status, when the gateway answered 503, the
longest time without an acknowledgement); run with ``-s`` to see the figures.

- three streams workers, one SIGKILLed mid-load: its partitions move to the two others (the group's assignment
  before and after, by member id, through the admin API);
- SIGKILL of the node leading the most raw-topic partitions, kept down while the gateways go on acknowledging;
- SIGKILL of the controller quorum's leader;
- a rolling restart (SIGTERM, start, back in sync) of the three nodes one at a time;
- two nodes down at once: no acknowledgement, the gateways answer 503; they acknowledge again once one returns.

Shortened for CI; ``CALIPER_FULL_PROOF=1`` keeps each fault and the load around it several times longer.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from pipeline_harness import FULL_PROOF, LoadRun, LocalPipeline, Outage, assert_exactly_once, outage, start_pipeline

from caliper_pipeline.local import cluster_state
from caliper_pipeline.local.broker import KafkaDistribution
from caliper_pipeline.local.cluster import LocalKafkaCluster
from caliper_pipeline.senders.loadgen import CALIPER_PATH, HUB_PATH
from caliper_pipeline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.stack]

PARTITIONS = 6
RATE = 200.0  # events/s over 16 senders: each sender's next request waits for the answer to its last
SENDERS = 16
BEFORE = 4.0  # seconds of load before the fault
DEGRADED = 20.0 if FULL_PROOF else 4.0  # seconds of load with the fault in place, once the cluster failed over
TWO_DOWN = 40.0 if FULL_PROOF else 15.0  # seconds with two nodes down
AFTER = 15.0 if FULL_PROOF else 3.0  # seconds of load after the repair
EVENT_PATHS = (CALIPER_PATH, HUB_PATH)
MAX_LOAD = 600.0  # the longest a load may run (each test stops its load)

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0) -> T:
    """Poll ``probe`` until it returns something other than None (an exception counts as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Exception:  # the cluster is between states
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster_pipeline(tmp_path_factory: pytest.TempPathFactory,
                     kafka_distribution: KafkaDistribution) -> Iterator[LocalPipeline]:
    work = tmp_path_factory.mktemp("cluster")
    cluster = LocalKafkaCluster(kafka_distribution, work / "kafka", brokers=3, heap=Settings().local.kafka_node_heap)
    pipeline = start_pipeline(work / "pipeline", cluster=cluster, partitions=PARTITIONS, gateways=2,
                              streams_workers=3)
    try:
        yield pipeline
    finally:
        pipeline.stop()


def _cluster(pipeline: LocalPipeline) -> LocalKafkaCluster:
    assert pipeline.cluster is not None
    return pipeline.cluster


@pytest.fixture
def pipeline(cluster_pipeline: LocalPipeline) -> LocalPipeline:
    """Every node and process running and every partition in sync (a failed test may have left one down)."""
    cluster = _cluster(cluster_pipeline)
    for node in cluster.node_ids:
        if not cluster.alive(node):
            cluster.restart_node(node)
    for name in cluster_pipeline.process_names:
        if not cluster_pipeline.children[name].alive():
            cluster_pipeline.restart(name)
    cluster.wait_in_sync(cluster_pipeline.kafka.topics.all_topics())
    return cluster_pipeline


def raw_leaders(pipeline: LocalPipeline) -> dict[int, int]:
    return dict(asyncio.run(cluster_state.leaders(pipeline.kafka_bootstrap or "", pipeline.kafka.topics.raw_topics)))


def group(pipeline: LocalPipeline, members: int) -> dict[str, set[tuple[str, int]]]:
    """The streams workers' group once it is stable with ``members`` members."""
    def probe() -> dict[str, set[tuple[str, int]]] | None:
        assignment = asyncio.run(cluster_state.group_assignment(pipeline.kafka_bootstrap or "",
                                                                pipeline.streams_group))
        return assignment if len(assignment) == members and all(assignment.values()) else None
    return wait_for(f"the streams group stable with {members} members", probe, timeout=120)


def gateway_acknowledged_requests(pipeline: LocalPipeline) -> dict[str, float]:
    """Per gateway: event requests it answered 200 (its own /metrics; token requests do not count)."""
    counts = {}
    for name, port in pipeline.gateway_ports.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        counts[name] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("gateway_requests_total{") and 'status="200"' in line
                           and any(f'endpoint="{path}"' in line for path in EVENT_PATHS))
    return counts


def report(record_property: Callable[[str, object], None], result: Outage, counts: object) -> None:
    print(f"\n{result}\n  exact counts: {counts}")
    record_property("outage", str(result))
    record_property("seconds_of_503", round(result.seconds_of_503, 1))


def acknowledged_during(load: LoadRun, start: float, end: float) -> int:
    return load.acknowledged_at(end) - load.acknowledged_at(start)


@pytest.mark.timeout(420)
def test_three_workers_one_sigkilled_its_partitions_move_to_the_others(
        pipeline: LocalPipeline, record_property: Callable[[str, object], None]) -> None:
    raw = pipeline.kafka.topics.raw_topics
    every_partition = {(topic, p) for topic in raw for p in range(PARTITIONS)}
    before = group(pipeline, 3)
    requests_before = gateway_acknowledged_requests(pipeline)
    load = LoadRun(pipeline, seconds=MAX_LOAD, rate=RATE, senders=SENDERS)
    load.sleep_until(BEFORE)
    pipeline.kill("streams-2")
    fault_at = load.elapsed()
    after = group(pipeline, 2)
    rebalanced_at = load.elapsed()
    load.sleep_until(rebalanced_at + DEGRADED)
    load.stop()
    summary = load.result()
    served = {name: count - requests_before[name] for name, count in gateway_acknowledged_requests(pipeline).items()}
    print(f"\nassignment before (member -> partitions): {_show(before)}\nafter: {_show(after)}\n"
          f"requests acknowledged per gateway: {served}")

    assert set().union(*before.values()) == every_partition and sum(map(len, before.values())) == len(every_partition)
    survivors, (killed,) = set(after), set(before) - set(after)
    assert survivors < set(before), "the two survivors kept their membership (same member ids)"
    assert set().union(*after.values()) == every_partition and sum(map(len, after.values())) == len(every_partition)
    assert before[killed] <= set().union(*after.values())
    for member in survivors:
        assert len(after[member]) > len(before[member]), f"{member} took over part of the killed worker's partitions"
    assert all(count > 0 for count in served.values()), f"both gateways acknowledged requests: {served}"
    counts = assert_exactly_once(pipeline, summary, timeout=150)
    result = outage(load, summary, "streams worker SIGKILLed", fault_at, rebalanced_at)
    report(record_property, result, counts)
    pipeline.restart("streams-2")
    group(pipeline, 3)  # it rejoins


def _show(assignment: dict[str, set[tuple[str, int]]]) -> str:
    """``member: [topic/partition, ...]`` with the end of each member id and the topics without their prefix."""
    def short(topic: str, partition: int) -> str:
        return f"{topic.rsplit('.', 1)[1]}/{partition}"
    return "; ".join(f"{member[-8:]}: {sorted(short(t, p) for t, p in partitions)}"
                     for member, partitions in sorted(assignment.items()))


@pytest.mark.timeout(420)
def test_node_leading_most_raw_partitions_sigkilled_under_load(
        pipeline: LocalPipeline, record_property: Callable[[str, object], None]) -> None:
    cluster = _cluster(pipeline)
    load = LoadRun(pipeline, seconds=MAX_LOAD, rate=RATE, senders=SENDERS)
    load.sleep_until(BEFORE)
    node = cluster.leader_of_most(pipeline.kafka.topics.raw_topics)
    led = raw_leaders(pipeline)
    pipeline.kill(f"kafka-{node}")
    fault_at = load.elapsed()
    # the controller fences the dead node (broker.session.timeout.ms) and elects new leaders from the replicas
    wait_for("new leaders for every raw partition",
             lambda: True if set(raw_leaders(pipeline)) <= set(cluster.node_ids) - {node} else None)
    failed_over_at = load.elapsed()
    load.sleep_until(failed_over_at + DEGRADED)
    degraded = acknowledged_during(load, failed_over_at, load.elapsed())
    pipeline.restart(f"kafka-{node}")
    repaired_at = load.elapsed()
    load.sleep_until(repaired_at + AFTER)
    load.stop()
    summary = load.result()
    print(f"\nraw partitions led before: {led}; node {node} killed; failed over after "
          f"{failed_over_at - fault_at:.1f}s; {degraded} events acknowledged with it down")
    assert degraded > 0, "the gateways acknowledge with one node of three down"
    assert set(summary.statuses) <= {0, 200, 400, 503}, summary.statuses
    counts = assert_exactly_once(pipeline, summary, timeout=150)
    report(record_property, outage(load, summary, f"node {node} (leader of most raw partitions) SIGKILLed",
                                   fault_at, repaired_at), counts)


@pytest.mark.timeout(420)
def test_controller_quorum_leader_sigkilled_under_load(
        pipeline: LocalPipeline, record_property: Callable[[str, object], None]) -> None:
    cluster = _cluster(pipeline)
    load = LoadRun(pipeline, seconds=MAX_LOAD, rate=RATE, senders=SENDERS)
    load.sleep_until(BEFORE)
    node = cluster.quorum_leader()
    pipeline.kill(f"kafka-{node}")
    fault_at = load.elapsed()
    new_leader = wait_for("a new quorum leader",
                          lambda: leader if (leader := cluster.quorum_leader()) != node else None)
    elected_at = load.elapsed()
    wait_for("new leaders for every raw partition",
             lambda: True if set(raw_leaders(pipeline)) <= set(cluster.node_ids) - {node} else None)
    failed_over_at = load.elapsed()
    load.sleep_until(failed_over_at + DEGRADED)
    degraded = acknowledged_during(load, failed_over_at, load.elapsed())
    pipeline.restart(f"kafka-{node}")
    repaired_at = load.elapsed()
    load.sleep_until(repaired_at + AFTER)
    load.stop()
    summary = load.result()
    print(f"\nquorum leader {node} killed; node {new_leader} elected after {elected_at - fault_at:.1f}s; partitions "
          f"failed over after {failed_over_at - fault_at:.1f}s; {degraded} events acknowledged with it down")
    assert new_leader in set(cluster.node_ids) - {node}
    assert degraded > 0
    assert set(summary.statuses) <= {0, 200, 400, 503}, summary.statuses
    counts = assert_exactly_once(pipeline, summary, timeout=150)
    report(record_property, outage(load, summary, f"node {node} (controller quorum leader) SIGKILLed",
                                   fault_at, repaired_at), counts)


@pytest.mark.timeout(600)
def test_rolling_restart_of_the_three_nodes_under_load(
        pipeline: LocalPipeline, record_property: Callable[[str, object], None]) -> None:
    cluster = _cluster(pipeline)
    topics = pipeline.kafka.topics.all_topics()
    load = LoadRun(pipeline, seconds=MAX_LOAD, rate=RATE, senders=SENDERS)
    load.sleep_until(BEFORE)
    fault_at = load.elapsed()
    steps = []
    for node in cluster.node_ids:
        began = load.elapsed()
        pipeline.stop_process(f"kafka-{node}")  # SIGTERM: a controlled shutdown moves its leaderships first
        stopped = load.elapsed()
        pipeline.restart(f"kafka-{node}")
        cluster.wait_in_sync(topics)  # the next node goes only when no partition depends on this one catching up
        steps.append(f"node {node}: stopped in {stopped - began:.1f}s, in sync after {load.elapsed() - began:.1f}s")
    repaired_at = load.elapsed()
    load.sleep_until(repaired_at + AFTER)
    load.stop()
    summary = load.result()
    print("\n" + "; ".join(steps))
    assert acknowledged_during(load, fault_at, repaired_at) > 0
    assert set(summary.statuses) <= {0, 200, 400, 503}, summary.statuses
    counts = assert_exactly_once(pipeline, summary, timeout=150)
    report(record_property, outage(load, summary, "rolling restart of nodes 1, 2, 3", fault_at, repaired_at), counts)


@pytest.mark.timeout(600)
def test_two_nodes_down_the_gateways_refuse_then_recover(
        pipeline: LocalPipeline, record_property: Callable[[str, object], None]) -> None:
    """With two of three nodes down no write can reach two in-sync replicas (and the controller quorum has lost
    its majority): the gateways must answer 503, never 200. One node back: a quorum again, the dead node is fenced
    and dropped from the in-sync replicas, and writes go on with two replicas."""
    cluster = _cluster(pipeline)
    load = LoadRun(pipeline, seconds=MAX_LOAD, rate=RATE, senders=SENDERS)
    load.sleep_until(BEFORE)
    first, second = [node for node in cluster.node_ids if node != cluster.leader_of_most(
        pipeline.kafka.topics.raw_topics)][:2]
    pipeline.kill(f"kafka-{first}")
    pipeline.kill(f"kafka-{second}")
    fault_at = load.elapsed()
    grace = 2.0  # answers to transactions committed before the kill may still be on their way
    load.sleep_until(fault_at + TWO_DOWN)
    down_until = load.elapsed()
    acknowledged_while_down = acknowledged_during(load, fault_at + grace, down_until)
    refused_while_down = sum(1 for t, status in load.summary.refusals if status == 503 and fault_at <= t <= down_until)
    pipeline.restart(f"kafka-{first}")
    one_back_at = load.elapsed()
    resumed_at = wait_for("acknowledgements again with two nodes of three",
                          lambda: load.elapsed() if acknowledged_during(load, one_back_at, load.elapsed()) > 0
                          else None, timeout=120)
    load.sleep_until(resumed_at + DEGRADED)
    pipeline.restart(f"kafka-{second}")
    repaired_at = load.elapsed()
    load.sleep_until(repaired_at + AFTER)
    load.stop()
    summary = load.result()
    print(f"\nnodes {first} and {second} killed; {refused_while_down} requests answered 503 while both were down "
          f"({down_until - fault_at:.1f}s); node {first} back after {one_back_at - fault_at:.1f}s, acknowledging "
          f"again {resumed_at - one_back_at:.1f}s later")
    assert acknowledged_while_down == 0, f"{acknowledged_while_down} events acknowledged with two nodes of three down"
    assert refused_while_down > 0, "the gateways answered 503 while two nodes were down"
    assert set(summary.statuses) <= {0, 200, 400, 503}, summary.statuses
    counts = assert_exactly_once(pipeline, summary, timeout=150)
    report(record_property, outage(load, summary, f"nodes {first} and {second} SIGKILLed together", fault_at,
                                   one_back_at), counts)
