"""``caliper-pipeline kafka --brokers 3``: three KRaft nodes, one process each, stopped together by Ctrl-C, and
started again on the same data and ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from test_up_supervision import alive, port_listening

from caliper_pipeline.local import cluster_state
from caliper_pipeline.local.broker import REPO_ROOT, KafkaDistribution
from caliper_pipeline.local.processes import die_with_parent

pytestmark = pytest.mark.integration

READY = "Ctrl-C stops every node."


def interruptible_child() -> Callable[[], None]:
    """A ``preexec_fn``: the child dies with the test, and takes Ctrl-C (SIGINT) whatever the test inherited: a
    suite started in the background (``nohup .ci/run &``) runs with SIGINT ignored, which a child inherits, and a
    Python started that way never turns SIGINT into KeyboardInterrupt (the cluster then ignored this test's Ctrl-C)."""
    with_parent = die_with_parent()

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        with_parent()

    return preexec


def start(data_dir: Path, kafka_distribution: KafkaDistribution) -> tuple[subprocess.Popen[bytes], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIPER_")} | {
        "PYTHONPATH": str(REPO_ROOT), "CALIPER_LOCAL__CACHE_DIR": str(kafka_distribution.cache_dir)}
    output = data_dir.parent / f"{data_dir.name}-output.log"
    ready_before = output.read_text(errors="replace").count(READY) if output.exists() else 0
    with output.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "-m", "caliper_pipeline.cli", "kafka", "--brokers", "3",
                                    "--data-dir", str(data_dir)], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   preexec_fn=interruptible_child())
    deadline = time.monotonic() + 180
    while output.read_text(errors="replace").count(READY) == ready_before:
        assert process.poll() is None, output.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, output.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    return process, output


def node_pids(data_dir: Path) -> dict[int, int]:
    return {node: int((data_dir / f"node-{node}" / "broker.pid").read_text()) for node in (1, 2, 3)}


def ports(data_dir: Path) -> dict[str, dict[str, int]]:
    return dict(json.loads((data_dir / "cluster.json").read_text())["ports"])


def bootstrap(data_dir: Path) -> str:
    return ",".join(f"127.0.0.1:{p['broker']}" for p in ports(data_dir).values())


async def produce(servers: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def consume_all(servers: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(20):
            values += [m.value for ms in (await consumer.getmany(timeout_ms=500)).values() for m in ms if m.value]
            if values:
                break
    finally:
        await consumer.stop()
    return values


def stop_with_ctrl_c(process: subprocess.Popen[bytes], data_dir: Path) -> None:
    pids = node_pids(data_dir)
    process.send_signal(signal.SIGINT)
    process.wait(60)
    assert not any(alive(pid) for pid in pids.values()), f"a node outlived Ctrl-C: {pids}"
    assert not any(port_listening(p) for node in ports(data_dir).values() for p in node.values())


@pytest.mark.timeout(600)
def test_three_nodes_stop_on_ctrl_c_and_start_again_on_their_data_and_ports(
        tmp_path: Path, kafka_distribution: KafkaDistribution) -> None:
    data_dir = tmp_path / "cluster"
    process, output = start(data_dir, kafka_distribution)
    try:
        first_ports = ports(data_dir)
        pids = node_pids(data_dir)
        assert len(set(pids.values())) == 3 and all(alive(pid) for pid in pids.values()), "one process per node"
        quorum = asyncio.run(cluster_state.describe_quorum(bootstrap(data_dir)))
        assert set(quorum.voters) == {1, 2, 3} and quorum.leader_id in {1, 2, 3}
        states = asyncio.run(cluster_state.partition_states(bootstrap(data_dir), ["caliper.facts"]))
        assert states and all(len(s.replicas) == 3 and len(s.isr) == 3 for s in states), states
        asyncio.run(produce(bootstrap(data_dir), "caliper.facts", b"kept across a restart"))
    finally:
        stop_with_ctrl_c(process, data_dir)
    process, output = start(data_dir, kafka_distribution)
    try:
        assert ports(data_dir) == first_ports
        assert asyncio.run(consume_all(bootstrap(data_dir), "caliper.facts")) == [b"kept across a restart"]
    finally:
        stop_with_ctrl_c(process, data_dir)
    print(output.read_text(errors="replace")[-1500:])
