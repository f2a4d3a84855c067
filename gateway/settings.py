"""Settings of the HTTP gateway (the ``gateway`` section of the pipeline's settings, ``CALIPER_GATEWAY__*``)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.errors import PipelineError

INGEST_SCOPE = "https://purl.imsglobal.org/spec/caliper/v1p1/scope/event.create"
READ_SCOPE = "https://purl.imsglobal.org/spec/caliper/v1p1/scope/event.read"

# written in the source, so anyone can sign with it: the gateway refuses it unless allow_development_secret is set
DEVELOPMENT_JWT_SECRET = "local-development-only-change-me-0123456789"
MIN_SECRET_BYTES = 32
MIB = 1024 * 1024
# the record-batch compressions aiokafka writes; "none" (or empty) turns compression off
COMPRESSIONS = ("lz4", "zstd", "gzip", "snappy")


class DevelopmentSecretError(PipelineError):
    """The gateway was asked to start with a signing secret anyone may know."""


class GatewaySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    # limits of one request (each answered with a 4xx naming what is over) and of all requests together
    max_body_bytes: int = Field(default=4 * MIB, ge=1024)  # after Content-Encoding decoding
    max_inflight_body_bytes: int = Field(default=32 * MIB, ge=1024)  # bodies held at once; beyond: 503
    # the share of max_inflight_body_bytes one client id, and one remote address, may hold at once; beyond: 429
    # (a caller holding nothing may always start one body that fits the whole budget)
    max_inflight_body_share: float = Field(default=0.25, gt=0, le=1)
    # a compressed body may decode to at most this many times its compressed size (413 naming Content-Encoding)
    max_compression_ratio: int = Field(default=100, ge=2)
    # slow callers: a connection must deliver a complete request head this many seconds after it opened or after
    # its previous answer (else it is closed: this is also how long an idle keep-alive connection stays open);
    # a body must go on arriving within body_timeout_seconds of each read and, past that first stretch, at no
    # less than min_body_bytes_per_second on average (else 408 and the connection closed)
    header_timeout_seconds: float = Field(default=30.0, gt=0)
    body_timeout_seconds: float = Field(default=15.0, gt=0)
    min_body_bytes_per_second: int = Field(default=4096, ge=1)
    max_events_per_envelope: int = Field(default=10_000, ge=1)
    # one event as published (Avro-encoded RawEvent plus its key): below the producer's max_request_size
    # (1,048,576) and the broker's default message.max.bytes (1,048,588, a record batch of one message), so an
    # acknowledged event always fits in a Kafka message. Raise the broker's and the topic's limits first if raised.
    max_event_bytes: int = Field(default=1_000_000, ge=1024, le=1_048_576 - 1024)
    max_json_depth: int = Field(default=64, ge=2, le=255)  # orjson cannot serialize beyond 255 levels

    # access tokens: HS256 JWTs signed with jwt_secret; jwt_previous_secrets still verify (key rotation)
    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    jwt_previous_secrets: list[SecretStr] = Field(default_factory=list)
    allow_development_secret: bool = False
    jwt_issuer: str = "caliper-pipeline"
    token_ttl_seconds: int = Field(default=3600, ge=60)
    max_token_ttl_seconds: int = Field(default=24 * 3600, ge=60)

    # the token endpoint (gateway.token_guard): secret checks in a small thread pool with a bounded queue that
    # serves first the addresses that failed least recently; throttled per address (every attempt, and failed
    # ones) and per (address, client id) (failed attempts), never per client id alone
    token_hash_workers: int = Field(default=2, ge=1)
    token_attempts_per_second_per_address: float = Field(default=5.0, gt=0)
    token_attempts_burst_per_address: float = Field(default=10.0, ge=1)
    token_failures_per_second_per_address: float = Field(default=1.0, gt=0)
    token_failures_burst_per_address: float = Field(default=10.0, ge=1)
    token_failures_per_second_per_address_client: float = Field(default=0.5, gt=0)
    token_failures_burst_per_address_client: float = Field(default=5.0, ge=1)
    token_failure_memory_seconds: float = Field(default=60.0, gt=0)  # how long a failure lowers its address's turn
    token_trusted_address_seconds: float = Field(default=24 * 3600.0, gt=0)  # a token got: the address goes first

    clients_file: Path = Path("var/clients.json")
    default_rate_limit_per_second: float = Field(default=2000.0, gt=0)  # events (and entities) per second
    rate_limit_burst_seconds: float = Field(default=1.0, gt=0)  # bucket capacity = rate x this
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_after_seconds: int = 5
    # the read API (GET /caliper/events, GET /jobs/{id}/status): requests per second per client, and the burst
    read_requests_per_second: float = Field(default=10.0, gt=0)
    read_requests_burst: float = Field(default=20.0, ge=1)
    producer_linger_ms: int = 2
    # the raw, jobs and rejected topics' record-batch compression (docs/operations.md: reading our topics from other
    # clients); lz4 batches are framed as Kafka's Java producer frames them (schemas.kafka_lz4)
    compression: str | None = "lz4"
    # all-or-nothing requests: each request's events go in one Kafka transaction, concurrent requests grouped
    # (gateway.transactions). The transactional id must be unique per gateway process and stable across its
    # restarts (a restart fences the previous incarnation); empty: caliper-gateway-<host name>-<port>.
    transactional_id: str = ""
    # transactions in flight at once, and how long a group waits for more requests: 2 and 2 ms make fewer, larger
    # transactions than 4 and 0 (15.6 requests each against 11-12 at 32 connections) for less CPU per request
    # and no worse latency (docs/benchmarks.md, "Raw batch records")
    transaction_producers: int = Field(default=2, ge=1)
    transaction_window_ms: float = Field(default=2.0, ge=0)
    # events of one group (a batch record counts its events; a bigger request goes alone)
    transaction_max_events: int = Field(default=10_000, ge=1)

    @field_validator("compression")
    @classmethod
    def _known_compression(cls, value: str | None) -> str | None:
        """A codec aiokafka writes, or None for "none" / empty (aiokafka itself refuses "none" when it starts)."""
        if value is None or value.strip().lower() in ("", "none"):
            return None
        if value.strip().lower() not in COMPRESSIONS:
            raise ValueError(f"must be one of {', '.join(COMPRESSIONS)} or none, not {value!r}")
        return value.strip().lower()

    @model_validator(mode="after")
    def _token_lifetime(self) -> GatewaySettings:
        if self.token_ttl_seconds > self.max_token_ttl_seconds:
            raise ValueError(f"token_ttl_seconds ({self.token_ttl_seconds}) must not exceed max_token_ttl_seconds "
                             f"({self.max_token_ttl_seconds}): the gateway would refuse the tokens it issues")
        return self

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"caliper-gateway-{socket.gethostname()}-{self.port}"

    @property
    def verification_secrets(self) -> list[str]:
        """Every key that verifies a token: the signing key first, then the previous ones."""
        return [self.jwt_secret.get_secret_value(), *(s.get_secret_value() for s in self.jwt_previous_secrets)]

    def check_signing_secrets(self) -> None:
        """Refuse the development secret and short secrets unless ``allow_development_secret`` is set."""
        if self.allow_development_secret:
            return
        for index, secret in enumerate(self.verification_secrets):
            name = "jwt_secret" if index == 0 else f"jwt_previous_secrets[{index - 1}]"
            if secret == DEVELOPMENT_JWT_SECRET:
                problem = "is the development secret written in the source code"
            elif len(secret.encode()) < MIN_SECRET_BYTES:
                problem = f"is shorter than {MIN_SECRET_BYTES} bytes"
            else:
                continue
            raise DevelopmentSecretError(
                f"the gateway refuses to start: {name} {problem}, so anyone could sign access tokens. Set "
                f"CALIPER_GATEWAY__JWT_SECRET to a random secret of at least {MIN_SECRET_BYTES} bytes (e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), or, on a development machine "
                "only, CALIPER_GATEWAY__ALLOW_DEVELOPMENT_SECRET=true")
