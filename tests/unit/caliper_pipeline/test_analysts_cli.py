"""``caliper-pipeline analysts``: a school credential's secret is shown once and stored hashed, an id is added once,
a revocation is seen by a running sink's registry without a restart, and the server DDL (a ClickHouse user with a
row policy) parses on the real engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from caliper_pipeline.cli import main
from sinks.analysts import (
    OPERATOR,
    AnalystRegistry,
    authenticate,
    authenticate_bearer,
    server_revoke_ddl,
    server_user_ddl,
    tenant_filters,
)
from sinks.clickhouse import ClickHouse, map_literal
from sinks.errors import AnalystExistsError, InvalidAnalystError


@pytest.fixture
def analysts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "analysts.json"
    monkeypatch.setenv("CALIPER_SINK__ANALYSTS_FILE", str(path))
    monkeypatch.delenv("CALIPER_CLICKHOUSE__HOST", raising=False)
    return path


def added(capsys: pytest.CaptureFixture[str], *arguments: str) -> dict[str, object]:
    assert main(["analysts", "add", *arguments, "--json"]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_add_shows_the_secret_once_and_stores_it_hashed(analysts_file: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first = added(capsys, "--tenant", "school-b", "--tenant", "school-a", "--tenant", "school-a", "--name", "Rede X")
    assert set(first) == {"analyst_id", "name", "tenants", "revoked", "created_at", "secret", "bearer_token"}
    assert first["tenants"] == ["school-a", "school-b"] and first["name"] == "Rede X"
    assert first["bearer_token"] == f"{first['analyst_id']}:{first['secret']}"
    stored = analysts_file.read_text()
    assert str(first["secret"]) not in stored and "scrypt$" in stored
    assert os.stat(analysts_file).st_mode & 0o777 == 0o600
    assert main(["analysts", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["analysts"][0]["tenants"] == ["school-a", "school-b"]
    assert str(first["secret"]) not in out and "scrypt" not in out and "secret" not in out
    registry = AnalystRegistry(analysts_file)
    found = authenticate_bearer(registry, "operator-token", str(first["bearer_token"]))
    assert found is not None and found.tenants == frozenset({"school-a", "school-b"})


def test_add_refuses_an_existing_id_revoked_too(analysts_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = added(capsys, "--id", "net-1", "--tenant", "school-a")
    before = analysts_file.read_bytes()
    assert main(["analysts", "add", "--id", "net-1", "--tenant", "school-c"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "'net-1' already exists" in err and "Traceback" not in err
    assert analysts_file.read_bytes() == before, "nothing written"
    assert main(["analysts", "revoke", "net-1"]) == 0
    with pytest.raises(AnalystExistsError):
        AnalystRegistry(analysts_file).add(["school-c"], analyst_id="net-1")
    assert authenticate(AnalystRegistry(analysts_file), "", "net-1", str(first["secret"])) is None
    assert main(["analysts", "revoke", "nobody"]) == 1


@pytest.mark.parametrize(("tenants", "analyst_id"), [([], None), ([""], None), ([" a"], None), (["a\n"], None),
                                                     (["a"], "has:colon"), (["a"], "-leading"), (["a"], "x" * 65)])
def test_a_credential_that_cannot_be_is_refused_naming_the_field(tmp_path: Path, tenants: list[str],
                                                                 analyst_id: str | None) -> None:
    with pytest.raises(InvalidAnalystError) as refused:
        AnalystRegistry(tmp_path / "analysts.json").add(tenants, analyst_id=analyst_id)
    assert refused.value.field == ("id" if analyst_id else "tenant")


def test_a_revocation_is_seen_by_a_running_registry_within_its_refresh(tmp_path: Path) -> None:
    """The sink's registry re-reads the file when it changed: no restart (here without the one-second wait)."""
    running = AnalystRegistry(tmp_path / "analysts.json", refresh_seconds=0)
    _, secret = AnalystRegistry(tmp_path / "analysts.json").add(["school-a"], analyst_id="net-1")
    assert running.verify("net-1", secret) is not None  # verified once: later calls skip the scrypt
    AnalystRegistry(tmp_path / "analysts.json").revoke("net-1")
    assert running.verify("net-1", secret) is None
    assert running.verify("net-1", secret + "x") is None


def test_the_operator_token_reads_every_tenant_and_an_empty_one_nothing(tmp_path: Path) -> None:
    registry = AnalystRegistry(tmp_path / "analysts.json")
    assert authenticate(registry, "operator-token", None, "operator-token") is OPERATOR
    assert authenticate(registry, "operator-token", "", "operator-token") is OPERATOR
    assert authenticate(registry, "", None, "") is None
    assert authenticate(registry, "operator-token", None, "operator-tokem") is None


def test_tenant_filters_quote_every_tenant(tmp_path: Path) -> None:
    text = map_literal(tenant_filters({"learning_facts": True, "sink_rejects": False}, "learning",
                                      frozenset({"o'brien", "a\\b"})))
    assert text == ("{'learning.learning_facts': 'tenant IN (\\'a\\\\\\\\b\\', \\'o\\\\\\'brien\\')', "
                    "'learning.sink_rejects': '0'}")


def test_the_server_ddl_parses_on_the_engine(target: ClickHouse) -> None:
    """chDB runs no access management (CREATE USER answers ACCESS_DENIED), so the statements are parsed only:
    ClickHouse's own parser (EXPLAIN AST) accepts each of them, and a tenant with a quote stays one literal."""
    statements = server_user_ddl("net-1", "secret", ("school-a", "o'brien"), "learning")
    statements += server_revoke_ddl("net-1", "learning")
    kinds = []
    for statement in statements:
        tree = target.command_text(f"EXPLAIN AST {statement}")
        kinds.append(tree.split()[0])
    assert kinds[0] == "CreateUserQuery" and kinds[-1] == "DROP"
    assert kinds.count("GrantQuery") == len(statements) - 4
    policy = next(s for s in statements if s.startswith("CREATE ROW POLICY"))
    assert "tenant IN ('o\\'brien', 'school-a')" in policy and "learning.learning_facts" in policy
    assert not any("raw_events" in s or "failed_events " in s or "sink_rejects" in s for s in statements)
