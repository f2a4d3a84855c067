"""The records that travel on Kafka: raw events (gateway -> streams, alone or in a ``RawEventBatch``), learning facts
and raw-archive rows (streams -> sinks, in blocks: ``LearningFactBlock``, ``RawArchiveBlock``).

Each is a slotted dataclass, the single source of its field list: the Avro schemas in ``schemas/avro/`` are
generated from these classes (``python -m schemas.avro.generate``) and a test keeps the released catalog in step.
Times are UTC epoch milliseconds (``*_ms``), dates are days since 1970-01-01 (``*_days``); optional values are
``None`` only where no default serves (a score of 0 is a real score, an absent one is not).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field, fields

FACT_ID_NAMESPACE = uuid.UUID("6f1d7c1e-4b0e-5a57-9c52-7f0b8f1c2a10")


@dataclass(slots=True)
class RawEvent:
    """One validated event as the gateway publishes it: typed routing metadata plus the event as JSON bytes.

    ``send_time_ms`` is the envelope's sendTime, 0 where the source has none (the hub). ``tenant_timezone`` is the
    IANA time zone of the tenant when the gateway accepted the event (``schemas.tenants``; v1 messages read as UTC).
    ``job_id`` names the accepted request (``schemas.jobs``), ``envelope_index`` the event's position in it.
    """

    tenant: str
    client_id: str
    source: str
    event_id: str
    event_type: str
    profile: str
    student_id: str
    sensor: str
    send_time_ms: int
    received_time_ms: int
    envelope_index: int
    payload: bytes
    tenant_timezone: str = "UTC"
    job_id: str = ""  # the job of the request that carried it (schemas.jobs; '' before raw_event v3)
    # the tenant's adjustments of the personal-data policy of extensions when the gateway accepted the event
    # (schemas.personal_data.ExtensionsPolicy.to_text); '' the default policy (and before raw_event v4)
    extensions_policy: str = ""


@dataclass(slots=True)
class RawEventBatch:
    """Raw events of one request for one partition of a raw topic, in request order, as one Kafka record.

    The gateway writes one per (request, partition) (``docs/architecture.md``, "Raw batch records"): a Kafka record
    costs the clients and the broker far more than the bytes of an event, so fewer records cost less per event.
    Every reader of a raw topic also reads a lone ``RawEvent`` record (``RawEventCodec.decode_events``): those
    written before batches, and a dead letter's event put back by a replay.
    """

    events: list[RawEvent]


@dataclass(slots=True)
class LearningFact:
    """One learning fact: what every source (Timeback, hub, generic Caliper) is normalized into.

    ``docs/fact-mapping.md`` (generated from this class and the normalizers' rules) says where each field comes
    from. Since v3: ``send_time_ms`` is None where the source has no sendTime (the hub); ``event_date_days`` is
    the local date of ``event_time_ms`` in ``tenant_timezone`` (None only in facts written before v3: the sink
    then takes the UTC date); ``learner_role`` says how the student was found: ``actor`` (a Person actor),
    ``assignee`` (the assignee of the event's Attempt), ``session_user`` (the user of the Session a SessionEvent
    is about) or ``none`` (no learner: ``student_id`` is empty; the actor is then named by ``actor_id`` and
    ``actor_type``, never as a student); ``''`` in facts written before v3. Since v4: ``derived_time_ms`` says
    when the fact was derived (None before v4), so the newest derivation of a version is the current one.
    """

    fact_id: str
    fact_index: int
    content_hash: str
    tenant: str
    client_id: str
    source: str
    event_id: str
    event_type: str
    profile: str
    action: str
    event_time_ms: int
    send_time_ms: int | None
    received_time_ms: int
    event_date_days: int | None = None  # local date of event_time_ms in tenant_timezone, days since 1970-01-01
    tenant_timezone: str = "UTC"
    date_created_ms: int | None = None  # when the source created the record (hub: object.dateCreated)
    sensor: str = ""
    ed_app: str = ""
    student_id: str = ""
    student_email_hash: str = ""
    student_key: str = ""  # keyed pseudonym of tenant + student (schemas.privacy.student_key_for): erasure's key
    student_email: str = ""
    actor_id: str = ""
    actor_type: str = ""
    actor_host: str = ""
    learner_role: str = ""  # actor | assignee | session_user | none ('' before v3)
    learner_type: str = ""  # the learner's Caliper type (Person, TimebackUser...)
    object_id: str = ""
    object_type: str = ""
    object_name: str = ""
    generated_id: str = ""
    generated_type: str = ""
    activity_id: str = ""
    activity_name: str = ""
    activity_type: str = ""
    course_id: str = ""
    course_name: str = ""
    app_name: str = ""
    subject_name: str = ""
    discipline_code: str = ""
    discipline_type: str = ""
    bncc_code: str = ""
    bncc_stage: str = ""
    bncc_year_group: str = ""
    bncc_component: str = ""
    bncc_number: str = ""
    xp_earned: float = 0.0
    total_questions: float = 0.0
    correct_questions: float = 0.0
    mastered_units: float = 0.0
    seconds_active: float = 0.0
    seconds_inactive: float = 0.0
    seconds_waste: float = 0.0
    seconds_unknown: float = 0.0
    seconds_anti_pattern: float = 0.0
    seconds_by_sub_type: dict[str, float] = field(default_factory=dict)  # "waste/eating" -> seconds (Timeback)
    score_given: float | None = None
    max_score: float | None = None
    score_ratio: float | None = None
    proficiency_level: str = ""
    attempts: int | None = None
    started_time_ms: int | None = None
    ended_time_ms: int | None = None
    last_access_time_ms: int | None = None
    total_time_seconds: float | None = None
    percent_read: float | None = None
    completion_type: str = ""
    finished: bool | None = None
    frequency_assigned: int | None = None
    book_level: str = ""
    session_id: str = ""
    group_id: str = ""
    normalizer_version: str = ""
    # when this derivation of the event was made (epoch ms; the streams worker, or ``renormalize`` re-deriving it
    # from the raw archive): the last tie-break of the current version, so a re-derivation replaces the one before
    derived_time_ms: int | None = None
    extensions_json: str = "{}"
    # since v5: the job of the request that carried the event (schemas.jobs) and the event's position in it;
    # None for facts of older writers and for re-derivations (renormalize), which belong to no request
    job_id: str | None = None
    envelope_index: int | None = None
    # since v6: the Caliper version of the event ("1.1" or "1.2"), read from its @context (a 1.1 event always
    # carries one); "1.2" for an event without one and for facts of older writers, which accepted only 1.2
    caliper_version: str = "1.2"

    def to_record(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in LEARNING_FACT_FIELDS}


@dataclass(slots=True)
class RawArchiveRow:
    """One row of the raw archive (``raw_events_in``, migrations 008 and 015), built by the streams worker.

    The routing metadata of a RawEvent, its canonical event id and content hash (the facts' own,
    ``schemas.event_identity``), when it says it happened (``event_time_ms``; the received time where it says
    nothing readable), the keyed pseudonym of every person it names where its learner can be (``student_keys``:
    what erasure matches on) and its JSON as sent (``payload``). ``schemas.archive_rows.archive_row`` builds it.
    """

    tenant: str
    client_id: str
    source: str
    event_id: str
    content_hash: str
    event_type: str
    profile: str
    student_id: str
    student_keys: list[str]
    actor_id: str
    sensor: str
    event_time_ms: int
    send_time_ms: int | None
    received_time_ms: int
    envelope_index: int
    tenant_timezone: str
    payload: str
    job_id: str = ""
    extensions_policy: str = ""


@dataclass(slots=True)
class LearningFactBlock:
    """The learning facts of one record on the facts topic: one streams batch's facts of one partition, in order.

    Its body is the facts' own Avro bodies joined as one array block (``schemas.blocks``), so the sink appends
    them to a container file without decoding them."""

    facts: list[LearningFact]


@dataclass(slots=True)
class RawArchiveBlock:
    """The raw-archive rows of one record on the archive topic: one streams batch's rows of one partition."""

    rows: list[RawArchiveRow]


LEARNING_FACT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LearningFact))
RAW_EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RawEvent))
RAW_ARCHIVE_ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RawArchiveRow))


