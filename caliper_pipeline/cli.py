"""``caliper-pipeline``: one console script, a subcommand for every process and tool.

Settings are built here, once, from the environment (``CALIPER_`` prefix) and passed down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from caliper_pipeline.settings import Settings, unknown_settings
from caliper_pipeline.sink_client import FORMATS
from schemas.errors import PipelineError
from schemas.reasons import ReasonCode
from schemas.version import PIPELINE_VERSION

log = logging.getLogger("caliper_pipeline")



def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.stack import run_stack

    return run_stack(settings, demo=args.demo, exit_after_demo=args.exit_after_demo)


def cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    import signal
    import threading

    from caliper_pipeline.local_cluster import LocalKafkaCluster
    from caliper_pipeline.local_kafka import KafkaDistribution, LocalKafkaBroker
    from caliper_pipeline.topics import ensure_topics, min_insync_replicas

    distribution = KafkaDistribution(settings.local.kafka_version, settings.local.cache_dir)
    libs = distribution.install()
    if args.install_only:
        print(f"Apache Kafka {distribution.version} is in {libs}")
        return 0
    brokers = args.brokers or settings.local.kafka_brokers
    nodes: dict[int, LocalKafkaBroker]
    if brokers > 1:
        cluster = LocalKafkaCluster(distribution, args.data_dir or settings.local.kafka_cluster_dir, brokers=brokers,
                                    heap=settings.local.kafka_node_heap)
        stop_kafka = cluster.stop
        bootstrap = cluster.start()
        nodes = cluster.nodes
        replication = cluster.replication_factor
    else:
        broker = LocalKafkaBroker(distribution, args.data_dir or settings.local.kafka_data_dir,
                                  heap=settings.local.kafka_heap)
        stop_kafka = broker.stop
        bootstrap = broker.start()
        nodes = {1: broker}
        replication = 1
    try:
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap, "replication_factor": replication})
        asyncio.run(ensure_topics(kafka))
        if brokers > 1:
            print(f"Apache Kafka {distribution.version}: {brokers} KRaft nodes (broker + controller each, one "
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
        stop_kafka()
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings.kafka))
    print("created: " + (", ".join(created) or "nothing (all exist)"))
    return 0


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.main import run_gateway
    from schemas.read_api import EventReader

    reader: EventReader
    if settings.clickhouse.embedded:  # only the sink process may open the embedded engine: read through it
        from gateway.read_client import HttpEventReader

        reader = HttpEventReader(settings.sink.base_url(), settings.sink.reader_token.get_secret_value())
    else:
        from sinks.queries import AnalystQueries
        from sinks.read_model import ClickHouseEventReader

        reader = ClickHouseEventReader(AnalystQueries(settings.clickhouse, settings.sink.reads, name="reads"),
                                       settings.kafka.topics.facts)
    run_gateway(settings.gateway, settings.kafka, reader)
    return 0


def cmd_streams(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    run_worker(settings.streams, settings.kafka, settings.privacy)  # MissingPrivacyKeyError without the keys
    return 0


def cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.http import run_sink

    async def until_signalled() -> None:
        """SIGTERM or Ctrl-C cancels the sink: open batches are not committed and are replayed by the next run
        (their insert tokens make that safe), ClickHouse and the consumer are closed cleanly."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_sink(settings.sink, settings.clickhouse, settings.kafka,
                           student_key_secret=settings.privacy.student_key_bytes)

    asyncio.run(until_signalled())
    return 0


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.sink_client import SinkClient

    print(SinkClient.from_settings(settings).query(args.query, args.format).decode(), end="")
    return 0


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.admin import erase_student_facts

    deleted = erase_student_facts(settings, args.tenant, args.student, args.requested_by)
    print(f"erased {deleted} rows of student {args.student!r} in tenant {args.tenant!r}")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.replay import replay

    if args.from_failed:
        from caliper_pipeline.failed_replay import replay_failed

        selection = {"tenant": args.tenant, "job_id": args.job, "reason": args.reason,
                     "reason_code": args.reason_code, "stage": args.stage}
        summary = asyncio.run(replay_failed(settings, {k: v for k, v in selection.items() if v},
                                            dry_run=args.dry_run))
        print("\n".join(summary.lines()))
        return 0
    if args.tenant or args.job or args.reason or args.reason_code or args.stage:
        raise PipelineError("--tenant, --job, --reason, --reason-code and --stage select failed events: "
                            "add --from-failed")
    summary = asyncio.run(replay(settings.kafka, topic=args.topic, to_topic=args.to_topic, partition=args.partition,
                                 from_offset=args.from_offset, to_offset=args.to_offset, dry_run=args.dry_run))
    print("\n".join(summary.lines()))
    return 0


