"""From a validated request body to the raw events the gateway publishes (one per envelope item)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from gateway.publisher import EncodedEvent, OutgoingEvent
from gateway.tokens import Caller
from schemas.caliper import is_event
from schemas.codec import RawEventCodec
from schemas.coerce import time_to_ms
from schemas.event_identity import reference_id
from schemas.jobs import JobRecord, job_records
from schemas.kafka import Source, partition_key
from schemas.records import RawEvent
from schemas.timeback import TIMEBACK_PROFILE

# the RawEvent fields that differ between the events of one envelope (the others are the request's)
_PER_EVENT_FIELDS = ("source", "event_id", "event_type", "profile", "student_id", "envelope_index", "payload")


def envelope_events(envelope: Mapping[str, Any], caller: Caller, received_ms: int,
                    job_id: str = "") -> list[OutgoingEvent]:
    return list(iter_envelope_events(envelope, caller, received_ms, job_id))


def iter_envelope_events(envelope: Mapping[str, Any], caller: Caller, received_ms: int,
                         job_id: str = "") -> Iterator[OutgoingEvent]:
    """One raw event per envelope item, made as they are consumed (so a caller may keep only their encoding);
    each carries the request's ``job_id``."""
    sensor = str(envelope.get("sensor", ""))
    send_time_ms = time_to_ms(envelope.get("sendTime")) or 0
    for index, item in enumerate(envelope["data"]):
        profile = str(item.get("profile", "") or "")
        source = Source.TIMEBACK if profile == TIMEBACK_PROFILE else Source.CALIPER
        student_id = reference_id(item.get("actor")) or reference_id(item)
        event = RawEvent(
            tenant=caller.tenant, client_id=caller.client_id, source=source.value,
            event_id=reference_id(item), event_type=str(item.get("type", "")), profile=profile,
            student_id=student_id, sensor=sensor, send_time_ms=send_time_ms, received_time_ms=received_ms,
            envelope_index=index, payload=orjson.dumps(item), tenant_timezone=caller.tenant_timezone,
            extensions_policy=caller.extensions_policy, job_id=job_id,
        )
        yield OutgoingEvent(source=source, key=partition_key(caller.tenant, student_id), event=event)


def encoded_envelope_events(envelope: Mapping[str, Any], caller: Caller, received_ms: int,
                            codec: RawEventCodec, job_id: str = "") -> list[EncodedEvent]:
    """``envelope_events``, encoded as they go on the raw topics (the same messages as encoding each one's
    ``RawEvent``), without the intermediate objects: the fields every event of the request shares are encoded
    once (``RawEventCodec.writer_for``). The gateway's hot path."""
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


def hub_event(payload: Mapping[str, Any], caller: Caller, received_ms: int, job_id: str = "") -> OutgoingEvent:
    student_id = reference_id(payload["object"].get("assignee"))
    event = RawEvent(
        tenant=caller.tenant, client_id=caller.client_id, source=Source.HUB.value,
        event_id=str(payload["id"]), event_type=str(payload["type"]), profile=str(payload["profile"]),
        student_id=student_id, sensor=reference_id(payload.get("edApp")), send_time_ms=0,
        received_time_ms=received_ms, envelope_index=0, payload=orjson.dumps(payload),
        tenant_timezone=caller.tenant_timezone, extensions_policy=caller.extensions_policy, job_id=job_id,
    )
    return OutgoingEvent(source=Source.HUB, key=partition_key(caller.tenant, student_id), event=event)