_FACT_ID_SHA1 = hashlib.sha1(FACT_ID_NAMESPACE.bytes, usedforsecurity=False)  # the namespace's part of uuid5


def fact_id_for(tenant: str, event_id: str, fact_index: int = 0) -> str:
    """Deterministic fact id: the same tenant, event id and sub-index always give the same id (replays).

    ``str(uuid.uuid5(FACT_ID_NAMESPACE, name))``, computed without building a ``UUID`` (its constructor and
    ``__str__`` cost more than the hash): SHA-1 of the namespace's bytes (hashed once) then the name, the first
    16 bytes with uuid5's version (5) and variant (RFC 4122) bits, written 8-4-4-4-12
    (tests/unit/schemas/test_record_keys.py checks it against uuid5)."""
    digest = _FACT_ID_SHA1.copy()
    digest.update(f"{tenant}\x1f{event_id}\x1f{fact_index}".encode())
    head = digest.digest()
    hex_id = (head[:6] + bytes(((head[6] & 0x0F) | 0x50, head[7], (head[8] & 0x3F) | 0x80)) + head[9:16]).hex()
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def pseudonymize_email(email: str, key: bytes) -> str:
    """Keyed hash (HMAC-SHA256) of a case-folded email: joinable across events, not reversible without the key."""
    if not email:
        return ""
    return hmac.digest(key, email.strip().casefold().encode(), "sha256").hex()  # one-shot C HMAC: hmac.new's bytes


def content_hash_of(payload: bytes) -> str:
    """Hash of an event's canonical JSON bytes; tells a re-send (same hash) from a conflict (different hash)."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()
