"""The reason codes of failed events: one stable word per kind of failure, shared by every stage that produces one.

A failed event (``sinks.failed``) keeps a human-readable ``reason`` (which field, which rule; never a value) and
its ``reason_code``, one of ``ReasonCode``: what analysts group by (``failed_events_summary``), what ``replay
--from-failed --reason-code`` selects. The vocabulary is closed: every failure the pipeline records carries one of
these codes, and a new kind of failure gets a new member here (and a line in docs/analytics.md) before any stage
produces it. The stages that produce each code are in ``STAGES``.

Where a request or an event has several problems, its code is the first of theirs in the order below (the most
fundamental first: a body that is not JSON before a missing field, a missing field before an invalid one).
Records and rows written before the code existed read with the code their detail implies (migration 013).
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Why an event failed, by kind; the value is what the tables and the records carry."""

    MALFORMED_JSON = "malformed_json"  # the request's body is not JSON
    UNREADABLE_BODY = "unreadable_body"  # the request's body could not be read or decoded (its Content-Encoding)
    UNSUPPORTED_VERSION = "unsupported_version"  # a Caliper dataVersion the gateway does not accept
    UNKNOWN_TYPE = "unknown_type"  # a type this Caliper version (or the item's @context) does not define here
    UNKNOWN_PROFILE = "unknown_profile"  # a profile this Caliper version does not define, or not of the event type
    FIELD_MISSING = "field_missing"  # a required field is missing or null
    FIELD_INVALID = "field_invalid"  # a field breaks its rule (type, format, vocabulary, range, length, nesting)
    UNDECODABLE = "undecodable"  # a message that is not a record its Avro or JSON schema decodes
    NOT_NORMALIZABLE = "not_normalizable"  # an accepted event that yields no fact (its source, time zone, id or time)
    INTERNAL_ERROR = "internal_error"  # a defect of the worker's code met the event (replay it after the fix)
    CLICKHOUSE_REFUSED = "clickhouse_refused"  # ClickHouse refused the row at load (its error code in the reason)
    UNKNOWN = "unknown"  # none of the above: written before the codes with no cause in its detail, or unforeseen


STAGE_GATEWAY, STAGE_STREAMS, STAGE_SINK = "gateway", "streams", "sink"  # where an event failed (the stage column)

# The stages whose failures carry each code (docs/analytics.md shows the same table).
STAGES: dict[ReasonCode, tuple[str, ...]] = {
    ReasonCode.MALFORMED_JSON: (STAGE_GATEWAY,),
    ReasonCode.UNREADABLE_BODY: (STAGE_GATEWAY,),
    ReasonCode.UNSUPPORTED_VERSION: (STAGE_GATEWAY,),
    ReasonCode.UNKNOWN_TYPE: (STAGE_GATEWAY,),
    ReasonCode.UNKNOWN_PROFILE: (STAGE_GATEWAY,),
    ReasonCode.FIELD_MISSING: (STAGE_GATEWAY, STAGE_STREAMS),
    ReasonCode.FIELD_INVALID: (STAGE_GATEWAY, STAGE_STREAMS),
    ReasonCode.UNDECODABLE: (STAGE_STREAMS, STAGE_SINK),
    ReasonCode.NOT_NORMALIZABLE: (STAGE_STREAMS,),
    ReasonCode.INTERNAL_ERROR: (STAGE_STREAMS,),
    ReasonCode.CLICKHOUSE_REFUSED: (STAGE_SINK,),
    ReasonCode.UNKNOWN: (STAGE_GATEWAY, STAGE_STREAMS),
}


def first_code(codes: list[ReasonCode]) -> ReasonCode:
    """The code of a failure with several problems: the first of theirs in the vocabulary's order; ``unknown``
    when there are none."""
    order = list(ReasonCode)
    return min(codes, key=order.index) if codes else ReasonCode.UNKNOWN


def read_code(value: object) -> ReasonCode | None:
    """A record's code, or None when it has none this reader knows (written before the codes, or by a newer
    writer): the detail then decides (migration 013)."""
    try:
        return ReasonCode(value) if isinstance(value, str) else None
    except ValueError:
        return None
