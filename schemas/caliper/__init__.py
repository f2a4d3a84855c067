"""IMS Caliper 1.2 (+ TimebackProfile) validation for events, entities and envelopes."""

from schemas.caliper.envelope import (
    EnvelopeCheck,
    check_envelope,
    drop_optional_nulls,
    validate_endpoint_config,
    validate_envelope,
)
from schemas.caliper.terms import CALIPER_CONTEXT_V1P2
from schemas.caliper.validator import is_event, validate_caliper_item

__all__ = [
    "CALIPER_CONTEXT_V1P2",
    "EnvelopeCheck",
    "check_envelope",
    "drop_optional_nulls",
    "is_event",
    "validate_caliper_item",
    "validate_endpoint_config",
    "validate_envelope",
]
