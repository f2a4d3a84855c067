"""Errors of the ClickHouse sink; every one is a ``schemas.errors.PipelineError``."""

from __future__ import annotations

from schemas.errors import PipelineError


class SinkError(PipelineError):
    """Root of the sink's errors."""


class ClickHouseUnavailableError(SinkError):
    """ClickHouse did not answer or refused a write; the loader backs off and retries the same batch."""


class ClickHouseQueryError(SinkError):
    """ClickHouse answered a statement with an error (bad SQL, unknown table, readonly violation ...)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class QueryRejectedError(SinkError):
    """An analyst query the SQL policy refuses (not one read statement, a table function or a function that
    reaches files, the network or processes, another database, a SETTINGS or FORMAT clause ...); ``code``: the
    ClickHouse error code the ClickHouse-compatible endpoint answers with (497, ACCESS_DENIED, unless said)."""

    def __init__(self, message: str, *, code: int = 497) -> None:
        super().__init__(message)
        self.code = code


class QueryLimitError(SinkError):
    """An analyst query stopped by one of its limits (time, memory, result rows or bytes)."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class QueryCapacityError(SinkError):
    """Every analyst query slot is busy: the caller retries after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkBackpressureError(SinkError):
    """Raised by a batch write when the destination cannot take writes now (quix-streams' contract).

    The loader keeps the batch, pauses the partition and retries the same offset range after ``retry_after``.
    """

    def __init__(self, retry_after: float, topic: str, partition: int, cause: BaseException | None = None) -> None:
        super().__init__(f"{topic}[{partition}] paused for {retry_after:.2f}s: {cause}")
        self.retry_after = retry_after
        self.topic = topic
        self.partition = partition
        self.cause = cause


class MigrationError(SinkError):
    """A migration file that cannot be applied, or a recorded migration whose file changed."""


class InvalidAnalystError(SinkError):
    """An analyst credential that cannot be created: ``field`` names what is wrong (its id, a tenant)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AnalystExistsError(SinkError):
    """``analysts add`` of an id the analysts file already holds (revoked too): an id names one credential for
    ever, so a revoked one never comes back with other tenants."""

    def __init__(self, analyst_id: str) -> None:
        super().__init__(f"analyst {analyst_id!r} already exists; choose another --id")
        self.analyst_id = analyst_id


class UnknownAnalystError(SinkError):
    """``analysts revoke`` of an id the analysts file does not hold."""

    def __init__(self, analyst_id: str) -> None:
        super().__init__(f"no analyst {analyst_id!r} (see `caliper-pipeline analysts list`)")
        self.analyst_id = analyst_id
