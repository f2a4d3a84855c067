"""The pipeline's one root error class and its data-carrying subclasses."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.reasons import ReasonCode, first_code


class PipelineError(Exception):
    """Root of every error this project raises on purpose; ``reason_code`` is its word in the failed events'
    vocabulary (``schemas.reasons``) where it ends an event's way."""

    reason_code: ReasonCode = ReasonCode.UNKNOWN


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with one field of a payload: a dotted path and what is wrong. ``code`` names a cause more
    precise than the field being missing (``missing``) or invalid (else)."""

    path: str
    message: str
    missing: bool = False
    code: ReasonCode | None = None

    @property
    def reason_code(self) -> ReasonCode:
        if self.code is not None:
            return self.code
        return ReasonCode.FIELD_MISSING if self.missing else ReasonCode.FIELD_INVALID


def problems_code(problems: list[FieldProblem]) -> ReasonCode:
    """The code of a payload with these problems (``schemas.reasons.first_code``)."""
    return first_code([problem.reason_code for problem in problems])


class InvalidSkillCodeError(PipelineError, ValueError):
    """A BNCC skill code whose shape or parts are unknown."""

    reason_code = ReasonCode.FIELD_INVALID

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"invalid BNCC skill code {code!r}: {reason}")
        self.code = code
        self.reason = reason


class SchemaEncodingError(PipelineError):
    """Bytes that no known Avro writer schema can decode, or a record that does not fit its schema; ``record`` and
    ``field`` (a dotted path, ``[]`` for an array's items, ``{}`` for a map's) name what, where known."""

    reason_code = ReasonCode.UNDECODABLE

    def __init__(self, message: str, *, record: str = "", field: str = "") -> None:
        super().__init__(message)
        self.record = record
        self.field = field


class NormalizationError(PipelineError):
    """A validated event that cannot become a learning fact; ``code`` says why when a field does."""

    def __init__(self, reason: str, *, event_id: str = "",
                 code: ReasonCode = ReasonCode.NOT_NORMALIZABLE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id
        self.reason_code = code


class UnknownTimeZoneError(PipelineError, ValueError):
    """A tenant time zone that is not an IANA time zone name this machine knows."""

    reason_code = ReasonCode.NOT_NORMALIZABLE

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown time zone {name!r}: give an IANA name such as America/Sao_Paulo or UTC")
        self.name = name


class InvalidExtensionsKeyError(PipelineError, ValueError):
    """A key of a tenant's extensions policy that cannot be one (empty, too long) or too many keys."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"extensions policy key {key[:80]!r}: {reason}")
        self.key = key
        self.reason = reason
