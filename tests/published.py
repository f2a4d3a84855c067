"""The raw events the gateway publishes for a request, as the worker reads them: the gateway's one ingest path
(``gateway.ingest``) encodes them and its publisher's ``raw_batch_records`` makes the raw topics' batch records of
them, which are decoded here with the raw topics' codec (tests read what was published, never a second
construction of it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.ingest import encoded_envelope_events, encoded_hub_event
from gateway.publisher import EncodedEvent, raw_batch_records
from gateway.settings import GatewaySettings
from gateway.tokens import Caller
from schemas.codec import RawEventCodec
from schemas.kafka import KafkaSettings, Source
from schemas.records import RawEvent

CODEC = RawEventCodec()
_KAFKA = KafkaSettings()
_PARTITIONS = list(range(_KAFKA.partitions))


def as_read(events: list[EncodedEvent]) -> list[RawEvent]:
    """A request's encoded events as readers of the raw topics decode them from its batch records (in the
    request's order: ``envelope_index``)."""
    records = raw_batch_records(events, CODEC, {source: _KAFKA.topics.raw(source) for source in Source},
                                {source: (_PARTITIONS, _PARTITIONS) for source in Source},
                                GatewaySettings.model_fields["max_event_bytes"].default)
    return sorted((raw for record in records for raw in CODEC.decode_events(record.value)),
                  key=lambda raw: raw.envelope_index)


def published_events(envelope: Mapping[str, Any], caller: Caller, received_ms: int,
                     job_id: str = "") -> list[RawEvent]:
    """The raw events of a validated Caliper envelope, one per item, as published."""
    return as_read(encoded_envelope_events(envelope, caller, received_ms, CODEC, job_id))


def published_hub_event(payload: Mapping[str, Any], caller: Caller, received_ms: int, job_id: str = "") -> RawEvent:
    """The raw event of a validated hub event, as published."""
    [event] = as_read([encoded_hub_event(payload, caller, received_ms, CODEC, job_id)])
    return event
