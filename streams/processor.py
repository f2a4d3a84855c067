"""Raw message bytes -> the records the worker produces; no faust here (the wiring is ``streams.worker``).

``EventProcessor.process_message`` decodes one raw message (``RawEventCodec.decode_events``: a batch of events or a
lone one), normalizes each event and Avro-encodes every fact (``LearningFactCodec``), keyed by the pipeline's
``partition_key`` (tenant + student) so one student's facts stay in order on one partition.

Every raw event that decodes also becomes its raw-archive row (``schemas.archive_rows``; Avro, on the archive
topic, keyed like the facts), whatever its facts: the sink archives it as it is. A payload that is not JSON has no
row (its dead letter keeps it).

Failures are data: a message that cannot be decoded, or an event that cannot be normalized, becomes one
``schemas.side_topics.DeadLetter`` (reason, worker version, topic, partition, offset, the event's position in its
batch record, the original bytes: the event alone) for the dead-letter topic, and processing goes on.

Conflicts (same event id, different content): the fact's ``content_hash`` lets the sink keep both versions
(it is in the sink's sort key); the processor also remembers the last hashes in a bounded LRU
(``ConflictTracker``) and adds a ``ConflictNotice`` for the conflicts topic when an event id comes back with
other content.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.archive_rows import archive_row, cached_student_keys
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.blocks import RawArchiveRowCodec
from schemas.errors import PipelineError
from schemas.kafka import Topics, partition_key
from schemas.privacy import PrivacySettings
from schemas.reasons import ReasonCode
from schemas.record_batches import OutboundRecord
from schemas.records import LearningFact, RawEvent
from schemas.side_topics import ConflictNotice, DeadLetter
from streams.metrics import StreamsMetrics
from streams.normalizers import NormalizeOptions, normalize_with
from streams.settings import StreamsSettings

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ProcessedEvent:
    """What one raw event became: the records to produce and what to count."""

    records: list[OutboundRecord] = field(default_factory=list)
    facts: list[LearningFact] = field(default_factory=list)
    dead_letter_reason: str = ""
    conflicts: int = 0


Publisher = Callable[[Sequence[OutboundRecord]], Awaitable[None]]


class ConflictTracker:
    """A bounded LRU of event key -> content hash; tells a re-send (same hash) from a conflict.

    It fills up at the worker's rate and stays full, so what one entry costs is most of the worker's steady
    memory: an entry keeps none of the fact's strings, only the 64-bit ``hash()`` of the key (two keys colliding,
    ~2^-64 a pair, would give a false conflict notice, never lose data) and the content hash as an int
    (``content_hash_of``'s 32 hex digits; any other string is kept as it is).
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._hashes: OrderedDict[int, int | str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hashes)

    def seen(self, key: tuple[str, str, int], content_hash: str) -> str | None:
        """Remember ``content_hash``; return the previous different hash when this is a conflict."""
        slot = hash(key)
        previous = self._hashes.get(slot)
        compact = _compact_hash(content_hash)
        self._hashes[slot] = compact
        self._hashes.move_to_end(slot)
        if len(self._hashes) > self.max_entries:
            self._hashes.popitem(last=False)
        if previous is None or previous == compact:
            return None
        return previous if isinstance(previous, str) else f"{previous:032x}"


def _compact_hash(content_hash: str) -> int | str:
    """A content hash of 32 lower-case hex digits as an int (44 bytes instead of an 81-byte str)."""
    if len(content_hash) == 32:
        with contextlib.suppress(ValueError):
            value = int(content_hash, 16)
            if f"{value:032x}" == content_hash:
                return value
    return content_hash


def fact_key(fact: LearningFact) -> bytes:
    """The facts topic's key: the pipeline's ``partition_key`` of tenant + student, so one student's facts keep
    their order on one partition (every producer of the pipeline uses ``crc32_partitioner``)."""
    return partition_key(fact.tenant, fact.student_id)


def stamp_derived(facts: list[LearningFact], at_ms: int | None = None) -> list[LearningFact]:
    """Mark the facts as derived now (``derived_time_ms``): of two derivations of one version, the newer is current."""
    now = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    for fact in facts:
        fact.derived_time_ms = now
    return facts


def with_job(facts: list[LearningFact], raw: RawEvent) -> list[LearningFact]:
    """The facts of ``raw`` marked with its job and position in it (delivery receipts, ``schemas.jobs``)."""
    if raw.job_id:
        for fact in facts:
            fact.job_id = raw.job_id
            fact.envelope_index = raw.envelope_index
    return facts


class EventProcessor:
    """Raw message bytes -> the records to produce (facts, or a dead letter, plus conflict notices)."""

    def __init__(self, settings: StreamsSettings, topics: Topics, privacy: PrivacySettings,
                 metrics: StreamsMetrics | None = None, *,
                 codecs: tuple[RawEventCodec, LearningFactCodec] | None = None,
                 archive_codec: RawArchiveRowCodec | None = None, archive: bool = True,
                 notice_conflicts: bool = True, worker_version: str | None = None) -> None:
        privacy.require_keys()  # never produce facts with unkeyed (or empty-keyed) pseudonyms
        self.settings = settings
        # who signs the dead letters and conflict notices (the facts' normalizer version stays the settings')
        self.worker_version = settings.worker_version if worker_version is None else worker_version
        self.topics = topics
        self.metrics = metrics or StreamsMetrics()
        self.options = NormalizeOptions(
            email_hash_key=privacy.email_hash_key_bytes,
            keep_raw_email=privacy.keep_raw_email,
            normalizer_version=settings.normalizer_version,
            student_key=privacy.student_key_bytes,
        )
        self.raw_codec, self.fact_codec = codecs or (RawEventCodec(), LearningFactCodec())
        self.archive_codec = archive_codec or RawArchiveRowCodec()
        self.student_key = privacy.student_key_bytes
        self.student_keys = cached_student_keys(self.student_key)
        self.conflicts = ConflictTracker(settings.conflict_cache_size)
        self.notice_conflicts = notice_conflicts  # False: facts only (a re-derivation's conflicts were noticed)
        self.archive = archive  # False: no archive rows (a re-derivation reads its events from the archive)
        self._events_in: dict[str, Any] = {}
        self._facts_out: dict[str, Any] = {}

    def _count_event_in(self, topic: str) -> None:
        child = self._events_in.get(topic)
        if child is None:
            child = self._events_in[topic] = self.metrics.events_in.labels(topic=topic)
        child.inc()

    def _count_fact_out(self, source: str) -> None:
        child = self._facts_out.get(source)
        if child is None:
            child = self._facts_out[source] = self.metrics.facts_out.labels(source=source)
        child.inc()

    def process_message(self, topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None) -> list[ProcessedEvent]:
        """What each event of one raw message became, in order: the events of a ``RawEventBatch`` (what the gateway
        writes), or the one of a lone ``RawEvent`` (written before batches, or put back by a replay). A message
        that does not decode is one dead letter holding its bytes; an event that cannot be normalized is a dead
        letter of its own (``_dead_letter``), the batch's other events become facts all the same."""
        message = value or b""
        try:
            raws = self.raw_codec.decode_events(message)
        except PipelineError as error:
            self._count_event_in(topic)
            return [self._dead_letter(ProcessedEvent(), f"{type(error).__name__}: {error}", error.reason_code, topic,
                                      partition, offset, key, message, None, None)]
        except Exception as error:  # a bug must not stop the stream: the message is kept as data to replay
            logger.exception("internal error decoding %s[%d] offset %d", topic, partition, offset)
            self._count_event_in(topic)
            return [self._dead_letter(ProcessedEvent(), f"internal error {type(error).__name__}",
                                      ReasonCode.INTERNAL_ERROR, topic, partition, offset, key, message, None, None)]
        if len(raws) == 1 and not self.raw_codec.batch_codec.names_writer(message):  # a lone RawEvent record
            return [self._process_event(raws[0], topic, partition, offset, key, message, None)]
        return [self._process_event(raw, topic, partition, offset, key, message, index)
                for index, raw in enumerate(raws)]

    def process_event(self, raw: RawEvent, topic: str) -> ProcessedEvent:
        """What one event that came from no raw message became (``caliper-pipeline renormalize``: an event read
        back from the raw archive), as ``process_message`` makes it, with ``partition`` and ``offset`` -1 and
        ``topic`` its source's raw topic: its dead letter holds the event alone as a lone RawEvent record, keyed
        as the gateway keys it (what a replay puts back)."""
        return self._process_event(raw, topic, -1, -1, None, None, None)

    def _process_event(self, raw: RawEvent, topic: str, partition: int, offset: int, key: bytes | None,
                       message: bytes | None, batch_index: int | None) -> ProcessedEvent:
        """One event's facts (or its dead letter) and conflict notices; ``batch_index``: its position in the batch
        record ``message`` (None for a lone RawEvent record); ``message`` None: the event came from no record."""
        self._count_event_in(topic)
        result = ProcessedEvent()
        archived = self._archive_record(raw)  # an event that decoded is archived whatever its facts (never raises)
        try:
            result.facts = with_job(stamp_derived(normalize_with(raw, self.options)), raw)
            result.records = [OutboundRecord(self.topics.facts, fact_key(fact), self.fact_codec.encode_record(fact))
                              for fact in result.facts]
        except PipelineError as error:
            self._dead_letter(result, f"{type(error).__name__}: {error}", error.reason_code, topic,
                              partition, offset, key, message, raw, batch_index)
            result.records += archived
            return result
        except Exception as error:  # a bug must not stop the stream: the event is kept as data to replay
            # the reason names the error's type only (its message may quote the event's values); the log has it all
            logger.exception("internal error processing %s[%d] offset %d", topic, partition, offset)
            self._dead_letter(result, f"internal error {type(error).__name__}", ReasonCode.INTERNAL_ERROR,
                              topic, partition, offset, key, message, raw, batch_index)
            result.records += archived
            return result
        result.records += archived
        for fact in result.facts:
            self._count_fact_out(fact.source)
            if not self.notice_conflicts:
                continue
            previous = self.conflicts.seen((fact.tenant, fact.event_id, fact.fact_index), fact.content_hash)
            if previous is not None:
                result.conflicts += 1
                self.metrics.conflicts.labels(tenant=fact.tenant).inc()
                result.records.append(OutboundRecord(self.topics.conflicts, fact_key(fact), ConflictNotice(
                    tenant=fact.tenant, source=fact.source, event_id=fact.event_id, fact_index=fact.fact_index,
                    previous_content_hash=previous, content_hash=fact.content_hash, topic=topic,
                    partition=partition, offset=offset, worker_version=self.worker_version,
                ).to_json()))
        return result

    def _archive_record(self, raw: RawEvent) -> list[OutboundRecord]:
        """The archive topic's record of a raw event (none when its payload is not JSON, or when this processor
        does not archive)."""
        if not self.archive:
            return []
        try:
            row = archive_row(raw, self.student_key, self.student_keys)
        except ValueError:
            return []
        except Exception:  # a bug must not stop the stream (the event's facts or dead letter still go out)
            logger.exception("internal error building the archive row of %s", raw.event_id)
            return []
        return [OutboundRecord(self.topics.archive, partition_key(raw.tenant, raw.student_id),
                               self.archive_codec.encode_record(row))]

    def _dead_letter(self, result: ProcessedEvent, reason: str, code: ReasonCode, topic: str, partition: int,
                     offset: int, key: bytes | None, message: bytes | None, raw: RawEvent | None,
                     batch_index: int | None) -> ProcessedEvent:
        """The dead letter of a message, or of one event of a batch record (``batch_index``); whose event it was
        (tenant, job ...) when it decoded. An event of a batch is kept alone, as a lone RawEvent record keyed as
        the gateway keys it: a replay puts back that event only, on its student's partition."""
        self.metrics.dead_letters.labels(topic=topic).inc()
        result.facts = []
        result.dead_letter_reason = reason
        owner: dict[str, Any] = {}
        original = message or b""
        if raw is not None:
            owner = {"tenant": raw.tenant, "client_id": raw.client_id, "source": raw.source,
                     "event_id": raw.event_id, "job_id": raw.job_id or None,
                     "envelope_index": raw.envelope_index if raw.job_id else None}
            if batch_index is not None or message is None:
                original, key = self.raw_codec.encode_record(raw), partition_key(raw.tenant, raw.student_id)
        result.records = [OutboundRecord(self.topics.dead_letters, key, DeadLetter(
            reason=reason, reason_code=code, worker_version=self.worker_version, topic=topic,
            partition=partition, offset=offset, original=original, time_ms=time.time_ns() // 1_000_000,
            batch_index=batch_index, **owner).to_json())]
        return result
