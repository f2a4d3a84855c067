"""One home for a stack's state: ``CALIPER_LOCAL__HOME`` moves every file the stack keeps (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from caliper_pipeline.admin import local_admin_token, local_email_hash_key
from caliper_pipeline.settings import Settings


def state_paths(settings: Settings) -> dict[str, Path]:
    local = settings.local
    return {
        "kafka": local.kafka_data_dir, "logs": local.log_dir, "clients": settings.gateway.clients_file,
        "chdb": settings.clickhouse.data_path, "streams": local.streams_data_dir,
        "admin token": local.secret_file("sink-admin-token"),
    }


def test_two_homes_share_no_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GATEWAY__CLIENTS_FILE", "CLICKHOUSE__DATA_PATH", "LOCAL__HOME"):
        monkeypatch.delenv(f"CALIPER_{name}", raising=False)
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path / "one"))
    one = Settings()
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path / "two"))
    monkeypatch.setenv("CALIPER_GATEWAY__PORT", "9999")  # another gateway setting does not pin the clients file
    two = Settings()
    for name, path in state_paths(one).items():
        assert path.is_relative_to(tmp_path / "one"), (name, path)
    for name, path in state_paths(two).items():
        assert path.is_relative_to(tmp_path / "two"), (name, path)
    assert set(state_paths(one).values()).isdisjoint(state_paths(two).values())
    assert two.gateway.port == 9999


def test_default_home_keeps_the_documented_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY__CLIENTS_FILE", "CLICKHOUSE__DATA_PATH", "LOCAL__HOME"):
        monkeypatch.delenv(f"CALIPER_{name}", raising=False)
    settings = Settings()
    assert settings.gateway.clients_file == Path("var/clients.json")
    assert settings.clickhouse.data_path == Path("var/chdb")


def test_an_explicit_path_wins_over_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CALIPER_GATEWAY__CLIENTS_FILE", str(tmp_path / "elsewhere" / "clients.json"))
    monkeypatch.setenv("CALIPER_CLICKHOUSE__DATA_PATH", str(tmp_path / "elsewhere" / "chdb"))
    settings = Settings()
    assert settings.gateway.clients_file == tmp_path / "elsewhere" / "clients.json"
    assert settings.clickhouse.data_path == tmp_path / "elsewhere" / "chdb"
    assert settings.local.kafka_data_dir == tmp_path / "home" / "kafka"


def test_generated_secrets_live_under_home_readable_by_the_owner_only(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CALIPER_SINK__ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("CALIPER_STREAMS__EMAIL_HASH_KEY", raising=False)
    settings = Settings()
    token = local_admin_token(settings)
    assert local_admin_token(settings) == token, "generated once, then kept"
    local_email_hash_key(settings)
    files = sorted(p for p in (tmp_path / "home").iterdir() if p.is_file())
    assert [p.name for p in files] == ["email-hash-key", "sink-admin-token"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
