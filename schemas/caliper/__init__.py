"""IMS Caliper 1.2 (+ TimebackProfile) validation for events, entities and envelopes."""

from schemas.caliper.terms import CALIPER_CONTEXT_V1P2
from schemas.caliper.validator import (
    FieldError,
    is_event,
    validate_caliper_item,
    validate_endpoint_config,
    validate_envelope,
)

__all__ = [
    "CALIPER_CONTEXT_V1P2",
    "FieldError",
    "is_event",
    "validate_caliper_item",
    "validate_endpoint_config",
    "validate_envelope",
]
