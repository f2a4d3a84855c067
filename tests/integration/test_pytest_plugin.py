"""The pytest plugin as a sender uses it: the README's sender test, run by pytest in a directory of its own (a
subprocess on this virtualenv), passes against the real stack (local broker, chDB, streams worker, gateway)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from caliper_pipeline.local_kafka import REPO_ROOT

pytestmark = pytest.mark.integration

SECTION = "## Testing your sender app"


def readme_sender_test() -> str:
    """The first python block of the README's section on testing a sender app."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's sender test is missing"
    return match.group(1)


def plugin_option() -> list[str]:
    """``-p caliper_pipeline.testing`` unless this environment already has the entry point (pytest refuses the
    module registered twice)."""
    installed = any(entry.name == "caliper_pipeline" for entry in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "caliper_pipeline.testing"]


def run_pytest(directory: Path, *options: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    python_path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{python_path}" if python_path else str(REPO_ROOT)}
    env.pop("CALIPER_KAFKA__BOOTSTRAP_SERVERS", None)  # the fixture's own broker, unless the suite names one
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *options,
                           str(directory)], cwd=directory, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_the_readme_sender_test_passes_against_the_stack(tmp_path: Path) -> None:
    (tmp_path / "test_sender.py").write_text(readme_sender_test())
    result = run_pytest(tmp_path, *plugin_option(), "--durations=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout
