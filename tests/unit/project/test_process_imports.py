"""What each pipeline process loads: a command imports its own stage and the settings, never another stage's
machinery, the benches or the load generator (each costs start time and memory in every replica). Run in a fresh
interpreter, with the process's entry point replaced by a no-op so nothing starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import json, sys
import {module} as entry
async def started(*args, **kwargs): return None
entry.{function} = started if {coroutine} else (lambda *args, **kwargs: None)
from caliper_pipeline.cli import main
main([{command!r}])
print(json.dumps(sorted(sys.modules)))
"""
TOOLING = ("caliper_pipeline.bench", "caliper_pipeline.senders.loadgen", "caliper_pipeline.local.",
           "caliper_pipeline.senders.traffic", "caliper_pipeline.cli.analysts", "caliper_pipeline.cli.clients")
# per process: its entry point, and the top-level packages it must not import (beyond the settings the one
# composite Settings object reads from the environment: ``<package>.settings``)
PROCESSES = {
    "gateway": ("gateway.main", "run_gateway", {"sinks", "streams", "faust", "pyarrow", "chdb", "clickhouse_connect",
                                                "pandas", "numpy"}),
    "streams": ("streams.worker", "run_worker", {"sinks", "gateway.main", "pyarrow", "chdb", "clickhouse_connect",
                                                 "pandas"}),
    "sink": ("sinks.http", "run_sink", {"streams", "faust", "gateway.main", "pandas"}),
}


def imported_by(command: str) -> list[str]:
    module, function, _ = PROCESSES[command]
    coroutine = command == "sink"  # run_sink is awaited
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PROBE.format(module=module, function=function, command=command,
                                                                coroutine=coroutine)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules


@pytest.mark.parametrize("command", sorted(PROCESSES))
def test_a_process_imports_its_stage_and_the_settings_only(command: str) -> None:
    forbidden = PROCESSES[command][2]
    wrong = [name for name in imported_by(command)
             if name.startswith(TOOLING)
             or (any(name == package or name.startswith(f"{package}.") for package in forbidden)
                 and not name.endswith(".settings") and name not in ("sinks", "streams"))]
    assert wrong == [], f"caliper-pipeline {command} imports {wrong}"
