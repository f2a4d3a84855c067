"""``CALIPER_GATEWAY__COMPRESSION``: the codecs aiokafka writes, "none" (or empty) for no compression, anything
else refused when the settings load, naming the setting (not when the producer starts)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from caliper_pipeline.settings import Settings
from gateway.publisher import EventPublisher
from schemas.kafka import KafkaSettings


@pytest.mark.parametrize(("configured", "effective"), [("none", None), ("", None), ("NONE", None), ("lz4", "lz4"),
                                                       ("ZSTD", "zstd"), ("gzip", "gzip")])
async def test_the_gateways_producers_take_every_accepted_value(monkeypatch: pytest.MonkeyPatch, configured: str,
                                                                effective: str | None) -> None:
    monkeypatch.setenv("CALIPER_GATEWAY__COMPRESSION", configured)
    settings = Settings()
    assert settings.gateway.compression == effective
    producer = EventPublisher(KafkaSettings(bootstrap_servers="127.0.0.1:9"), settings.gateway)._new_producer()
    assert producer.client is not None  # built: aiokafka accepted the compression (it is never started here)


def test_an_unknown_codec_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALIPER_GATEWAY__COMPRESSION", "brotli")
    with pytest.raises(ValidationError, match=r"compression\n.*must be one of lz4, zstd, gzip, snappy or none"):
        Settings()
