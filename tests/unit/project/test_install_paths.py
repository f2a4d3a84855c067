"""Where an installed copy keeps its state and caches: in a source checkout ``var/`` and ``.cache/`` (``make`` and
CI rely on them), else per-user XDG directories, whatever the working directory. And the files the local stack
needs outside Python (the Kafka pom, log4j2, migrations, Avro schemas) are package data the wheel carries."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

import caliper_pipeline.settings as settings_module
from caliper_pipeline.local.broker import KAFKA_FILES
from caliper_pipeline.settings import LocalStackSettings, Settings, user_dir
from schemas.version import DISTRIBUTION, checkout_root

ROOT = Path(__file__).resolve().parents[3]
STATE_VARIABLES = ("LOCAL__HOME", "LOCAL__CACHE_DIR", "GATEWAY__CLIENTS_FILE", "CLICKHOUSE__DATA_PATH")


def test_this_tree_is_a_checkout_and_site_packages_is_not(tmp_path: Path) -> None:
    assert checkout_root() == ROOT
    assert checkout_root(tmp_path) is None, "no pyproject.toml"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "another-project"\n')
    assert checkout_root(tmp_path) is None, "a pyproject.toml of another project"
    (tmp_path / "pyproject.toml").write_text("not toml [")
    assert checkout_root(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "{DISTRIBUTION}"\nversion = "1"\n')
    assert checkout_root(tmp_path) == tmp_path


def test_in_a_checkout_home_and_cache_stay_var_and_dot_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in STATE_VARIABLES:
        monkeypatch.delenv(f"CALIPER_{name}", raising=False)
    local = Settings().local
    assert (local.home, local.cache_dir) == (Path("var"), Path(".cache"))


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """As when imported from site-packages: no checkout around the packages."""
    monkeypatch.setattr(settings_module, "checkout_root", lambda: None)
    for name in STATE_VARIABLES:
        monkeypatch.delenv(f"CALIPER_{name}", raising=False)


def test_installed_state_and_cache_live_in_the_xdg_directories(installed: None, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings()
    home = tmp_path / "data" / "caliper-pipeline"
    assert settings.local.home == home and settings.local.cache_dir == tmp_path / "cache" / "caliper-pipeline"
    derived = {"clients": settings.gateway.clients_file, "chdb": settings.clickhouse.data_path,
               "kafka": settings.local.kafka_data_dir, "cluster": settings.local.kafka_cluster_dir,
               "logs": settings.local.log_dir, "streams": settings.local.streams_data_dir,
               "bench": settings.local.bench_dir, "token": settings.local.secret_file("sink-admin-token")}
    assert all(path.is_absolute() and path.is_relative_to(home) for path in derived.values()), derived


def test_installed_defaults_without_xdg_variables_are_under_the_users_home(installed: None, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG specification: a relative path is ignored
    local = LocalStackSettings()
    assert local.home == tmp_path / ".local" / "share" / "caliper-pipeline"
    assert local.cache_dir == tmp_path / ".cache" / "caliper-pipeline"
    assert user_dir("XDG_DATA_HOME", ".local/share", {"XDG_DATA_HOME": ""}) == local.home


def test_installed_explicit_settings_still_win(installed: None, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CALIPER_LOCAL__CACHE_DIR", str(tmp_path / "jars"))
    settings = Settings()
    assert settings.local.cache_dir == tmp_path / "jars"
    assert settings.gateway.clients_file == tmp_path / "home" / "clients.json"


def test_every_data_file_of_the_packages_is_package_data() -> None:
    """A file the packages read at run time (not Python) is named by ``[tool.setuptools.package-data]``, or the
    wheel leaves it out."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = [path for package in ("gateway", "schemas", "streams", "sinks", "caliper_pipeline")
            for path in (ROOT / package).rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in path.parts]
    assert {"pom.xml", "log4j2.xml"} <= {p.name for p in data}
    missing = [str(p.relative_to(ROOT)) for p in data
               if not any(fnmatch(str(p.relative_to(ROOT / p.relative_to(ROOT).parts[0])), pattern)
                          for pattern in patterns.get(p.relative_to(ROOT).parts[0], []))]
    assert not missing, missing
    assert (KAFKA_FILES / "pom.xml").is_file() and (KAFKA_FILES / "log4j2.xml").is_file()
