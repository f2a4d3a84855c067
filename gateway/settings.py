"""Settings of the HTTP gateway (the ``gateway`` section of the pipeline's settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

INGEST_SCOPE = "https://purl.imsglobal.org/spec/caliper/v1p1/scope/event.create"
READ_SCOPE = "https://purl.imsglobal.org/spec/caliper/v1p1/scope/event.read"


class GatewaySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    jwt_secret: SecretStr = SecretStr("local-development-only-change-me-0123456789")
    jwt_issuer: str = "caliper-pipeline"
    token_ttl_seconds: int = Field(default=3600, ge=60)
    clients_file: Path = Path("var/clients.json")
    default_rate_limit_per_second: float = Field(default=2000.0, gt=0)
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_after_seconds: int = 5
    producer_linger_ms: int = 2
    compression: str | None = "lz4"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
