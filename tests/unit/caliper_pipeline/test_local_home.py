"""One home for a stack's state: ``CALIPER_LOCAL__HOME`` moves every file the stack keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from caliper_pipeline.local.stack_secrets import StackSecrets, local_admin_token
from caliper_pipeline.settings import LocalStackSettings, Settings
from gateway.settings import GatewaySettings


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
    settings = Settings()
    token = local_admin_token(settings)
    assert local_admin_token(settings) == token, "generated once, then kept"
    files = sorted(p for p in (tmp_path / "home").iterdir() if p.is_file())
    assert [p.name for p in files] == ["sink-admin-token"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)


def test_up_keeps_one_secret_of_each_kind_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GATEWAY__JWT_SECRET", "SINK__ANALYST_TOKEN", "SINK__ADMIN_TOKEN", "SINK__READER_TOKEN",
                 "PRIVACY__EMAIL_HASH_KEY", "PRIVACY__STUDENT_KEY"):
        monkeypatch.delenv(f"CALIPER_{name}", raising=False)
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path / "home"))
    settings = Settings()
    kept = StackSecrets.kept(settings)
    assert StackSecrets.kept(settings) == kept, "a restart of up keeps the tokens clients already hold"
    values = [kept.jwt_secret, kept.analyst_token, kept.admin_token, kept.reader_token, kept.email_hash_key,
              kept.student_key]
    assert len(set(values)) == 6 and all(len(v) >= 32 for v in values)
    assert kept.jwt_secret != GatewaySettings().jwt_secret.get_secret_value(), "never the development secret"
    files = {p.name: p for p in (tmp_path / "home").iterdir()}
    assert set(files) == {"jwt-secret", "sink-analyst-token", "sink-admin-token", "sink-reader-token",
                          "email-hash-key", "student-key"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files.values())
    assert files["sink-analyst-token"].read_text() == kept.analyst_token
    assert "***" in repr(kept) and kept.analyst_token not in repr(kept)


def test_each_process_gets_only_its_own_secrets(tmp_path: Path) -> None:
    secrets = StackSecrets.generate(Settings(local=LocalStackSettings(home=tmp_path)))
    assert not any(tmp_path.iterdir()), "per-run secrets are never written"
    assert StackSecrets.generate(Settings(local=LocalStackSettings(home=tmp_path))) != secrets
    gateway, sink, streams = (secrets.env_for(name) for name in ("gateway", "sink", "streams"))
    # the gateway reads the sink's read API with the reader token: never an analyst's (events as sent)
    assert gateway == {"CALIPER_GATEWAY__JWT_SECRET": secrets.jwt_secret,
                       "CALIPER_SINK__READER_TOKEN": secrets.reader_token}
    assert sink["CALIPER_SINK__ADMIN_TOKEN"] == secrets.admin_token
    assert sink["CALIPER_SINK__READER_TOKEN"] == secrets.reader_token
    assert secrets.jwt_secret not in sink.values() and secrets.jwt_secret not in streams.values()
    assert secrets.admin_token not in gateway.values() and secrets.admin_token not in streams.values()


def test_a_configured_secret_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALIPER_LOCAL__HOME", str(tmp_path))
    monkeypatch.setenv("CALIPER_GATEWAY__JWT_SECRET", "configured-signing-secret-0123456789abcdef")
    assert StackSecrets.kept(Settings()).jwt_secret == "configured-signing-secret-0123456789abcdef"
    assert not (tmp_path / "jwt-secret").exists()


def test_the_streams_worker_keeps_faust_data_under_home(tmp_path: Path) -> None:
    local = LocalStackSettings(home=tmp_path / "home")
    env = local.process_env("streams")
    assert Path(env["FAUST_DATADIR"]).parent == (tmp_path / "home" / "streams").resolve()
    assert (tmp_path / "home" / "streams").is_dir(), "faust creates only the last level"
    assert local.process_env("sink") == local.process_env("gateway") == {}
