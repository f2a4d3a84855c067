"""``caliper-pipeline up``, ``kafka`` and ``topics``: the local stack, its Kafka and the topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from caliper_pipeline.cli.command import Add
from caliper_pipeline.settings import Settings


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.local.stack import run_stack

    return run_stack(settings, demo=args.demo, exit_after_demo=args.exit_after_demo)


def cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    import signal
    import threading

    from caliper_pipeline.local.kafka_choice import choose_kafka
    from caliper_pipeline.ops.topics import ensure_topics, min_insync_replicas

    chosen = choose_kafka(settings.local, data_dir=args.data_dir, brokers=args.brokers)
    distribution = chosen.distribution
    assert distribution is not None  # no bootstrap given: always a local one
    libs = distribution.install()
    if args.install_only:
        print(f"Apache Kafka {distribution.version} is in {libs}")
        return 0
    bootstrap = chosen.start()
    nodes = chosen.nodes
    try:
        kafka = chosen.settings_for(settings.kafka)
        replication = kafka.replication_factor
        asyncio.run(ensure_topics(kafka))
        if (cluster := chosen.cluster) is not None:
            print(f"Apache Kafka {distribution.version}: {cluster.size} KRaft nodes (broker + controller each, one "
                  f"quorum) at {bootstrap}; controller quorum leader: node {cluster.quorum_leader()}; topics "
                  f"replicated {replication}x, min.insync.replicas {min_insync_replicas(replication)}; pids "
                  f"{cluster.pids()}; data in {cluster.data_dir}.\nClients: "
                  f"CALIPER_KAFKA__BOOTSTRAP_SERVERS={bootstrap} CALIPER_KAFKA__REPLICATION_FACTOR={replication}. "
                  "Ctrl-C stops every node.", flush=True)
        else:
            print(f"Apache Kafka {distribution.version} (KRaft) at {bootstrap}; topics ready. Ctrl-C stops it.",
                  flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        exited: set[int] = set()
        while not stop.wait(1.0):
            for node_id, node in nodes.items():
                if node_id not in exited and not node.alive():
                    exited.add(node_id)
                    print(f"Kafka node {node_id} exited; see {node.data_dir}/logs", file=sys.stderr, flush=True)
            if len(exited) == len(nodes):
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        chosen.stop()
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.ops.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings.kafka))
    print("created: " + (", ".join(created) or "nothing (all exist)"))
    return 0


def add_local_commands(add: Add) -> None:
    up = add("up", cmd_up, "run the whole local stack: Kafka, gateway, streams worker, sink")
    up.add_argument("--demo", action="store_true", help="send sample events through the gateway and show them")
    up.add_argument("--exit-after-demo", action="store_true", help="stop the stack after the demo")
    kafka = add("kafka", cmd_kafka, "fetch (once) and run the local Apache Kafka broker")
    kafka.add_argument("--install-only", action="store_true", help="only fetch the jars from Maven Central")
    kafka.add_argument("--brokers", type=int, default=None, choices=range(1, 10), metavar="N",
                       help="KRaft nodes (each broker and controller; default CALIPER_LOCAL__KAFKA_BROKERS, 1); with "
                            "3, topics are replicated 3x with min.insync.replicas 2")
    kafka.add_argument("--data-dir", type=Path, default=None)
    add("topics", cmd_topics, "create the pipeline's topics")
