"""The raw archive's row of one raw event (``RawArchiveRow``), built once, by the streams worker.

``archive_row`` reads what the sink's ``raw_events`` needs from a RawEvent: the routing metadata, the canonical event
id and content hash (the facts' own, ``schemas.event_identity``), when the event says it happened (in the tenant's
time zone; the received time where it says nothing readable or outside what ``DateTime64(3)`` holds), and the keyed
pseudonym of every person it names where its learner can be (``student_keys``: what erasure matches on). The worker
publishes the rows on the archive topic beside the facts (``streams.publishing``); the sink appends them to
``raw_events_in`` as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from schemas.errors import UnknownTimeZoneError
from schemas.event_identity import (
    canonical_document,
    canonical_id,
    document_content_hash,
    event_time_of,
    learner_candidates,
    reference_id,
)
from schemas.privacy import student_key_for
from schemas.records import RawArchiveRow, RawEvent
from schemas.tenants import DEFAULT_TIMEZONE, zone_for

# DateTime64(3)'s range: an event time outside it is stored as the received time (the payload keeps the original)
EARLIEST_MS, LATEST_MS = -2_208_988_800_000, 10_413_791_999_999  # 1900-01-01, 2299-12-31T23:59:59.999

StudentKeys = Callable[[str, str], str]  # (tenant, person) -> the keyed pseudonym


def cached_student_keys(student_key: bytes, size: int = 20_000) -> StudentKeys:
    """``student_key_for`` with ``student_key``, remembering the last ``size`` people: a school's students send
    event after event, and the HMAC is a sizeable part of an archive row's cost."""
    return functools.lru_cache(maxsize=size)(lambda tenant, person: student_key_for(tenant, person, student_key))


def archive_row(raw: RawEvent, student_key: bytes, keys: StudentKeys | None = None) -> RawArchiveRow:
    """The archive row of one raw event; ValueError (orjson's) when its payload is not JSON. ``keys``: the
    pseudonyms of ``student_key`` (``cached_student_keys``), computed here when not given."""
    key_of = keys or (lambda tenant, person: student_key_for(tenant, person, student_key))
    document = canonical_document(raw.payload)
    try:
        zone = zone_for(raw.tenant_timezone or DEFAULT_TIMEZONE)
    except UnknownTimeZoneError:  # the event is archived all the same; its time is then read as UTC
        zone = zone_for(DEFAULT_TIMEZONE)
    event_time = event_time_of(raw.source, document, zone)
    if event_time is None or not EARLIEST_MS <= event_time <= LATEST_MS:
        event_time = raw.received_time_ms
    people = learner_candidates(document)
    gateway_student = canonical_id(raw.student_id)
    if gateway_student and gateway_student not in people:
        people.append(gateway_student)
    return RawArchiveRow(
        tenant=raw.tenant, client_id=raw.client_id, source=raw.source, event_id=canonical_id(raw.event_id),
        content_hash=document_content_hash(document), event_type=raw.event_type, profile=raw.profile,
        student_id=raw.student_id, student_keys=[key_of(raw.tenant, person) for person in people],
        actor_id=canonical_id(reference_id(document.get("actor") if isinstance(document, dict) else None)),
        sensor=raw.sensor, event_time_ms=event_time, send_time_ms=raw.send_time_ms or None,
        received_time_ms=raw.received_time_ms, envelope_index=raw.envelope_index,
        tenant_timezone=raw.tenant_timezone, payload=raw.payload.decode(), job_id=raw.job_id,
        extensions_policy=raw.extensions_policy)
