"""The pytest plugin as a sender uses it: the README's sender test (and an async one), run by pytest in a directory
of its own (a subprocess on this virtualenv), passes against the real stack (local broker, chDB, streams worker,
gateway)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from caliper_pipeline.local.broker import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.stack]  # the README test starts the stack

SECTION = "## Testing your sender app"


def readme_sender_test() -> str:
    """The first python block of the README's section on testing a sender app."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's sender test is missing"
    return match.group(1)


def plugin_option() -> list[str]:
    """``-p caliper_pipeline.testing``: loads the plugin where the package is not installed, and is a no-op where
    its entry point (of the same name) already did."""
    return ["-p", "caliper_pipeline.testing"]


def run_pytest(directory: Path, *options: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    python_path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{python_path}" if python_path else str(REPO_ROOT)}
    env.pop("CALIPER_KAFKA__BOOTSTRAP_SERVERS", None)  # the fixture's own broker, unless the suite names one
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *options,
                           str(directory)], cwd=directory, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


# the fixture's API from an async test (its calls run their own event loop in a thread there), and the tenant's
# time zone new_client was given, in the gateway's clients file
ASYNC_SENDER_TEST = '''
import pytest

@pytest.mark.asyncio
async def test_the_api_from_an_async_test(caliper_pipeline):
    client_id, secret = caliper_pipeline.new_client("tokyo-school", timezone="Asia/Tokyo")
    assert caliper_pipeline.token(client_id, secret).count(".") == 2
    assert caliper_pipeline.sql("SELECT 1 AS one") == [{"one": 1}]
    from gateway.clients import ClientRegistry
    assert ClientRegistry(caliper_pipeline.pipeline.clients_file).timezone_of("tokyo-school") == "Asia/Tokyo"
'''


def test_the_readme_sender_test_passes_against_the_stack(tmp_path: Path) -> None:
    (tmp_path / "test_sender.py").write_text(readme_sender_test())
    (tmp_path / "test_async_sender.py").write_text(ASYNC_SENDER_TEST)
    result = run_pytest(tmp_path, *plugin_option(), "--durations=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
