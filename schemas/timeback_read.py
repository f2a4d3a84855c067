"""The Timeback Caliper API's read shapes (what the Timeback SDK, ``timeback-caliper``, parses), built from the
pipeline's own: one stored event, a page's ``pagination``, and the numeric id both carry.

The Timeback API gives each stored event a numeric database id (``id``) beside the Caliper id it was sent with
(``externalId``), and a job's results name both (``allocatedId``, ``externalId``). The pipeline has no row number
that survives merges, re-loads and replays, so the numeric id is derived from the event's canonical id:
``stored_event_id`` is the first 53 bits of its SHA-256, the same for every version of the event, in every answer
and every process, and exact as a JSON number (at most 2**53 - 1). Two distinct ids collide with odds of about
n**2 / 2**54 (one in 18 million for a million events of a tenant); ``externalId`` stays the key to look an event
up with.
"""

from __future__ import annotations

import hashlib
from typing import Any

ID_BITS = 53

# the Caliper fields of an event the Timeback API flattens into the stored event, besides id, type, profile, action
ENTITY_FIELDS = ("actor", "object", "generated", "target", "referrer", "edApp", "group", "membership", "session",
                 "federatedSession")


def stored_event_id(event_id: str) -> int:
    """The numeric id of the event whose canonical Caliper id is ``event_id`` (see the module docstring)."""
    digest = hashlib.sha256(event_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - ID_BITS)


def _entity(value: Any) -> str | dict[str, Any] | None:
    """A Caliper entity as the Timeback API types it (an IRI or an object); anything else is left out here (the
    event as sent, ``event``, still holds it)."""
    return value if isinstance(value, str | dict) else None


def stored_event(payload: Any, *, event_id: str, event_type: str, sensor: str, event_time: str | None,
                 send_time: str | None, created: str | None, updated: str | None, client_id: str) -> dict[str, Any]:
    """The Timeback fields of one stored event: its Caliper fields flattened, ``externalId`` its canonical id,
    ``id`` its numeric id, ``sendTime`` the envelope's send time (the received time where the source sends none),
    ``created_at`` / ``updated_at`` when its first / current version was received."""
    document = payload if isinstance(payload, dict) else {}
    extensions = document.get("extensions")
    profile = document.get("profile")
    action = document.get("action")
    return {
        "id": stored_event_id(event_id), "externalId": event_id, "sensor": sensor,
        "type": str(document.get("type") or event_type), "profile": profile if isinstance(profile, str) else None,
        "action": action if isinstance(action, str) else "", "eventTime": event_time,
        "sendTime": send_time or updated, "created_at": created, "updated_at": updated, "deleted_at": None,
        **{name: _entity(document.get(name)) for name in ENTITY_FIELDS},
        "extensions": extensions if isinstance(extensions, dict) else None, "clientAppId": client_id or None,
    }


def pagination(total: int, limit: int, position: int) -> dict[str, Any]:
    """The Timeback ``pagination`` of a page of ``limit`` events starting ``position`` events into ``total``."""
    return {"total": total, "totalPages": -(-total // limit), "currentPage": position // limit + 1, "limit": limit}
