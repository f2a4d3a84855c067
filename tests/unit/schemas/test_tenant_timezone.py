"""Each tenant's IANA time zone: kept with the client registry, set from the CLI, stamped by the
gateway on every raw event of the tenant; a raw event of a writer that predates it reads as UTC."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import parse_schema
from gateway_doubles import gateway, gateway_settings

from caliper_pipeline.cli import main
from caliper_pipeline.senders.samples import envelope, hub_grade_event, timeback_activity_event
from gateway.clients import ClientRegistry
from gateway.settings import INGEST_SCOPE
from gateway.tokens import TokenIssuer
from schemas.avro.codec import SINGLE_OBJECT_MARKER, RawEventCodec, crc64_fingerprint
from schemas.avro.generate import catalog_versions
from schemas.errors import UnknownTimeZoneError
from schemas.records import RawEvent

SECRET = "test-secret-key-of-enough-length-0123456789"


@pytest.fixture
def registry(tmp_path: Path) -> ClientRegistry:
    return ClientRegistry(tmp_path / "clients.json", refresh_seconds=0)


def test_a_tenant_is_in_utc_until_given_a_time_zone(registry: ClientRegistry) -> None:
    registry.add("school-utc", client_id="u")
    registry.add("escola-sp", client_id="sp", timezone="America/Sao_Paulo")
    assert registry.timezone_of("school-utc") == "UTC" and registry.timezone_of("nobody") == "UTC"
    assert registry.timezone_of("escola-sp") == "America/Sao_Paulo"
    registry.add("escola-sp", client_id="sp2")  # another client of the tenant leaves its zone as it is
    assert registry.timezone_of("escola-sp") == "America/Sao_Paulo"
    registry.set_timezone("escola-sp", "America/Manaus")
    registry.revoke("u")
    again = ClientRegistry(registry.path)
    assert again.timezone_of("escola-sp") == "America/Manaus" and again.get("u").revoked  # type: ignore[union-attr]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "america/sao_paulo", "", "../../etc/passwd", "/etc/localtime",
                                  " UTC"])
def test_an_unknown_time_zone_is_refused_and_nothing_is_written(registry: ClientRegistry, zone: str) -> None:
    registry.add("escola-sp", client_id="sp", timezone="America/Sao_Paulo")
    before = registry.path.read_text()
    with pytest.raises(UnknownTimeZoneError, match="unknown time zone"):
        registry.set_timezone("escola-sp", zone)
    with pytest.raises(UnknownTimeZoneError):
        registry.add("other", client_id="o", timezone=zone)
    assert registry.path.read_text() == before


def test_a_clients_file_of_the_first_format_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    first, _ = ClientRegistry(tmp_path / "scratch.json").add("school-a", client_id="a", secret="s3cret")
    path.write_text(json.dumps({"a": {**first.__dict__, "scopes": list(first.scopes)}}))  # {client id: client}
    registry = ClientRegistry(path, refresh_seconds=0)
    assert registry.authenticate("a", "s3cret") == first and registry.timezone_of("school-a") == "UTC"
    registry.set_timezone("school-a", "Asia/Tokyo")
    stored = json.loads(path.read_text())
    assert stored["version"] == 2 and set(stored["clients"]) == {"a"}
    assert stored["tenants"] == {"school-a": {"timezone": "Asia/Tokyo"}}
    assert ClientRegistry(path).authenticate("a", "s3cret") == first


def test_the_caller_carries_its_tenants_time_zone_and_a_change_applies_at_once(registry: ClientRegistry) -> None:
    client, _ = registry.add("escola-sp", timezone="America/Sao_Paulo")
    issuer = TokenIssuer(SECRET, "caliper-pipeline", 60, registry)
    token, _ = issuer.issue(client)
    assert issuer.verify(f"Bearer {token}", INGEST_SCOPE).tenant_timezone == "America/Sao_Paulo"
    registry.set_timezone("escola-sp", "America/Noronha")
    assert issuer.verify(f"Bearer {token}", INGEST_SCOPE).tenant_timezone == "America/Noronha"


async def test_the_gateway_stamps_the_tenants_time_zone_on_what_it_publishes(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        sp = await gw.ingest_auth("escola-sp", timezone="America/Sao_Paulo")
        utc = await gw.ingest_auth("school-utc")
        for auth in (sp, utc):
            assert (await gw.client.post("/caliper/event", json=envelope(timeback_activity_event()),
                                         headers=auth)).status == 200
        assert (await gw.client.post("/hub/v1/events", json=hub_grade_event(), headers=sp)).status == 200
        stamped = [(event.tenant, event.source, event.tenant_timezone) for event in gw.publisher.events]
        assert stamped == [("escola-sp", "timeback", "America/Sao_Paulo"), ("school-utc", "timeback", "UTC"),
                           ("escola-sp", "hub", "America/Sao_Paulo")]


def test_a_raw_event_of_a_v1_writer_reads_as_utc() -> None:
    """A message a gateway wrote before tenants had a time zone (raw_event v1) decodes with the tenant in UTC."""
    codec = RawEventCodec()
    [(_, v1), *_] = catalog_versions("raw_event")
    assert "tenant_timezone" not in {field["name"] for field in v1["fields"]}
    fields = {"tenant": "t", "client_id": "c", "source": "hub", "event_id": "urn:uuid:1", "event_type": "GradeEvent",
              "profile": "GradingProfile", "student_id": "s", "sensor": "", "send_time_ms": 0,
              "received_time_ms": 5, "envelope_index": 0, "payload": b"{}"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parse_schema(v1), fields)
    message = SINGLE_OBJECT_MARKER + crc64_fingerprint(parse_schema(v1)) + body.getvalue()
    assert codec.decode_record(message) == RawEvent(**fields, tenant_timezone="UTC")
    stamped = RawEvent(**fields, tenant_timezone="Asia/Tokyo")
    assert codec.decode_record(codec.encode_record(stamped)).tenant_timezone == "Asia/Tokyo"


# --- the CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture
def clients_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "clients.json"
    monkeypatch.setenv("CALIPER_GATEWAY__CLIENTS_FILE", str(path))
    return path


def test_clients_add_and_timezone_set_the_tenants_zone(clients_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clients", "add", "--tenant", "escola-sp", "--timezone", "America/Sao_Paulo"]) == 0
    assert "timezone:      America/Sao_Paulo" in capsys.readouterr().out
    assert ClientRegistry(clients_file).timezone_of("escola-sp") == "America/Sao_Paulo"
    assert main(["clients", "timezone", "--tenant", "escola-sp", "--timezone", "America/Fortaleza"]) == 0
    assert "America/Fortaleza" in capsys.readouterr().out
    assert main(["clients", "list"]) == 0
    assert "tenant=escola-sp\ttimezone=America/Fortaleza" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["clients", "add", "--tenant", "t", "--timezone", "America/Sao_Paul"],
                                     ["clients", "timezone", "--tenant", "t", "--timezone", "Brasil"]])
def test_an_unknown_time_zone_is_a_clear_cli_error(clients_file: Path, capsys: pytest.CaptureFixture[str],
                                                   command: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(command)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "unknown time zone" in error and "IANA" in error and "Traceback" not in error
    assert not clients_file.exists()
