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
