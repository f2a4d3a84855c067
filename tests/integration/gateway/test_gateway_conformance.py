"""The whole Caliper 1.2 corpus (and the 1.1 valid fixtures) through the gateway's HTTP API, publishing to the real
broker: every valid file is accepted (200), every must-reject file gets a 4xx whose errors name the offending field --
except the files the validator's default mode accepts on purpose (``DIFFERS_IN_DEFAULT_MODE``: JSON integers for
decimal properties), which are accepted (200)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from caliper_corpus import (
    DIFFERS_IN_DEFAULT_MODE,
    INVALID_FILES,
    NOT_JSON_FIXTURES,
    V1P1_VALID_FILES,
    VALID_FILES,
    load,
    offending_field,
    v1p1_body,
    wrap,
)

from gateway.clients import ClientRegistry
from gateway.main import build_app
from gateway.settings import GatewaySettings
from schemas.kafka import KafkaSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[GatewaySettings, str, str]:
    clients_file = tmp_path_factory.mktemp("gateway") / "clients.json"
    client, secret = ClientRegistry(clients_file).add("conformance", rate_limit_per_second=1e9)
    return GatewaySettings(clients_file=clients_file, jwt_secret=secrets.token_urlsafe(32)), client.client_id, secret


@pytest.fixture
async def authorized(corpus_settings: tuple[GatewaySettings, str, str],
                     kafka_settings: KafkaSettings) -> AsyncIterator[tuple[TestClient, dict[str, str]]]:
    settings, client_id, secret = corpus_settings
    async with TestClient(TestServer(build_app(settings, kafka_settings))) as client:
        response = await client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                             "client_id": client_id, "client_secret": secret})
        token = (await response.json())["access_token"]
        yield client, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _request_body(fixture: Path) -> bytes:
    if fixture.stem in NOT_JSON_FIXTURES:
        return fixture.read_bytes()
    payload = load(fixture)
    return orjson.dumps(payload if fixture.stem.startswith("caliperEnvelope") else wrap(payload))


async def test_every_valid_file_is_accepted(authorized: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = authorized
    refused = {}
    for fixture in VALID_FILES:
        if fixture.stem == "caliperEndpointConfigPayload":
            # the IMS endpoint-configuration document: what GET /caliper/event answers, not ingestible data
            config = await (await client.get("/caliper/event")).json()
            assert set(load(fixture)) == set(config)
            continue
        response = await client.post("/caliper/event", data=_request_body(fixture), headers=headers)
        if response.status != 200:
            refused[fixture.stem] = (response.status, await response.text())
    assert refused == {}
    assert len(VALID_FILES) == 144


async def test_every_v1p1_valid_file_is_accepted(authorized: tuple[TestClient, dict[str, str]]) -> None:
    """Caliper 1.1 senders: every IMS 1.1 valid fixture, posted with dataVersion v1p1, is accepted and published."""
    client, headers = authorized
    refused = {}
    for fixture in V1P1_VALID_FILES:
        response = await client.post("/caliper/event", data=orjson.dumps(v1p1_body(fixture)), headers=headers)
        if response.status != 200:
            refused[fixture.stem] = (response.status, await response.text())
    assert refused == {}
    assert len(V1P1_VALID_FILES) == 129


async def test_every_invalid_file_is_rejected_naming_the_field(
        authorized: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = authorized
    wrong = {}
    for fixture in INVALID_FILES:
        response = await client.post("/caliper/event", data=_request_body(fixture), headers=headers)
        body = await response.json()
        if fixture.stem in DIFFERS_IN_DEFAULT_MODE:
            if response.status != 200:
                wrong[fixture.stem] = (response.status, body)
            continue
        if not 400 <= response.status < 500 or body["status"] != "error":
            wrong[fixture.stem] = (response.status, body)
            continue
        if fixture.stem in NOT_JSON_FIXTURES:
            continue
        field = offending_field(fixture.stem)
        paths = [error["path"] for error in body["errors"]]
        prefix = "" if fixture.stem.startswith("caliperEnvelope") else "data[0]."
        if not any(p == f"{prefix}{field}" or p.startswith((f"{prefix}{field}.", f"{prefix}{field}[")) or
                   p == field for p in paths):
            wrong[fixture.stem] = (response.status, paths)
    assert wrong == {}
    assert len(INVALID_FILES) == 279
