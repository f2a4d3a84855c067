"""``caliper-pipeline clients``: ``add`` never takes over an existing id, ``rotate`` issues a new secret to one,
and ``--json`` prints one machine-readable document (never a secret of ``list``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caliper_pipeline.cli import main
from caliper_pipeline.local.stack import DEMO_CLIENT_ID, demo_credentials
from caliper_pipeline.settings import LocalStackSettings, Settings
from gateway.clients import ClientRegistry
from gateway.errors import ClientExistsError
from gateway.settings import INGEST_SCOPE, GatewaySettings


@pytest.fixture
def clients_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "clients.json"
    monkeypatch.setenv("CALIPER_GATEWAY__CLIENTS_FILE", str(path))
    return path


def added(capsys: pytest.CaptureFixture[str], *arguments: str) -> dict[str, object]:
    assert main(["clients", "add", *arguments, "--json"]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_add_refuses_an_existing_id_and_leaves_the_client_as_it_was(clients_file: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    first = added(capsys, "--client-id", "sender-x", "--tenant", "school-a")
    before = clients_file.read_bytes()
    assert main(["clients", "add", "--client-id", "sender-x", "--tenant", "school-b"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "'sender-x' already exists" in err and "school-a" in err and "rotate" in err
    assert "Traceback" not in err
    assert clients_file.read_bytes() == before, "nothing written"
    registry = ClientRegistry(clients_file, refresh_seconds=0)
    client = registry.authenticate("sender-x", str(first["client_secret"]))
    assert client is not None and client.tenant == "school-a", "the sender's secret still works, in its tenant"


def test_add_refuses_a_revoked_id_too(tmp_path: Path) -> None:
    registry = ClientRegistry(tmp_path / "clients.json", refresh_seconds=0)
    registry.add("school-a", client_id="sender-x")
    registry.revoke("sender-x")
    with pytest.raises(ClientExistsError, match="already exists"):
        registry.add("school-a", client_id="sender-x")
    client = registry.get("sender-x")
    assert client is not None and client.revoked, "a revocation is not undone by adding the id again"


def test_rotate_issues_a_new_secret_keeping_tenant_scopes_and_rate(clients_file: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    first = added(capsys, "--client-id", "sender-x", "--tenant", "school-a", "--scope", INGEST_SCOPE,
                  "--rate-limit", "7", "--timezone", "America/Sao_Paulo")
    assert main(["clients", "rotate", "sender-x", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["client_secret"] != first["client_secret"]
    assert {k: v for k, v in rotated.items() if k != "client_secret"} == {
        k: v for k, v in first.items() if k != "client_secret"}
    assert rotated["scopes"] == [INGEST_SCOPE] and rotated["rate_limit_per_second"] == 7
    registry = ClientRegistry(clients_file, refresh_seconds=0)
    assert registry.authenticate("sender-x", str(first["client_secret"])) is None, "the old secret stops working"
    client = registry.authenticate("sender-x", rotated["client_secret"])
    assert client is not None and client.tenant == "school-a" and client.scopes == (INGEST_SCOPE,)
    assert main(["clients", "rotate", "sender-x"]) == 0
    assert "client_secret: " in capsys.readouterr().out


@pytest.mark.parametrize("revoke", [False, True])
def test_rotate_of_an_unknown_or_revoked_client_is_a_clear_error(clients_file: Path, revoke: bool,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    added(capsys, "--client-id", "sender-x", "--tenant", "school-a")
    if revoke:
        assert main(["clients", "revoke", "sender-x"]) == 0
        capsys.readouterr()
    before = clients_file.read_bytes()
    assert main(["clients", "rotate", "sender-x" if revoke else "nobody"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert ("'sender-x' is revoked" if revoke else "unknown client 'nobody'") in err
    assert clients_file.read_bytes() == before


def test_json_documents(clients_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = added(capsys, "--tenant", "school-a", "--rate-limit", "3")
    assert set(first) == {"client_id", "client_secret", "tenant", "timezone", "scopes", "rate_limit_per_second",
                          "revoked", "created_at"}
    assert str(first["client_id"]).startswith("school-a-") and first["timezone"] == "UTC"
    second = added(capsys, "--tenant", "school-b", "--client-id", "b-1")
    assert main(["clients", "revoke", "b-1"]) == 0
    capsys.readouterr()
    assert main(["clients", "list", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out)["clients"]
    assert [c["client_id"] for c in listed] == [first["client_id"], "b-1"]
    assert [c["revoked"] for c in listed] == [False, True]
    assert listed[0]["rate_limit_per_second"] == 3
    assert listed[1]["rate_limit_per_second"] == GatewaySettings().default_rate_limit_per_second, "the applied one"
    assert str(first["client_secret"]) not in out and str(second["client_secret"]) not in out
    assert "secret" not in out and "scrypt" not in out


def test_the_demo_client_gets_a_new_secret_when_its_file_is_gone(tmp_path: Path) -> None:
    settings = Settings(local=LocalStackSettings(home=tmp_path))
    client_id, secret = demo_credentials(settings)
    assert demo_credentials(settings) == (client_id, secret), "kept"
    (tmp_path / "demo-client.json").unlink()
    again_id, again = demo_credentials(settings)
    registry = ClientRegistry(settings.gateway.clients_file, refresh_seconds=0)
    assert again_id == client_id == DEMO_CLIENT_ID and again != secret
    assert registry.authenticate(client_id, again) is not None and registry.authenticate(client_id, secret) is None