def cmd_renormalize(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.renormalize import renormalize

    bounds = [_moment_ms(args.from_time, "--from"), _moment_ms(args.to_time, "--to")]
    if None not in bounds and bounds[0] >= bounds[1]:  # type: ignore[operator]
        raise PipelineError(f"--from {args.from_time} is not before --to {args.to_time}: the range is empty")
    summary = asyncio.run(renormalize(settings, args.tenant, bounds[0], bounds[1], dry_run=args.dry_run,
                                      progress=not args.no_progress))
    print("\n".join(summary.lines()))
    return 0


def _moment_ms(text: str | None, option: str) -> int | None:
    from schemas.coerce import time_to_ms

    if text is None:
        return None
    moment = time_to_ms(text)
    if moment is None:
        raise PipelineError(f"{option} must be an ISO 8601 date-time (e.g. 2026-03-01T00:00:00Z), got {text!r}")
    return moment


def cmd_purge_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.purge import PurgeError, purge_kafka
    from schemas.coerce import parse_time

    moment = parse_time(args.before)
    if moment is None:
        raise PurgeError(f"--before must be an ISO 8601 date-time, got {args.before!r}")
    topics = settings.kafka.topics
    # a raw record feeds the streams worker (which archives it too); the facts and the archive rows feed the sink
    downstream: dict[str, str | tuple[str, ...]] = {topic: settings.streams.app_id for topic in topics.raw_topics}
    downstream[topics.facts] = settings.sink.group_id
    downstream[topics.archive] = settings.sink.group_id
    summary = asyncio.run(purge_kafka(settings.kafka, int(moment.timestamp() * 1000), downstream_groups=downstream,
                                      dry_run=args.dry_run, force=args.force))
    print("\n".join(summary.lines()))
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.bench import run_bench

    return run_bench(settings, args.component, args)


Add = Callable[[str, Callable[[Settings, argparse.Namespace], int], str], argparse.ArgumentParser]


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. The commands whose modules import what a pipeline process must not load (the
    benches and the load generator, the sink's analysts with pyarrow, the clients' registry) add their arguments,
    and import their modules, only when ``argv`` runs one of them; the others list them by name and help."""
    wanted = _command_in(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="caliper-pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {PIPELINE_VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[Settings, argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    up = add("up", cmd_up, "run the whole local stack: Kafka, gateway, streams worker, sink")
    up.add_argument("--demo", action="store_true", help="send sample events through the gateway and show them")
    up.add_argument("--exit-after-demo", action="store_true", help="stop the stack after the demo")
    kafka = add("kafka", cmd_kafka, "fetch (once) and run the local Apache Kafka broker")
    kafka.add_argument("--install-only", action="store_true", help="only fetch the jars from Maven Central")
    kafka.add_argument("--brokers", type=int, default=None, choices=range(1, 10), metavar="N",
                       help="KRaft nodes (each broker and controller; default CALIPER_LOCAL__KAFKA_BROKERS, 1); with "
                            "3, topics are replicated 3x with min.insync.replicas 2")
    kafka.add_argument("--data-dir", type=lambda p: __import__("pathlib").Path(p), default=None)
    add("topics", cmd_topics, "create the pipeline's topics")
    add("gateway", cmd_gateway, "run the HTTP gateway")
    add("streams", cmd_streams, "run a stream worker (normalizers)")
    add("sink", cmd_sink, "run the ClickHouse sink (and its SQL endpoint)")


    sql = add("sql", cmd_sql, "run a read-only SQL query through the sink's POST /sql (with the analyst token: "
                              "CALIPER_SINK__ANALYST_TOKEN, else the one `up` keeps under its home)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=list(FORMATS), default="pretty")
    erase = add("erase", cmd_erase, "erase a student's facts (LGPD/GDPR)")
    erase.add_argument("--tenant", required=True)
    erase.add_argument("--student", required=True)
    erase.add_argument("--requested-by", default="cli")

    replay = add("replay", cmd_replay, "re-publish dead letters (or a topic range) after a fix")
    replay.add_argument("--topic", help="default: the dead-letter topic")
    replay.add_argument("--to-topic", help="destination when --topic is not the dead-letter topic")
    replay.add_argument("--partition", type=int)
    replay.add_argument("--from-offset", type=int)
    replay.add_argument("--to-offset", type=int, help="inclusive")
    replay.add_argument("--dry-run", action="store_true", help="count what would be re-published")
    replay.add_argument("--from-failed", action="store_true",
                        help="choose what to re-publish in ClickHouse's failed events (by --tenant, --job, --reason, "
                             "--reason-code)")
    replay.add_argument("--tenant", help="with --from-failed: this tenant's failed events")
    replay.add_argument("--job", help="with --from-failed: the failed events of this job (a request's jobId)")
    replay.add_argument("--reason", help="with --from-failed: failed events whose reason contains this text")
    replay.add_argument("--reason-code", choices=[code.value for code in ReasonCode],
                        help="with --from-failed: failed events of this kind (docs/analytics.md lists them)")
    replay.add_argument("--stage", choices=("streams", "sink"),
                        help="with --from-failed: dead-lettered events (streams, the default) or refused at load")

    renorm = add("renormalize", cmd_renormalize,
                 "derive a tenant's facts again from the raw archive with this installation's normalizers")
    renorm.add_argument("--tenant", required=True)
    renorm.add_argument("--from", dest="from_time", metavar="ISO", help="events received at or after (default: all)")
    renorm.add_argument("--to", dest="to_time", metavar="ISO", help="events received before (default: all)")
    renorm.add_argument("--dry-run", action="store_true", help="normalize and count, publish nothing")
    renorm.add_argument("--no-progress", action="store_true", help="no progress bar")

    purge = add("purge-kafka", cmd_purge_kafka, "delete the pipeline's Kafka records older than a moment")
    purge.add_argument("--before", required=True, help="ISO 8601 date-time, e.g. 2026-11-30T12:00:00Z")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    purge.add_argument("--force", action="store_true",
                       help="also delete records the next stage has not committed yet (loses them)")

    for name, (text, register) in LAZY_COMMANDS.items():
        if name == wanted:
            register(add, text)
        else:
            add(name, _not_loaded, text)
    return parser


def _not_loaded(settings: Settings, args: argparse.Namespace) -> int:  # never runs: see build_parser
    raise AssertionError(f"{args.command} was parsed without its arguments")


def _add_bench(add: Add, text: str) -> None:
    bench = add("bench", cmd_bench, text)
    benches = bench.add_subparsers(dest="component", required=True)
    for component, text in (("gateway", "the gateway vs a bare forwarder, on the real broker"),
                            ("gateway-steps", "the gateway's CPU per event, step by step (no HTTP, no Kafka)"),
                            ("codecs", "the gateway's publishing CPU per event for each batch compression"),
                            ("schemas", "encode + decode of a learning fact"),
                            ("streams", "facts/s of one worker"), ("sink", "rows/s loaded into ClickHouse"),
                            ("renormalize", "renormalize on --count archived events (and the archive's load rate)"),
                            ("ceilings", "each stage and its bare baseline on one broker, in one run: the ratios")):
        stage = benches.add_parser(component, help=text, description=text)
        stage.add_argument("--seconds", type=float, default=10.0)
        stage.add_argument("--concurrency", type=int, default=64)
        stage.add_argument("--count", type=int, default=100_000)
        if component == "ceilings":
            stage.add_argument("--rows", type=int, default=200_000, help="facts loaded by the sink and its baseline")
            stage.add_argument("--stages", default="gateway,streams,sink", help="comma-separated stages to measure")
        if component == "sink":
            stage.add_argument("--heavy-query", type=float, default=0.0, metavar="SECONDS",
                               help="measure the load rate alone and during an analyst query of SECONDS")
    attacks = benches.add_parser("sink-attacks", help="the sink process's memory under analyst attacks (result bomb)",
                                 description="concurrent SELECT repeat('x', WIDTH) FROM numbers(ROWS) on POST /sql "
                                             "against a sink in a child process: its peak resident memory")
    attacks.add_argument("--concurrent", type=int, default=4)
    attacks.add_argument("--rows", type=int, default=900_000)
    attacks.add_argument("--width", type=int, default=1000)
    attacks.add_argument("--format", choices=("json", "jsoneachrow", "csv", "tsv", "pretty"), default="json")
    endpoint = benches.add_parser("sql-endpoint", help="the query overhead of the sink's ClickHouse interface and "
                                  "POST /sql against chDB directly (same statements, same run)")
    endpoint.add_argument("--count", type=int, default=50, help="runs of each statement each way")
    endpoint.add_argument("--rows", type=int, default=100_000, help="rows of the larger statement")
    from caliper_pipeline.bench import attacks as bench_attacks
    from caliper_pipeline.bench import e2e as bench_e2e
    from caliper_pipeline.bench import read_flood

    e2e = benches.add_parser("e2e", help="the whole pipeline under load: events/s, freshness, exact counts")
    e2e.set_defaults(handler=bench_e2e.bench_e2e_command)
    bench_e2e.add_bench_e2e_arguments(e2e)
    flood = benches.add_parser("read-flood", help="loading freshness and another tenant's reads while one "
                               "sender floods the read API")
    flood.set_defaults(handler=read_flood.read_flood_command)
    read_flood.add_read_flood_arguments(flood)
    attacks = benches.add_parser("attacks", help="other senders' latency while the gateway is attacked")
    attacks.set_defaults(handler=bench_attacks.bench_attacks_command)
    bench_attacks.add_bench_attacks_arguments(attacks)


def _add_loadgen(add: Add, text: str) -> None:
    from caliper_pipeline import loadgen

    loadgen.add_loadgen_arguments(add("loadgen", loadgen.loadgen_command, text))


def _add_soak(add: Add, text: str) -> None:
    from caliper_pipeline.bench import soak

    soak.add_soak_arguments(add("soak", soak.soak_command, text))


def _add_clients(add: Add, text: str) -> None:
    from caliper_pipeline import clients_command

    clients_command.add_clients_arguments(add("clients", clients_command.clients_command, text))


def _add_analysts(add: Add, text: str) -> None:
    from caliper_pipeline import analysts_command

    analysts_command.add_analysts_arguments(add("analysts", analysts_command.analysts_command, text))


LAZY_COMMANDS: dict[str, tuple[str, Callable[[Add, str], None]]] = {
    "clients": ("manage sender clients", _add_clients),
    "analysts": ("manage school credentials of the sink's SQL endpoints", _add_analysts),
    "bench": ("benchmarks that print figures", _add_bench),
    "loadgen": ("realistic traffic through the gateway", _add_loadgen),
    "soak": ("a steady rate for minutes; memory of every process", _add_soak),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    settings = Settings()
    for key in unknown_settings(os.environ):  # pydantic-settings would ignore it: say so
        log.warning("%s names no setting and is ignored (a typo, or a renamed setting?)", key)
    try:
        return int(args.handler(settings, args))
    except PipelineError as error:  # an error we raise on purpose says what is wrong: no traceback
        print(f"caliper-pipeline {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
