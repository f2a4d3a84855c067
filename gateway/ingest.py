"""From a validated request body to the raw events the gateway publishes (one per envelope item)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.publisher import EncodedEvent
from gateway.tokens import Caller
from schemas.avro.codec import RawEventCodec
from schemas.caliper import is_event
from schemas.coerce import time_to_ms
from schemas.event_identity import reference_id
from schemas.jobs import JobRecord, job_records
from schemas.kafka import Source, partition_key
from schemas.timeback import TIMEBACK_PROFILE

# the RawEvent fields that differ between the events of one envelope (the others are the request's)
_PER_EVENT_FIELDS = ("source", "event_id", "event_type", "profile", "student_id", "envelope_index", "payload")


def encoded_envelope_events(envelope: Mapping[str, Any], caller: Caller, received_ms: int,
                            codec: RawEventCodec, job_id: str = "") -> list[EncodedEvent]:
    """One raw event per envelope item (entities too: the worker skips them), encoded as it goes on its raw topic,
    without an intermediate ``RawEvent``: the fields every event of the request shares are encoded once
    (``RawEventCodec.writer_for``)."""
    tenant = caller.tenant
    write = codec.writer_for(
        _PER_EVENT_FIELDS, tenant=tenant, client_id=caller.client_id, sensor=str(envelope.get("sensor", "")),
        send_time_ms=time_to_ms(envelope.get("sendTime")) or 0, received_time_ms=received_ms,
        tenant_timezone=caller.tenant_timezone, extensions_policy=caller.extensions_policy, job_id=job_id)
    timeback, caliper = Source.TIMEBACK, Source.CALIPER
    encoded = []
    for index, item in enumerate(envelope["data"]):
        profile = str(item.get("profile", "") or "")
        source = timeback if profile == TIMEBACK_PROFILE else caliper
        event_id = reference_id(item)
        student_id = reference_id(item.get("actor")) or event_id
        message = write(source.value, event_id, str(item.get("type", "")), profile, student_id, index,
                        orjson.dumps(item))
        encoded.append(EncodedEvent(source, partition_key(tenant, student_id), message))
    return encoded


def envelope_job(envelope: Mapping[str, Any], caller: Caller, received_ms: int, job_id: str) -> list[JobRecord]:
    """The job records of an accepted envelope: its events (``is_event``, the normalizers' own test: an entity
    yields no fact, so it is counted, not followed)."""
    events = [(index, reference_id(item)) for index, item in enumerate(envelope["data"]) if is_event(item)]
    return job_records(job_id=job_id, tenant=caller.tenant, client_id=caller.client_id, endpoint="caliper",
                       received_time_ms=received_ms, events=events, entities=len(envelope["data"]) - len(events))


def hub_job(payload: Mapping[str, Any], caller: Caller, received_ms: int, job_id: str) -> list[JobRecord]:
    return job_records(job_id=job_id, tenant=caller.tenant, client_id=caller.client_id, endpoint="hub",
                       received_time_ms=received_ms, events=[(0, str(payload["id"]))], entities=0)


def encoded_hub_event(payload: Mapping[str, Any], caller: Caller, received_ms: int, codec: RawEventCodec,
                      job_id: str = "") -> EncodedEvent:
    """The raw event of a hub request (one event, no envelope), encoded as it goes on the hub's raw topic: the same
    fields as a Caliper item's (the learner is the object's assignee; no send time)."""
    student_id = reference_id(payload["object"].get("assignee"))
    write = codec.writer_for(
        _PER_EVENT_FIELDS, tenant=caller.tenant, client_id=caller.client_id, sensor=reference_id(payload.get("edApp")),
        send_time_ms=0, received_time_ms=received_ms, tenant_timezone=caller.tenant_timezone,
        extensions_policy=caller.extensions_policy, job_id=job_id)
    message = write(Source.HUB.value, str(payload["id"]), str(payload["type"]), str(payload["profile"]), student_id,
                    0, orjson.dumps(payload))
    return EncodedEvent(Source.HUB, partition_key(caller.tenant, student_id), message)
