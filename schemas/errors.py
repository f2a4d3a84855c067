"""The pipeline's one root error class and its data-carrying subclasses."""

from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    """Root of every error this project raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with one field of a payload: a dotted path and what is wrong."""

    path: str
    message: str
    missing: bool = False


class InvalidSkillCodeError(PipelineError, ValueError):
    """A BNCC skill code whose shape or parts are unknown."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"invalid BNCC skill code {code!r}: {reason}")
        self.code = code
        self.reason = reason


class SchemaEncodingError(PipelineError):
    """Bytes that no known Avro writer schema can decode, or a record that does not fit its schema."""


class NormalizationError(PipelineError):
    """A validated event that cannot become a learning fact."""

    def __init__(self, reason: str, *, event_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class UnknownTimeZoneError(PipelineError, ValueError):
    """A tenant time zone that is not an IANA time zone name this machine knows."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown time zone {name!r}: give an IANA name such as America/Sao_Paulo or UTC")
        self.name = name


class InvalidExtensionsKeyError(PipelineError, ValueError):
    """A key of a tenant's extensions policy that cannot be one (empty, too long) or too many keys."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"extensions policy key {key[:80]!r}: {reason}")
        self.key = key
        self.reason = reason
