"""Settings of the ClickHouse sink: where ClickHouse is, and how the loader batches and serves HTTP."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ClickHouseSettings(BaseModel):
    """How to reach ClickHouse. An empty ``host`` means: embedded chDB on ``data_path`` (one process owns it)."""

    model_config = ConfigDict(frozen=True)

    host: str = ""
    port: int = Field(default=8123, ge=1, le=65535)
    username: str = "default"
    password: SecretStr = SecretStr("")
    secure: bool = False
    database: str = Field(default="learning", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    data_path: Path = Path("var/chdb")
    # non-empty: cluster mode (ReplicatedMergeTree ... ON CLUSTER + Distributed tables)
    cluster: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$")

    @property
    def embedded(self) -> bool:
        return not self.host


class SinkSettings(BaseModel):
    """How the sink process batches, retries and serves its HTTP endpoints."""

    model_config = ConfigDict(frozen=True)

    batch_rows: int = Field(default=50_000, ge=1)
    batch_seconds: float = Field(default=1.0, gt=0)
    group_id: str = "caliper-sink"
    # static group membership (KIP-345): a sink restarted under the same id takes its partitions back at once
    # instead of waiting for its killed incarnation's session to time out; one stable id per replica (pod name)
    group_instance_id: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8124, ge=0, le=65535)
    retry_backoff_min_seconds: float = Field(default=0.5, gt=0)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    admin_token: SecretStr = SecretStr("")
    erasure_hash_key: SecretStr = SecretStr("")
    # base URL of a running sink's HTTP endpoints (SqlClient in embedded mode); empty: http_host:http_port
    sink_url: str = ""

    def base_url(self) -> str:
        return self.sink_url.rstrip("/") or f"http://{self.http_host}:{self.http_port}"
