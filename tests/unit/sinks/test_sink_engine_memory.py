"""The embedded engine starts with bounded caches (ClickHouse's own defaults are a server's: 5 GiB each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sinks.settings import EmbeddedEngineSettings

# the engine is one per process, started by the first client: a fresh interpreter starts its own
PROBE = """
import json, sys
from pathlib import Path
from sinks.clickhouse import connect
from sinks.settings import ClickHouseSettings, EmbeddedEngineSettings
engine = EmbeddedEngineSettings(**json.loads(sys.argv[2]))
clickhouse = connect(ClickHouseSettings(data_path=Path(sys.argv[1]), engine=engine), create_database=True)
other = connect(ClickHouseSettings(data_path=Path(sys.argv[1]), engine=engine))  # a second client: same engine
_, rows = other.query_rows("SELECT name, value FROM system.server_settings WHERE name IN ('mark_cache_size', "
                           "'primary_index_cache_size', 'index_mark_cache_size', 'compiled_expression_cache_size', "
                           "'query_condition_cache_size', 'max_server_memory_usage')")
print(json.dumps({name: int(value) for name, value in rows}))
"""


def engine_server_settings(tmp_path: Path, **engine: int) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "chdb"), json.dumps(engine)],
                          capture_output=True, text=True, timeout=300, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_embedded_engine_caches_are_bounded_by_default(tmp_path: Path) -> None:
    defaults = EmbeddedEngineSettings()
    found = engine_server_settings(tmp_path)
    assert found["mark_cache_size"] == defaults.mark_cache_bytes == 64 << 20
    assert found["primary_index_cache_size"] == defaults.primary_index_cache_bytes
    assert found["index_mark_cache_size"] == defaults.index_mark_cache_bytes
    assert found["compiled_expression_cache_size"] == defaults.compiled_expression_cache_bytes
    assert found["query_condition_cache_size"] == defaults.query_condition_cache_bytes


def test_the_embedded_engine_takes_its_bounds_from_the_settings(tmp_path: Path) -> None:
    found = engine_server_settings(tmp_path, mark_cache_bytes=8 << 20, max_memory_bytes=3 << 30)
    assert found["mark_cache_size"] == 8 << 20
    assert found["max_server_memory_usage"] == 3 << 30
