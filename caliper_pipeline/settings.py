"""The pipeline's settings: one env prefix (``CALIPER_``), one nested section per component.

Examples: ``CALIPER_KAFKA__BOOTSTRAP_SERVERS=broker:9092``, ``CALIPER_GATEWAY__PORT=8080``,
``CALIPER_CLICKHOUSE__HOST=clickhouse`` (empty = embedded chDB), ``CALIPER_PRIVACY__EMAIL_HASH_KEY=...``.
Built once in ``main()`` and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.settings import GatewaySettings
from schemas.kafka import KafkaSettings
from schemas.privacy import PrivacySettings
from sinks.settings import ClickHouseSettings, SinkSettings
from streams.settings import StreamsSettings


class LocalStackSettings(BaseModel):
    """Where the local stack keeps its state, and the Kafka it runs when no bootstrap server is given."""

    model_config = ConfigDict(frozen=True)

    home: Path = Path("var")
    cache_dir: Path = Path(".cache")
    kafka_version: str = "4.1.1"
    kafka_heap: str = "768m"

    @property
    def kafka_data_dir(self) -> Path:
        return self.home / "kafka"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALIPER_", env_nested_delimiter="__", frozen=True,
                                      extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    local: LocalStackSettings = Field(default_factory=LocalStackSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
