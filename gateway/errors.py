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

    def __init_subclass__(cls, *, status: int | None = None, reason: str | None = None,
                          records_rejection: bool | None = None, close_connection: bool | None = None) -> None:
        """A subclass names its answer with its base (``class X(GatewayError, status=404, reason="not_found")``);
        what it does not name it inherits."""
        super().__init_subclass__()
        answer = {"status": status, "reason": reason, "records_rejection": records_rejection,
                  "close_connection": close_connection}
        for name, value in answer.items():
            if value is not None:
                setattr(cls, name, value)

    def __init__(self, message: str, *, problems: list[FieldProblem] | None = None,
                 retry_after: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.retry_after = retry_after
        self.headers = headers or {}


class InvalidPayloadError(GatewayError, status=400, reason="invalid_payload", records_rejection=True):
    """An event or envelope that breaks its contract (the problems name the fields)."""


class MalformedJsonError(GatewayError, status=400, reason="malformed_json", records_rejection=True):
    """A body that is not JSON."""


class InvalidQueryError(GatewayError, status=400, reason="invalid_query"):
    """Bad query parameters of a read request (not an event: nothing goes to the rejected topic)."""


class UnauthorizedError(GatewayError, status=401, reason="unauthorized", close_connection=True):
    """No valid token; its body is never read: a refused caller gets no more of the gateway's time."""


class ForbiddenError(GatewayError, status=403, reason="forbidden", close_connection=True):
    """A valid token that may not do this (another tenant's data, a scope it lacks)."""


class PayloadTooLargeError(GatewayError, status=413, reason="payload_too_large"):
    """A body, an event or an envelope over its size or count limit."""


class UnsupportedMediaTypeError(GatewayError, status=415, reason="unsupported_media_type"):
    """A body of a media type the endpoint does not read."""


class UnsupportedDataVersionError(GatewayError, status=422, reason="unsupported_data_version", records_rejection=True):
    """A Caliper ``dataVersion`` the gateway does not know."""


class RateLimitedError(GatewayError, status=429, reason="rate_limited"):
    """A client over its rate: retry after ``retry_after``."""


class KafkaUnavailableError(GatewayError, status=503, reason="kafka_unavailable"):
    """Kafka did not take the events: nothing was published, the request can be sent again."""


class ReadsUnavailableError(GatewayError, status=503, reason="reads_unavailable"):
    """The read side cannot answer now."""


class ReadsBusyError(GatewayError, status=429, reason="reads_busy"):
    """The read side serves as many reads of this tenant (or in all) as it may: retry after ``retry_after``."""


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


class NotFoundError(GatewayError, status=404, reason="not_found"):
    """No such resource (a job the read side has no record of...)."""


class ServerBusyError(GatewayError, status=503, reason="busy"):
    """The gateway cannot take this request now (its memory budget for request bodies is used up)."""


class UnreadableBodyError(InvalidPayloadError, reason="unreadable_body", close_connection=True):
    """A body that cannot be read or decoded (``Content-Encoding: gzip`` on a plain body...)."""


class RequestTimeoutError(GatewayError, status=408, reason="request_timeout", close_connection=True):
    """A body that stopped arriving, or arrives slower than the gateway's minimum rate."""


class BodyShareExceededError(RateLimitedError, reason="bodies_in_flight"):
    """One caller (client id or remote address) already holds its share of the bodies being read."""


class ConnectionLostError(GatewayError, status=400, reason="connection_lost", close_connection=True):
    """The caller closed its connection before its body was read: nothing to answer, nothing to log."""
