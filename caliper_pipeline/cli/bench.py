"""``caliper-pipeline bench <component>``: its arguments (registered only when the command line runs it)."""

from __future__ import annotations

import argparse

from caliper_pipeline.cli.command import Add
from caliper_pipeline.settings import Settings


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from caliper_pipeline.bench import run_bench

    return run_bench(settings, args.component, args)


def add_bench_command(add: Add, text: str) -> None:
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
