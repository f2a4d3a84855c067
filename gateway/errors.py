"""Errors the gateway answers with: each carries its HTTP status and the data its answer needs."""

from __future__ import annotations

from schemas.errors import FieldProblem, PipelineError


class GatewayError(PipelineError):
    status = 500
    reason = "internal"

    def __init__(self, message: str, *, problems: list[FieldProblem] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.retry_after = retry_after


class InvalidPayloadError(GatewayError):
    status = 400
    reason = "invalid_payload"


class MalformedJsonError(GatewayError):
    status = 400
    reason = "malformed_json"


class UnauthorizedError(GatewayError):
    status = 401
    reason = "unauthorized"


class ForbiddenError(GatewayError):
    status = 403
    reason = "forbidden"


class PayloadTooLargeError(GatewayError):
    status = 413
    reason = "payload_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    reason = "unsupported_media_type"


class UnsupportedDataVersionError(GatewayError):
    status = 422
    reason = "unsupported_data_version"


class RateLimitedError(GatewayError):
    status = 429
    reason = "rate_limited"


class KafkaUnavailableError(GatewayError):
    status = 503
    reason = "kafka_unavailable"


class ClickHouseUnavailableForReadsError(GatewayError):
    status = 503
    reason = "clickhouse_unavailable"


class UnknownClientError(PipelineError):
    """A client id that the registry does not hold."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"unknown client {client_id!r}")
        self.client_id = client_id
