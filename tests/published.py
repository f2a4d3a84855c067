"""The raw events the gateway publishes for a request, as the worker reads them: the gateway's one ingest path
(``gateway.ingest``) encodes them, and they are decoded here with the raw topics' codec (tests read what was
published, never a second construction of it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.ingest import encoded_envelope_events, encoded_hub_event
from gateway.tokens import Caller
from schemas.codec import RawEventCodec
from schemas.records import RawEvent

CODEC = RawEventCodec()


def published_events(envelope: Mapping[str, Any], caller: Caller, received_ms: int,
                     job_id: str = "") -> list[RawEvent]:
    """The raw events of a validated Caliper envelope, one per item, as published."""
    return [CODEC.decode_record(item.value)
            for item in encoded_envelope_events(envelope, caller, received_ms, CODEC, job_id)]


def published_hub_event(payload: Mapping[str, Any], caller: Caller, received_ms: int, job_id: str = "") -> RawEvent:
    """The raw event of a validated hub event, as published."""
    return CODEC.decode_record(encoded_hub_event(payload, caller, received_ms, CODEC, job_id).value)
