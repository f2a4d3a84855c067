"""``caliper-pipeline bench sink-attacks``: what an analyst's attack costs the sink process, measured.

``sink_result_bomb``: ``concurrent`` analysts send at once ``SELECT repeat('x', WIDTH) FROM numbers(ROWS)`` to
``POST /sql`` (a constant column: small inside the engine, ``ROWS x WIDTH`` bytes once written). The sink runs in
a child process of its own (embedded chDB in a temporary directory, the migrations, the default query limits,
the HTTP endpoints on 127.0.0.1); the callers read and drop the answers. Figures: the child's resident memory
before the attack and its peak (``VmHWM``) during it, each answer's status and size.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

ATTACK = "SELECT repeat('x', {width}) AS x FROM numbers({rows})"


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _attack(directory: Path, concurrent: int, rows: int, width: int, fmt: str) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web
    from pydantic import SecretStr

    from schemas.kafka import KafkaSettings
    from sinks.clickhouse import connect
    from sinks.http import SinkProcess, build_app
    from sinks.loader import SinkLoader
    from sinks.migrations import Layout, apply_migrations
    from sinks.queries import AnalystQueries
    from sinks.settings import ClickHouseSettings, SinkSettings

    token = "bench-analyst-token"
    clickhouse = ClickHouseSettings(data_path=directory / "chdb")
    settings = SinkSettings(analyst_token=SecretStr(token))
    writer = connect(clickhouse, create_database=True)
    apply_migrations(writer, Layout(clickhouse.database))
    queries = AnalystQueries(clickhouse, settings.queries)
    probe = connect(clickhouse)
    loader = SinkLoader(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), writer)
    runner = web.AppRunner(build_app(SinkProcess(settings, clickhouse, writer, loader, queries, probe)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    statement = ATTACK.format(width=width, rows=rows)

    async def one(session: aiohttp.ClientSession) -> dict[str, Any]:
        started = time.monotonic()
        async with session.post(f"http://127.0.0.1:{port}/sql", params={"format": fmt}, data=statement,
                                headers={"Authorization": f"Bearer {token}"}) as response:
            size = 0
            async for chunk in response.content.iter_chunked(1 << 20):
                size += len(chunk)
            return {"status": response.status, "bytes": size, "seconds": round(time.monotonic() - started, 2)}

    await asyncio.to_thread(queries.run_blocking, "SELECT 1", "JSON")  # the pool's first connection, not counted
    before = _memory_kib("VmRSS")
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            answers = await asyncio.gather(*(one(session) for _ in range(concurrent)))
    finally:
        await runner.cleanup()
        queries.close()
        probe.close()
        writer.close()
    return {"statement": statement, "format": fmt, "concurrent": concurrent,
            "max_result_bytes": settings.queries.max_result_bytes, "rss_before_mib": round(before / 1024),
            "peak_rss_mib": round(_memory_kib("VmHWM") / 1024), "answers": answers}


def _child(out: Any, concurrent: int, rows: int, width: int, fmt: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sink-attacks-") as directory:
        out.put(asyncio.run(_attack(Path(directory), concurrent, rows, width, fmt)))


def sink_result_bomb(concurrent: int = 4, rows: int = 900_000, width: int = 1000, fmt: str = "json") -> dict[str, Any]:
    """Figures of ``concurrent`` result bombs at once against a sink in a child process (see the module)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_child, args=(out, concurrent, rows, width, fmt))
    child.start()
    try:
        figures: dict[str, Any] = out.get(timeout=900)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    return figures


def run_sink_attacks_bench(args: Any) -> dict[str, Any]:
    return {"sink_result_bomb": sink_result_bomb(args.concurrent, args.rows, args.width, args.format)}
