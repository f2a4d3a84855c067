"""A wheel of the project, installed in a fresh virtualenv, works from any directory: it carries the files the
local stack needs besides Python (the Kafka pom and log4j2 configuration, the migrations, the Avro schemas), and
its console script, started outside the checkout, keeps its state in ``$XDG_DATA_HOME/caliper-pipeline`` and the
Kafka jars in ``$XDG_CACHE_HOME/caliper-pipeline``.

The virtualenv is fresh (no system site-packages) and holds the wheel alone (``pip install --no-deps``); its
dependencies come from the shared test virtualenv's site-packages, appended to ``sys.path`` by a ``.pth`` file
written after the install. That keeps the test fast and offline (no dependency is downloaded again) while the
project's own code, data files and console script are the wheel's: the ``.pth`` line only appends a directory, so
the editable install of the checkout found there is never activated, and the venv's own site-packages comes first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from test_pytest_plugin import readme_sender_test

from caliper_pipeline.local.broker import KafkaDistribution

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gateway", "schemas", "streams", "sinks", "caliper_pipeline")
RESOLVED = """
import json, caliper_pipeline
from caliper_pipeline.local.broker import KAFKA_FILES
from caliper_pipeline.settings import Settings
from schemas.version import checkout_root
s = Settings()
print(json.dumps({"package": caliper_pipeline.__file__, "checkout": str(checkout_root()), "home": str(s.local.home),
                  "cache": str(s.local.cache_dir), "clients": str(s.gateway.clients_file),
                  "chdb": str(s.clickhouse.data_path), "pom": str(KAFKA_FILES / "pom.xml")}))
"""


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, check=False,
                            **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (a build in the checkout would reuse its stale ``build/``)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source])
    (built,) = dist.glob("caliper_pipeline-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", root])
    python = root / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel])
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory outside the checkout and an environment without this test run's PYTHONPATH, CALIPER_
    settings or XDG directories (those point at temporary directories)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CALIPER_", "XDG_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_CACHE_HOME": str(tmp_path / "xdg-cache")}
    return cwd, env


def test_the_wheel_carries_the_local_stacks_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"caliper_pipeline/kafka/pom.xml", "caliper_pipeline/kafka/log4j2.xml"}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "sinks" / "migrations").glob("*.sql")}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "schemas" / "avro").rglob("*.avsc")}
    assert len(expected) > 10 and expected <= names, sorted(expected - names)
    print("\n".join(sorted(n for n in names if not n.endswith(".py"))))


def test_the_installed_script_keeps_state_and_jars_in_the_xdg_directories(
        venv: Path, outside: tuple[Path, dict[str, str]], kafka_distribution: KafkaDistribution) -> None:
    cwd, env = outside
    home = Path(env["XDG_DATA_HOME"]) / "caliper-pipeline"
    resolved = json.loads(run([venv / "bin" / "python", "-c", RESOLVED], cwd=cwd, env=env).stdout)
    assert Path(resolved["package"]).is_relative_to(venv), "the wheel's code, not the checkout's"
    assert resolved["checkout"] == "None" and Path(resolved["pom"]).is_file()
    assert resolved["home"] == str(home)
    assert resolved["cache"] == str(Path(env["XDG_CACHE_HOME"]) / "caliper-pipeline")
    assert (resolved["clients"], resolved["chdb"]) == (str(home / "clients.json"), str(home / "chdb"))

    script = venv / "bin" / "caliper-pipeline"
    added = json.loads(run([script, "clients", "add", "--tenant", "school-a", "--json"], cwd=cwd, env=env).stdout)
    assert added["client_id"] in json.loads((home / "clients.json").read_text())["clients"]

    libs = kafka_distribution.install()  # the jars this test run already uses (fetched once by `make`)
    given = {**env, "CALIPER_LOCAL__CACHE_DIR": str(kafka_distribution.cache_dir)}
    installed = run([script, "kafka", "--install-only"], cwd=cwd, env=given).stdout
    assert str(libs) in installed
    assert sorted(p.name for p in cwd.iterdir()) == [], "nothing written in the working directory"


def test_the_installed_script_fetches_kafka_with_the_wheels_pom(
        venv: Path, outside: tuple[Path, dict[str, str]], kafka_distribution: KafkaDistribution) -> None:
    """``kafka --install-only`` into an empty per-user cache: mvn runs on the pom inside the wheel. Maven's own
    repository (~/.m2) already holds the jars once any run fetched them, so nothing is downloaded."""
    version = kafka_distribution.version
    if shutil.which("mvn") is None or not (Path.home() / ".m2" / "repository" / "org" / "apache" / "kafka" /
                                          "kafka_2.13" / version).is_dir():
        pytest.skip(f"needs mvn and Kafka {version} in ~/.m2 (to stay offline)")
    cwd, env = outside
    output = run([venv / "bin" / "caliper-pipeline", "kafka", "--install-only"], cwd=cwd, env=env).stdout
    libs = Path(env["XDG_CACHE_HOME"]) / "caliper-pipeline" / f"kafka-{version}" / "libs"
    assert str(libs) in output and (libs / f"kafka_2.13-{version}.jar").is_file() and (libs / ".complete").exists()
    assert KafkaDistribution(version, libs.parents[1]).is_installed()
    assert sorted(p.name for p in cwd.iterdir()) == []


def test_the_installed_wheels_pytest_plugin_runs_the_readme_sender_test(
        venv: Path, outside: tuple[Path, dict[str, str]], kafka_distribution: KafkaDistribution) -> None:
    """The wheel's ``pytest11`` entry point: pytest in the venv, without ``-p``, finds the ``caliper_pipeline.testing``
    fixture, and the README's sender test passes against the stack the installed package starts."""
    cwd, env = outside
    (cwd / "test_sender.py").write_text(readme_sender_test())
    kafka_distribution.install()  # the jars this test run already uses
    given = {**env, "CALIPER_LOCAL__CACHE_DIR": str(kafka_distribution.cache_dir)}
    python = venv / "bin" / "python"
    entry = json.loads(run([python, "-c", "import json; from importlib import metadata; print(json.dumps([(e.value, "
                            "str(e.dist.locate_file(''))) for e in metadata.entry_points(group='pytest11') "
                            "if e.name == 'caliper_pipeline.testing']))"], cwd=cwd, env=given).stdout)
    assert [value for value, _ in entry] == ["caliper_pipeline.testing"], entry
    assert Path(entry[0][1]).is_relative_to(venv), "the wheel's entry point, not the checkout's"
    result = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=1", cwd], cwd=cwd, env=given)
    assert "1 passed" in result.stdout, result.stdout
