"""The raw events the gateway publishes for a request, as the worker reads them: the gateway's one ingest path
(``gateway.ingest``) encodes them and its publisher's ``raw_batch_records`` makes the raw topics' batch records of
them, which are decoded here with the raw topics' codec (tests read what was published, never a second
construction of it). Likewise the archive topic's messages of raw events, made by the worker's own processor and
block assembly (``archived_by_worker``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from gateway.ingest import encoded_envelope_events, encoded_hub_event
from gateway.publisher import EncodedEvent, raw_batch_records
from gateway.settings import GatewaySettings
from gateway.tokens import Caller
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.blocks import archive_block_codec, fact_block_codec
from schemas.errors import SchemaEncodingError
from schemas.kafka import KafkaSettings, Source, Topics
from schemas.privacy import PrivacySettings
from schemas.records import LearningFact, RawEvent
from streams.processor import EventProcessor
from streams.publishing import Blocks
from streams.settings import StreamsSettings

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


def archived_by_worker(raws: Sequence[RawEvent], student_key: bytes) -> list[bytes]:
    """The archive topic's messages of raw events, as the streams worker publishes them: each event through the
    worker's processor (``EventProcessor``: its archive record), then the worker's block assembly, one block per
    event (an event whose payload is not JSON has no archive record, so none here)."""
    privacy = PrivacySettings(email_hash_key=SecretStr("published-email-key"),
                              student_key=SecretStr(student_key.decode()))
    topics = Topics()
    processor = EventProcessor(StreamsSettings(), topics, privacy)
    blocks = Blocks({topics.archive: archive_block_codec(processor.archive_codec)}, StreamsSettings().block_max_bytes)
    messages = []
    for offset, raw in enumerate(raws):
        [result] = processor.process_message(topics.raw(Source(raw.source)), 0, offset, None,
                                             CODEC.encode_record(raw))
        archived = [record for record in result.records if record.topic == topics.archive]
        messages += [record.value for record in blocks.assemble(archived, {topics.archive: 1})]
    return messages


FACT_CODEC = LearningFactCodec()
FACT_BLOCKS = fact_block_codec(FACT_CODEC)


def facts_in(values: Sequence[bytes]) -> list[LearningFact]:
    """The facts of facts-topic messages, in order: a block's (the worker's records) or a single fact's (older
    writers), decoded with the facts topic's codecs."""
    facts = []
    for value in values:
        try:
            FACT_BLOCKS.writer_schema_of(value)
        except SchemaEncodingError:
            facts.append(FACT_CODEC.decode_record(value))
            continue
        facts += [LearningFact(**item) for item in FACT_BLOCKS.decode_items(value)]
    return facts


def fact_count(value: bytes) -> int:
    """How many facts one facts-topic message holds."""
    return len(facts_in([value]))
