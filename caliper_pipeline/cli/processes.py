"""``caliper-pipeline gateway``, ``streams`` and ``sink``: the pipeline's processes (each imports only its stage)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from caliper_pipeline.cli.command import Add
from caliper_pipeline.settings import Settings


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


def add_process_commands(add: Add) -> None:
    add("gateway", cmd_gateway, "run the HTTP gateway")
    add("streams", cmd_streams, "run a stream worker (normalizers)")
    add("sink", cmd_sink, "run the ClickHouse sink (and its SQL endpoint)")
