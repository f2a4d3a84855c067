"""What identifies an event and its content, and who it names: shared by the normalizers (facts), the sink's raw
archive and the read API, so a fact and the archived event it came from agree on the id, the version and the
person.

- ``canonical_id``: an id as stored, ``urn:uuid:`` ids lower-cased (UUIDs compare case-insensitively, RFC 9562);
- ``lower_uuid_urns`` / ``has_upper_case_uuid_urn``: the same for every ``urn:uuid:`` string of a document;
- ``canonical_json`` and ``document_content_hash``: the content hash of an event (sorted keys, after the
  ``urn:uuid`` lower-casing): the same content always has the same hash, a corrected event another one;
- ``event_time_of``: when the event says it happened (Caliper's ``eventTime``; a hub event's ``endedAtTime``, else
  ``lastTime``, else ``startedAtTime``), offset-less times in the tenant's zone: the facts' event time;
- ``learner_candidates``: every id the event names in a role where the learner can be (the actor, the assignee of
  an Attempt as object, generated or generated.attempt, the user of a Session): the normalizers pick ONE of them
  (``streams.normalizers``), the raw archive keeps the keyed pseudonym of each so an erasure finds every archived
  event that names the student, whatever role the normalizer chose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any

import orjson

from schemas.coerce import zoned_time_to_ms
from schemas.hub import EVENT_TIME_FIELDS as HUB_EVENT_TIME_FIELDS
from schemas.kafka import Source
from schemas.records import content_hash_of

_URN_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_URN_UUID_LENGTH = len("urn:uuid:") + 36

# where an event names a person who may be its learner (dotted paths; a value is an IRI or an object with an id)
LEARNER_PATHS: tuple[tuple[str, ...], ...] = (
    ("actor",),
    ("object", "assignee"),
    ("generated", "assignee"),
    ("generated", "attempt", "assignee"),
    ("object", "user"),
)
EVENT_TIME_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    Source.HUB.value: tuple(("object", name) for name in HUB_EVENT_TIME_FIELDS),
    Source.TIMEBACK.value: (("eventTime",),),
    Source.CALIPER.value: (("eventTime",),),
}


def canonical_id(identifier: str) -> str:
    """An event id as stored: ``urn:uuid:`` ids lower-cased, any other id as sent."""
    return identifier.lower() if _URN_UUID.fullmatch(identifier) else identifier


def lower_uuid_urns(document: Any) -> Any:
    """``document`` with every ``urn:uuid:`` string lower-cased: UUIDs compare case-insensitively (RFC 9562), so a
    re-send in upper case is the same event (same fact id, same content hash), not a conflict."""
    if isinstance(document, str):
        return document.lower() if _URN_UUID.fullmatch(document) else document
    if isinstance(document, dict):
        return {key: lower_uuid_urns(value) for key, value in document.items()}
    if isinstance(document, list):
        return [lower_uuid_urns(item) for item in document]
    return document


def has_upper_case_uuid_urn(payload: bytes) -> bool:
    """Whether a JSON payload may hold an ``urn:uuid:`` in other than lower case (the walk is skipped otherwise;
    a false alarm only costs the walk)."""
    lowered = payload.lower()
    start = lowered.find(b"urn:uuid:")
    while start != -1:
        end = start + _URN_UUID_LENGTH
        if payload[start:end] != lowered[start:end]:
            return True
        start = lowered.find(b"urn:uuid:", end)
    return False


def canonical_document(payload: bytes) -> Any:
    """The decoded JSON payload with its ``urn:uuid:`` strings lower-cased (what the content hash is taken of);
    ``orjson.JSONDecodeError`` when it is not JSON."""
    document = orjson.loads(payload)
    return lower_uuid_urns(document) if has_upper_case_uuid_urn(payload) else document


def canonical_json(document: Any) -> bytes:
    """Canonical JSON bytes (sorted keys): the same content always gives the same bytes."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def document_content_hash(document: Any) -> str:
    """The content hash of an event document (``LearningFact.content_hash``; the raw archive's version key)."""
    return content_hash_of(canonical_json(document))


def reference_id(value: Any) -> str:
    """The id of an entity reference: the IRI string itself, or the embedded object's ``id`` ('' for neither)."""
    if isinstance(value, str):
        return value.strip() and value
    if type(value) is dict or isinstance(value, Mapping):  # decoded JSON is a dict: skips the slower ABC check
        identifier = value.get("id")
        return identifier if isinstance(identifier, str) and identifier.strip() else ""
    return ""


def value_at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if type(document) is not dict and not isinstance(document, Mapping):  # see reference_id
            return None
        document = document.get(key)
    return document


def learner_candidates(document: Any) -> list[str]:
    """Every id the event names where its learner can be (``LEARNER_PATHS``), canonical, without repeats."""
    found: list[str] = []
    for path in LEARNER_PATHS:
        identifier = canonical_id(reference_id(value_at(document, path)))
        if identifier and identifier not in found:
            found.append(identifier)
    return found


def event_time_of(source: str, document: Any, zone: tzinfo = UTC) -> int | None:
    """When the event says it happened (UTC epoch ms; ``EVENT_TIME_PATHS``), None when it says nothing readable."""
    for path in EVENT_TIME_PATHS.get(source, EVENT_TIME_PATHS[Source.CALIPER.value]):
        moment = zoned_time_to_ms(value_at(document, path), zone)
        if moment is not None:
            return moment
    return None
