"""The pipeline's settings: one env prefix (``CALIPER_``), one nested section per component.

Examples: ``CALIPER_KAFKA__BOOTSTRAP_SERVERS=broker:9092``, ``CALIPER_GATEWAY__PORT=8080``,
``CALIPER_CLICKHOUSE__HOST=clickhouse`` (empty = embedded chDB), ``CALIPER_PRIVACY__EMAIL_HASH_KEY=...``.
Built once in ``main()`` and passed down; nothing reads the environment at import time.

One home for a stack's state: ``CALIPER_LOCAL__HOME`` holds the Kafka data, the logs, the clients file, the
embedded ClickHouse directory and every secret the local stack generates. A path set explicitly
(``CALIPER_GATEWAY__CLIENTS_FILE``, ``CALIPER_CLICKHOUSE__DATA_PATH``) wins over the one derived from home.
Its default, and that of the Kafka jars' cache (``CALIPER_LOCAL__CACHE_DIR``): ``var`` and ``.cache`` in a source
checkout (``schemas.version.checkout_root``), per-user directories when installed from a wheel
(``$XDG_DATA_HOME/caliper-pipeline``, default ``~/.local/share/caliper-pipeline``;
``$XDG_CACHE_HOME/caliper-pipeline``, default ``~/.cache/caliper-pipeline``), so any working directory shares them.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.settings import GatewaySettings
from schemas.kafka import KafkaSettings
from schemas.privacy import PrivacySettings
from schemas.version import DISTRIBUTION, checkout_root
from sinks.settings import ClickHouseSettings, SinkSettings
from streams.settings import StreamsSettings

ENV_PREFIX = "CALIPER_"
ENV_NESTED_DELIMITER = "__"


def user_dir(variable: str, fallback: str, environ: Mapping[str, str] = os.environ) -> Path:
    """``$variable/caliper-pipeline``, or ``~/<fallback>/caliper-pipeline`` when the variable is unset, empty or
    relative (the XDG base directory specification ignores a relative path)."""
    base = environ.get(variable, "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / fallback
    return root / DISTRIBUTION


def default_home() -> Path:
    return Path("var") if checkout_root() is not None else user_dir("XDG_DATA_HOME", ".local/share")


def default_cache_dir() -> Path:
    return Path(".cache") if checkout_root() is not None else user_dir("XDG_CACHE_HOME", ".cache")


class LocalStackSettings(BaseModel):
    """Where the local stack keeps its state, and the Kafka it runs when no bootstrap server is given."""

    model_config = ConfigDict(frozen=True)

    home: Path = Field(default_factory=default_home)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    kafka_version: str = "4.1.1"
    kafka_heap: str = "768m"  # of the one local broker
    # a local cluster instead (``caliper-pipeline kafka|up``, LocalPipeline, the tests' session broker): this many
    # combined broker+controller nodes, topics replicated on up to 3 of them (min.insync.replicas 2)
    kafka_brokers: int = Field(default=1, ge=1, le=9)
    kafka_node_heap: str = "384m"  # of each node of a local cluster

    @property
    def kafka_data_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def kafka_cluster_dir(self) -> Path:
        """The local cluster's nodes (``node-<id>``) and its ``cluster.json`` (cluster id and ports)."""
        return self.home / "kafka-cluster"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def clients_file(self) -> Path:
        return self.home / "clients.json"

    @property
    def analysts_file(self) -> Path:
        return self.home / "analysts.json"

    @property
    def chdb_dir(self) -> Path:
        return self.home / "chdb"

    @property
    def streams_data_dir(self) -> Path:
        """Where the streams worker's faust keeps its data directory (it keeps no tables, but faust creates one)."""
        return self.home / "streams"

    @property
    def bench_dir(self) -> Path:
        """Where ``bench e2e`` and ``bench soak`` write their reports unless given ``--output-dir``."""
        return self.home / "bench"

    def process_env(self, process: str) -> dict[str, str]:
        """Environment variables that keep a child process's own state under home (creating its directory):
        faust reads its data directory from ``FAUST_DATADIR`` when it is imported, else uses the working directory."""
        if process != "streams":
            return {}
        self.streams_data_dir.mkdir(parents=True, exist_ok=True)
        return {"FAUST_DATADIR": str(self.streams_data_dir.resolve() / "{conf.name}-data")}

    def secret_file(self, name: str) -> Path:
        return self.home / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED_DELIMITER,
                                      frozen=True, extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    local: LocalStackSettings = Field(default_factory=LocalStackSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)

    @model_validator(mode="after")
    def _state_under_home(self) -> Settings:
        """The clients file, the analysts file and the embedded ClickHouse directory follow ``local.home`` unless
        set explicitly."""
        if "clients_file" not in self.gateway.model_fields_set:
            object.__setattr__(self, "gateway", self.gateway.model_copy(
                update={"clients_file": self.local.clients_file}))
        if "analysts_file" not in self.sink.model_fields_set:
            object.__setattr__(self, "sink", self.sink.model_copy(update={"analysts_file": self.local.analysts_file}))
        if "data_path" not in self.clickhouse.model_fields_set:
            object.__setattr__(self, "clickhouse", self.clickhouse.model_copy(
                update={"data_path": self.local.chdb_dir}))
        return self


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The settings model a field holds (also inside ``X | None``), None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        model = _model_of(argument)
        if model is not None:
            return model
    return None


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """The ``CALIPER_<SECTION>__<FIELD>`` variables of ``environ`` that name no setting: a typo, or a setting that
    was renamed or removed. pydantic-settings ignores them silently, so a deployment file that sets one is
    configured differently from what it says."""
    unknown: list[str] = []
    for key in environ:
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_NESTED_DELIMITER not in upper[len(ENV_PREFIX):]:
            continue  # not a nested setting (CALIPER_KAFKA='{...}' is a whole section; others are not settings)
        model: type[BaseModel] | None = Settings
        for part in upper[len(ENV_PREFIX):].lower().split(ENV_NESTED_DELIMITER):
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                unknown.append(key)
                break
            model = _model_of(field.annotation)
    return sorted(unknown)
