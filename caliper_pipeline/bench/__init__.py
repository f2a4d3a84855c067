"""``caliper-pipeline bench <component>``: benchmarks that print figures (never timed assertions in tests).

Every benchmark lives in this package, none in the data-path packages: ``gateway`` (against ``bare_forwarder``,
driven by ``load``), ``gateway-steps`` (the gateway's CPU per event, step by step), ``codecs`` (the gateway's
publishing CPU per event for each record-batch compression), ``schemas`` (the codec), ``streams`` and ``sink``
(each stage alone, ``stages``), ``ceilings`` (each stage next to its bare baseline in one
run), ``e2e`` (the whole pipeline under load), ``soak`` (memory over minutes), ``renormalize`` (re-deriving
archived events), ``attacks`` (other senders' latency while the gateway is attacked), ``read-flood``
(loading under a flood of reads), ``sink-attacks`` (the sink's memory under an analyst's attack) and
``sql-endpoint`` (what the sink's SQL endpoints add to a query against chDB directly).
"""

from __future__ import annotations

import argparse
import json

from caliper_pipeline.settings import Settings


def run_bench(settings: Settings, component: str, args: argparse.Namespace) -> int:
    if component == "gateway":
        from caliper_pipeline.bench.gateway_bench import run_gateway_bench

        figures = run_gateway_bench(settings, args.seconds, args.concurrency)
    elif component == "gateway-steps":
        from caliper_pipeline.bench.gateway_steps import run_gateway_steps_bench

        figures = run_gateway_steps_bench()
    elif component == "codecs":
        from caliper_pipeline.bench.codecs import run_codecs_bench

        figures = run_codecs_bench(settings, args.count, args.concurrency)
    elif component == "schemas":
        from caliper_pipeline.bench.schemas_bench import run_codec_bench

        figures = run_codec_bench(args.count)
    elif component == "streams":
        from caliper_pipeline.bench.stages import run_streams_bench

        figures = run_streams_bench(settings, args.count)
    elif component == "ceilings":
        from caliper_pipeline.bench.ceilings import run_ceilings_bench

        figures = run_ceilings_bench(settings, events=args.count, rows=args.rows, seconds=args.seconds,
                                     concurrency=args.concurrency,
                                     stages=tuple(stage.strip() for stage in args.stages.split(",") if stage.strip()))
    elif component == "renormalize":
        import tempfile
        from pathlib import Path

        from caliper_pipeline.bench.renormalize import run_renormalize_bench

        figures = run_renormalize_bench(settings, args.count, Path(tempfile.mkdtemp(prefix="bench-renormalize-")))
    elif component == "sql-endpoint":
        from caliper_pipeline.bench.sql_endpoint import run_sql_endpoint_bench

        figures = run_sql_endpoint_bench(args.count, args.rows)
    elif component == "sink-attacks":
        from caliper_pipeline.bench.sink_attacks import run_sink_attacks_bench

        figures = run_sink_attacks_bench(args)
    else:
        from caliper_pipeline.bench.stages import run_sink_bench

        figures = run_sink_bench(settings, args.count, heavy_query_seconds=args.heavy_query)
    print(json.dumps(figures, indent=2, default=str))
    return 0
