"""``caliper-pipeline sql``, ``erase``, ``replay``, ``renormalize`` and ``purge-kafka``: an operator's actions on a
running pipeline's data."""

from __future__ import annotations

import argparse
import asyncio

from caliper_pipeline.cli.command import Add
from caliper_pipeline.client.sink_client import FORMATS
from caliper_pipeline.settings import Settings
from schemas.errors import PipelineError
from schemas.reasons import ReasonCode


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.client.sink_client import SinkClient

    print(SinkClient.from_settings(settings).query(args.query, args.format).decode(), end="")
    return 0


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.ops.admin import erase_student_facts

    deleted = erase_student_facts(settings, args.tenant, args.student, args.requested_by)
    print(f"erased {deleted} rows of student {args.student!r} in tenant {args.tenant!r}")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.replay import replay

    if args.from_failed:
        from caliper_pipeline.ops.failed_replay import replay_failed

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
    from caliper_pipeline.ops.renormalize import renormalize

    bounds = [_moment_ms(args.from_time, "--from"), _moment_ms(args.to_time, "--to")]
    if None not in bounds and bounds[0] >= bounds[1]:  # type: ignore[operator]
        raise PipelineError(f"--from {args.from_time} is not before --to {args.to_time}: the range is empty")
    summary = asyncio.run(renormalize(settings, args.tenant, bounds[0], bounds[1], dry_run=args.dry_run,
                                      progress=not args.no_progress, processes=args.processes))
    print("\n".join(summary.lines()))
    return 0


def _processes(text: str) -> int:
    """``--processes``: a whole number from 1 to 64."""
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes from 1 to 64")
    return int(text)


def _moment_ms(text: str | None, option: str) -> int | None:
    from schemas.coerce import time_to_ms

    if text is None:
        return None
    moment = time_to_ms(text)
    if moment is None:
        raise PipelineError(f"{option} must be an ISO 8601 date-time (e.g. 2026-03-01T00:00:00Z), got {text!r}")
    return moment


def cmd_purge_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.ops.purge import PurgeError, purge_kafka
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


def add_operation_commands(add: Add) -> None:
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
    renorm.add_argument("--processes", type=_processes, metavar="N",
                        help="processes normalizing the events, 1 to 64 (default: one per core)")

    purge = add("purge-kafka", cmd_purge_kafka, "delete the pipeline's Kafka records older than a moment")
    purge.add_argument("--before", required=True, help="ISO 8601 date-time, e.g. 2026-11-30T12:00:00Z")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    purge.add_argument("--force", action="store_true",
                       help="also delete records the next stage has not committed yet (loses them)")
