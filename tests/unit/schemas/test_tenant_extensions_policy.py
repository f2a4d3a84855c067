"""A tenant's adjustments of the personal-data policy of extensions: kept with the client registry, set from the
CLI, stamped by the gateway on every raw event of the tenant like its time zone, applied by the normalizers; a raw
event of a writer that predates it gets the default policy."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from fastavro.schema import parse_schema
from gateway_doubles import gateway, gateway_settings

from caliper_pipeline.cli import main
from gateway.clients import ClientRegistry
from gateway.settings import INGEST_SCOPE
from gateway.tokens import TokenIssuer
from schemas.avro.codec import SINGLE_OBJECT_MARKER, RawEventCodec, crc64_fingerprint
from schemas.avro.generate import catalog_versions
from schemas.errors import InvalidExtensionsKeyError
from schemas.personal_data import MAX_POLICY_KEYS, ExtensionsPolicy, policy_from_text
from schemas.privacy import student_key_for
from schemas.records import RawEvent
from streams.normalizers import NormalizeOptions, normalize_with

SECRET = "test-secret-key-of-enough-length-0123456789"
OPTIONS = NormalizeOptions(b"email-key", keep_raw_email=False, normalizer_version="t", student_key=b"student-key")
CANVAS = {"user_login": "ana77", "user_sis_id": "SIS-1", "client_ip": "203.0.113.5", "hostname": "canvas.example",
          "contact": "ana@school.example"}


def event() -> dict[str, Any]:
    return {"@context": "http://purl.imsglobal.org/ctx/caliper/v1p2",
            "id": "urn:uuid:0e5e1d9c-1f4b-4e8c-9a31-0000000000aa", "type": "NavigationEvent",
            "action": "NavigatedTo", "eventTime": "2024-03-01T10:31:00.000Z",
            "actor": {"id": "https://school.example/users/1", "type": "Person",
                      "extensions": {"com.instructure.canvas": dict(CANVAS)}},
            "object": {"id": "https://school.example/pages/1", "type": "Page"}}


@pytest.fixture
def registry(tmp_path: Path) -> ClientRegistry:
    return ClientRegistry(tmp_path / "clients.json", refresh_seconds=0)


def test_a_tenant_has_the_default_policy_until_given_one(registry: ClientRegistry) -> None:
    registry.add("school", client_id="s", timezone="America/Sao_Paulo")
    assert registry.tenant("school").extensions_policy == "" and registry.tenant("nobody").extensions_policy == ""
    registry.set_extensions_policy("school", keep=["user_sis_id", "user_sis_id"], drop=["hostname"])
    again = ClientRegistry(registry.path)
    tenant = again.tenant("school")
    assert (tenant.timezone, tenant.extensions_keep, tenant.extensions_drop) == (
        "America/Sao_Paulo", ("user_sis_id",), ("hostname",))
    assert policy_from_text(tenant.extensions_policy) == ExtensionsPolicy.of(keep=["usersisid"], drop=["hostname"])
    registry.set_extensions_policy("school", keep=[], drop=[])  # back to the default policy
    assert ClientRegistry(registry.path).tenant("school").extensions_policy == ""
    assert json.loads(registry.path.read_text())["tenants"] == {"school": {"timezone": "America/Sao_Paulo"}}


@pytest.mark.parametrize(("keep", "drop"), [(["__"], []), ([], [" "]), (["x" * 129], []),
                                            ([f"k{i}" for i in range(MAX_POLICY_KEYS + 1)], [])])
def test_a_key_that_cannot_be_one_is_refused_and_nothing_is_written(registry: ClientRegistry, keep: list[str],
                                                                     drop: list[str]) -> None:
    registry.add("school", client_id="s")
    before = registry.path.read_text()
    with pytest.raises(InvalidExtensionsKeyError, match="extensions policy key"):
        registry.set_extensions_policy("school", keep=keep, drop=drop)
    assert registry.path.read_text() == before


def test_the_caller_carries_its_tenants_policy_and_a_change_applies_at_once(registry: ClientRegistry) -> None:
    client, _ = registry.add("school")
    issuer = TokenIssuer(SECRET, "caliper-pipeline", 60, registry)
    token, _ = issuer.issue(client)
    assert issuer.verify(f"Bearer {token}", INGEST_SCOPE).extensions_policy == ""
    registry.set_extensions_policy("school", keep=["hostname"], drop=[])
    assert issuer.verify(f"Bearer {token}", INGEST_SCOPE).extensions_policy == '{"drop":[],"keep":["hostname"]}'


async def test_the_gateway_stamps_the_tenants_policy_and_the_normalizer_applies_it(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        adjusted = await gw.ingest_auth("adjusted")
        default = await gw.ingest_auth("default")
        gw.registry.set_extensions_policy("adjusted", keep=["user_sis_id", "hostname", "contact"],
                                          drop=["user_login"])
        envelope = {"sensor": "https://school.example/sensor", "sendTime": "2024-03-01T10:31:01.000Z",
                    "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2", "data": [event()]}
        for auth in (adjusted, default):
            assert (await gw.client.post("/caliper/event", json=envelope, headers=auth)).status == 200
        raws = list(gw.publisher.events)
    assert [raw.extensions_policy for raw in raws] == [
        '{"drop":["userlogin"],"keep":["contact","hostname","usersisid"]}', ""]
    canvas = [orjson.loads(fact.extensions_json)["actor"]["extensions"]["com.instructure.canvas"]
              for raw in raws for fact in normalize_with(raw, OPTIONS)]
    contact = canvas[1]["contact"]  # a kept key holding an e-mail is pseudonymized all the same
    assert canvas[0] == {"user_sis_id": "SIS-1", "hostname": "canvas.example", "contact": contact}
    assert canvas[1] == {"user_login": student_key_for("default", "ana77", b"student-key"),
                         "user_sis_id": student_key_for("default", "SIS-1", b"student-key"),
                         "hostname": "canvas.example", "contact": contact}


def test_a_raw_event_of_a_v3_writer_gets_the_default_policy() -> None:
    codec = RawEventCodec()
    v3 = dict(catalog_versions("raw_event"))[3]
    assert "extensions_policy" not in {field["name"] for field in v3["fields"]}
    fields: dict[str, Any] = {
        "tenant": "t", "client_id": "c", "source": "caliper", "event_id": "urn:uuid:1", "event_type": "Event",
        "profile": "", "student_id": "s", "sensor": "", "send_time_ms": 0, "received_time_ms": 5,
        "envelope_index": 0, "payload": b"{}", "tenant_timezone": "UTC", "job_id": ""}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parse_schema(v3), fields)
    message = SINGLE_OBJECT_MARKER + crc64_fingerprint(parse_schema(v3)) + body.getvalue()
    assert codec.decode_record(message) == RawEvent(**fields, extensions_policy="")
    stamped = RawEvent(**fields, extensions_policy='{"drop":[],"keep":["hostname"]}')
    assert codec.decode_record(codec.encode_record(stamped)) == stamped


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"keep": "hostname"}', '{"keep": [1]}'])
def test_a_policy_text_that_is_no_policy_is_the_default_one(text: str) -> None:
    assert policy_from_text(text) == ExtensionsPolicy()


def test_clients_extensions_sets_the_tenants_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clients.json"
    monkeypatch.setenv("CALIPER_GATEWAY__CLIENTS_FILE", str(path))
    assert main(["clients", "extensions", "--tenant", "school", "--keep", "hostname", "entity_id",
                 "--drop", "user_sis_id"]) == 0
    assert "kept as sent: entity_id, hostname; dropped: user_sis_id" in capsys.readouterr().out
    tenant = ClientRegistry(path).tenant("school")
    assert (tenant.extensions_keep, tenant.extensions_drop) == (("entity_id", "hostname"), ("user_sis_id",))
    assert main(["clients", "extensions", "--tenant", "school", "--keep", "__"]) != 0
    error = capsys.readouterr().err
    assert "extensions policy key '__': an empty key name" in error and "Traceback" not in error
