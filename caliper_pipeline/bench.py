"""``caliper-pipeline bench <component>``: benchmarks that print figures (never timed assertions in tests)."""

from __future__ import annotations

import argparse
import json

from caliper_pipeline.settings import Settings


def run_bench(settings: Settings, component: str, args: argparse.Namespace) -> int:
    if component == "gateway":
        from caliper_pipeline.bench_gateway import run_gateway_bench

        figures = run_gateway_bench(settings, args.seconds, args.concurrency)
    elif component == "schemas":
        from schemas.bench import run_codec_bench

        figures = run_codec_bench(args.count)
    elif component == "streams":
        from caliper_pipeline.bench_stages import run_streams_bench

        figures = run_streams_bench(settings, args.count)
    else:
        from caliper_pipeline.bench_stages import run_sink_bench

        figures = run_sink_bench(settings, args.count)
    print(json.dumps(figures, indent=2, default=str))
    return 0
