"""IMS Caliper 1.2 (+ TimebackProfile) and 1.1 validation for events, entities and envelopes."""

from schemas.caliper.envelope import (
    EnvelopeCheck,
    check_envelope,
    drop_optional_nulls,
    validate_endpoint_config,
    validate_envelope,
)
from schemas.caliper.terms import CALIPER_CONTEXT_V1P1, CALIPER_CONTEXT_V1P2
from schemas.caliper.validator import is_event, validate_caliper_item
from schemas.caliper.versions import VERSIONS, CaliperVersion, version_of_context

__all__ = [
    "CALIPER_CONTEXT_V1P1",
    "CALIPER_CONTEXT_V1P2",
    "VERSIONS",
    "CaliperVersion",
    "EnvelopeCheck",
    "check_envelope",
    "drop_optional_nulls",
    "is_event",
    "validate_caliper_item",
    "validate_endpoint_config",
    "validate_envelope",
    "version_of_context",
]
