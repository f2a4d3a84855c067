"""Errors the gateway answers with: each carries its HTTP status and the data its answer needs.

The error middleware (``gateway.middlewares``) renders every ``GatewayError`` in the format of the endpoint's
own contract; ``records_rejection`` marks the errors whose request is also written to the rejected topic (the
request's content was refused, as opposed to its credentials, its size or the gateway's state).
"""

from __future__ import annotations

from schemas.errors import FieldProblem, PipelineError


class GatewayError(PipelineError):
    status = 500
    reason = "internal"
    records_rejection = False
    close_connection = False  # the body was left unread or undecodable, or the caller refused: closed after the answer

    def __init__(self, message: str, *, problems: list[FieldProblem] | None = None,
                 retry_after: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.retry_after = retry_after
        self.headers = headers or {}


class InvalidPayloadError(GatewayError):
    status = 400
    reason = "invalid_payload"
    records_rejection = True


class MalformedJsonError(GatewayError):
    status = 400
    reason = "malformed_json"
    records_rejection = True


class InvalidQueryError(GatewayError):
    """Bad query parameters of a read request (not an event: nothing goes to the rejected topic)."""

    status = 400
    reason = "invalid_query"


class UnauthorizedError(GatewayError):
    status = 401
    reason = "unauthorized"
    close_connection = True  # its body is never read: a refused caller gets no more of the gateway's time


class ForbiddenError(GatewayError):
    status = 403
    reason = "forbidden"
    close_connection = True


class PayloadTooLargeError(GatewayError):
    status = 413
    reason = "payload_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    reason = "unsupported_media_type"


class UnsupportedDataVersionError(GatewayError):
    status = 422
    reason = "unsupported_data_version"
    records_rejection = True


class RateLimitedError(GatewayError):
    status = 429
    reason = "rate_limited"


class KafkaUnavailableError(GatewayError):
    status = 503
    reason = "kafka_unavailable"


class ReadsUnavailableError(GatewayError):
    status = 503
    reason = "reads_unavailable"


class ReadsBusyError(GatewayError):
    """The read side serves as many reads of this tenant (or in all) as it may: retry after ``retry_after``."""

    status = 429
    reason = "reads_busy"


class HttpError(GatewayError):
    """An aiohttp ``HTTPException`` (no route, wrong method...) carried with its status and headers."""

    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.reason = reason


class InternalError(GatewayError):
    """Whatever the code did not expect: logged with its traceback, answered without any internals."""


class UnknownClientError(PipelineError):
    """A client id that the registry does not hold."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"unknown client {client_id!r}")
        self.client_id = client_id


class ClientExistsError(PipelineError):
    """``clients add`` of an id the registry already holds: adding it again would move it (its tenant, its
    secret) from under the tokens and the sender that use it; ``clients rotate`` issues a new secret instead."""

    def __init__(self, client_id: str, tenant: str) -> None:
        super().__init__(f"client {client_id!r} already exists (tenant {tenant!r}); `clients rotate {client_id}` "
                         "issues it a new secret, or choose another --client-id")
        self.client_id = client_id
        self.tenant = tenant


class RevokedClientError(PipelineError):
    """``clients rotate`` of a revoked client: a revocation is final, a new secret would not bring it back."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"client {client_id!r} is revoked; add a new client instead")
        self.client_id = client_id


class OAuthError(GatewayError):
    """An RFC 6749 error of the token endpoint; ``reason`` is its ``error`` code (``invalid_client``...)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.reason = code


class NotFoundError(GatewayError):
    status = 404
    reason = "not_found"


class ServerBusyError(GatewayError):
    """The gateway cannot take this request now (its memory budget for request bodies is used up)."""

    status = 503
    reason = "busy"


class UnreadableBodyError(InvalidPayloadError):
    """A body that cannot be read or decoded (``Content-Encoding: gzip`` on a plain body...)."""

    reason = "unreadable_body"
    close_connection = True


class RequestTimeoutError(GatewayError):
    """A body that stopped arriving, or arrives slower than the gateway's minimum rate."""

    status = 408
    reason = "request_timeout"
    close_connection = True


class BodyShareExceededError(RateLimitedError):
    """One caller (client id or remote address) already holds its share of the bodies being read."""

    reason = "bodies_in_flight"


class ConnectionLostError(GatewayError):
    """The caller closed its connection before its body was read: nothing to answer, nothing to log."""

    status = 400
    reason = "connection_lost"
    close_connection = True
