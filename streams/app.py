"""The faust-streaming worker: raw events (three raw topics) -> learning facts (Avro) on the facts topic.

``build_app`` makes the app from settings (never at import time). Its one agent reads the raw topics as bytes,
decodes each message (``RawEventCodec``), normalizes it and produces every fact Avro-encoded
(``LearningFactCodec``), keyed by tenant + student so one student's facts stay in order on one partition.

Failures are data: a message that cannot be decoded or normalized goes to the dead-letter topic as a
``schemas.side_topics.DeadLetter`` (reason, worker version, topic, partition, offset, the original bytes) and
processing goes on.

Delivery is at-least-once: the agent takes events in small batches (``take_events``: up to
``batch_max_events`` or ``batch_within_s``), produces everything the batch yields and awaits the broker's
acknowledgement of every record; faust acks the batch's offsets (and later commits them) only after that.
If producing fails it is retried (backoff) until the broker takes the records; a worker stopped meanwhile
withholds the batch's acks, so its offsets are never committed and the batch is replayed.
The agent runs with ``concurrency=1``: with several concurrent actors faust can commit an offset ahead of a
message still being processed (faust issue #606); one actor per worker makes that impossible.

Conflicts (same event id, different content): the fact's ``content_hash`` lets the sink keep both versions
(it is in the sink's sort key); the worker also remembers the last hashes in a bounded LRU and publishes a
``ConflictNotice`` to the conflicts topic when an event id comes back with other content.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.exceptions import ConsumerNotStarted
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from schemas.codec import LearningFactCodec, RawEventCodec
from schemas.errors import PipelineError
from schemas.kafka import KafkaSettings, Topics, crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings
from schemas.records import LearningFact
from schemas.registry import learning_fact_codec, raw_event_codec
from schemas.side_topics import ConflictNotice, DeadLetter
from streams.normalizers import NormalizeOptions, normalize_with
from streams.settings import StreamsSettings

AGENT_NAME = "normalize_raw_events"
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """One message the worker produces."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class ProcessedEvent:
    """What one raw message became: the records to produce and what to count."""

    records: list[OutboundRecord] = field(default_factory=list)
    facts: list[LearningFact] = field(default_factory=list)
    dead_letter_reason: str = ""
    conflicts: int = 0


Publisher = Callable[[Sequence[OutboundRecord]], Awaitable[None]]


class StreamsMetrics:
    """The worker's Prometheus metrics, in their own registry (one per app: tests build many apps)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events_in = Counter("caliper_streams_events_in", "Raw messages consumed", ["topic"],
                                 registry=self.registry)
        self.facts_out = Counter("caliper_streams_facts_out", "Learning facts produced", ["source"],
                                 registry=self.registry)
        self.dead_letters = Counter("caliper_streams_dead_letters", "Messages sent to the dead-letter topic",
                                    ["topic"], registry=self.registry)
        self.conflicts = Counter("caliper_streams_conflicts",
                                 "Events seen again with the same id and different content", ["tenant"],
                                 registry=self.registry)
        self.publish_failures = Counter("caliper_streams_publish_failures",
                                        "Failed attempts to publish a batch (retried)", registry=self.registry)
        self.consumer_lag = Gauge("caliper_streams_consumer_lag", "Messages behind the partition's end",
                                  ["topic", "partition"], registry=self.registry)


class ConflictTracker:
    """A bounded LRU of event key -> content hash; tells a re-send (same hash) from a conflict."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._hashes: OrderedDict[tuple[str, str, int], str] = OrderedDict()

    def seen(self, key: tuple[str, str, int], content_hash: str) -> str | None:
        """Remember ``content_hash``; return the previous different hash when this is a conflict."""
        previous = self._hashes.get(key)
        self._hashes[key] = content_hash
        self._hashes.move_to_end(key)
        if len(self._hashes) > self.max_entries:
            self._hashes.popitem(last=False)
        return previous if previous is not None and previous != content_hash else None


def fact_key(fact: LearningFact) -> bytes:
    """The facts topic's key: the pipeline's ``partition_key`` of tenant + student, so one student's facts keep
    their order on one partition (every producer of the pipeline uses ``crc32_partitioner``)."""
    return partition_key(fact.tenant, fact.student_id)


class EventProcessor:
    """Raw message bytes -> the records to produce (facts, or a dead letter, plus conflict notices)."""

    def __init__(self, settings: StreamsSettings, topics: Topics, privacy: PrivacySettings,
                 metrics: StreamsMetrics | None = None, *,
                 codecs: tuple[RawEventCodec, LearningFactCodec] | None = None) -> None:
        privacy.require_keys()  # never produce facts with unkeyed (or empty-keyed) pseudonyms
        self.settings = settings
        self.topics = topics
        self.metrics = metrics or StreamsMetrics()
        self.options = NormalizeOptions(
            email_hash_key=privacy.email_hash_key_bytes,
            keep_raw_email=privacy.keep_raw_email,
            normalizer_version=settings.normalizer_version,
        )
        self.raw_codec, self.fact_codec = codecs or (RawEventCodec(), LearningFactCodec())
        self.conflicts = ConflictTracker(settings.conflict_cache_size)
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

    def process(self, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None) -> ProcessedEvent:
        self._count_event_in(topic)
        result = ProcessedEvent()
        try:
            raw = self.raw_codec.decode_record(value or b"")
            result.facts = normalize_with(raw, self.options)
            result.records = [OutboundRecord(self.topics.facts, fact_key(fact), self.fact_codec.encode_record(fact))
                              for fact in result.facts]
        except PipelineError as error:
            return self._dead_letter(result, f"{type(error).__name__}: {error}", topic, partition, offset, key,
                                     value)
        except Exception as error:  # a bug must not stop the stream: the event is kept as data to replay
            return self._dead_letter(result, f"internal error {type(error).__name__}: {error}", topic,
                                     partition, offset, key, value)
        for fact in result.facts:
            self._count_fact_out(fact.source)
            previous = self.conflicts.seen((fact.tenant, fact.event_id, fact.fact_index), fact.content_hash)
            if previous is not None:
                result.conflicts += 1
                self.metrics.conflicts.labels(tenant=fact.tenant).inc()
                result.records.append(OutboundRecord(self.topics.conflicts, fact_key(fact), ConflictNotice(
                    tenant=fact.tenant, source=fact.source, event_id=fact.event_id, fact_index=fact.fact_index,
                    previous_content_hash=previous, content_hash=fact.content_hash, topic=topic,
                    partition=partition, offset=offset, worker_version=self.settings.worker_version,
                ).to_json()))
        return result

    def _dead_letter(self, result: ProcessedEvent, reason: str, topic: str, partition: int, offset: int,
                     key: bytes | None, value: bytes | None) -> ProcessedEvent:
        self.metrics.dead_letters.labels(topic=topic).inc()
        result.facts = []
        result.dead_letter_reason = reason
        result.records = [OutboundRecord(self.topics.dead_letters, key, DeadLetter(
            reason=reason, worker_version=self.settings.worker_version, topic=topic, partition=partition,
            offset=offset, original=value or b"").to_json())]
        return result


class KafkaPublisher:
    """Produce records with the app's producer and wait until the broker acknowledged every one."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        if not records:
            return
        producer = await self.app.maybe_start_producer()
        pending = [await producer.send(record.topic, record.key, record.value, partition=None, timestamp=None,
                                       headers=None) for record in records]
        await asyncio.gather(*pending)


def broker_options(kafka: KafkaSettings) -> dict[str, Any]:
    """faust's broker URLs and credentials from the shared Kafka settings."""
    urls = [f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",") if server.strip()]
    options: dict[str, Any] = {"broker": urls or ["kafka://localhost:9092"]}
    protocol = kafka.security_protocol.upper()
    if protocol.startswith("SASL"):
        options["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else "",
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=ssl.create_default_context() if protocol == "SASL_SSL" else None,
        )
    elif protocol == "SSL":
        options["broker_credentials"] = faust.SSLCredentials(ssl.create_default_context())
    return options


def build_app(settings: StreamsSettings, kafka: KafkaSettings, privacy: PrivacySettings, *,
              publisher: Publisher | None = None, metrics: StreamsMetrics | None = None) -> faust.App:
    """The worker app: one agent over the raw topics. ``publisher`` replaces Kafka output (tests)."""
    topics = kafka.topics
    app = faust.App(
        settings.app_id,
        **broker_options(kafka),
        autodiscover=False,
        store="memory://",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # small timeouts: a worker joins (and a dead one is noticed) in seconds
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_request_timeout=max(30.0, settings.session_timeout_s * 3),
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_partitioner=crc32_partitioner,
    )
    processor = EventProcessor(settings, topics, privacy, metrics,
                               codecs=(raw_event_codec(kafka), learning_fact_codec(kafka)))
    publish: Publisher = publisher or KafkaPublisher(app)
    raw_topic = app.topic(*topics.raw_topics, key_serializer="raw", value_serializer="raw")

    # concurrency=1 on purpose: see the module docstring (faust #606, commit ahead of processing)
    @app.agent(raw_topic, name=AGENT_NAME, concurrency=1)
    async def normalize_raw_events(stream: faust.StreamT[bytes]) -> AsyncIterator[list[ProcessedEvent]]:
        # take_events acks a batch's events only once this body has finished with the batch
        batches = cast(faust.Stream, stream).take_events(settings.batch_max_events, within=settings.batch_within_s)
        async for events in batches:
            results = [processor.process(event.message.topic, event.message.partition, event.message.offset,
                                         event.message.key, event.message.value) for event in events]
            try:
                # everything the batch produced is on the broker before its offsets can be acked
                await publish_until_delivered(publish, [record for result in results for record in result.records],
                                              processor.metrics, settings.publish_retry_initial_s)
            except asyncio.CancelledError:
                withhold_acks(events)  # stopped mid-delivery: replay the batch next time
                raise
            for message in {event.message.tp: event.message for event in events}.values():
                _record_lag(app, processor.metrics, message)
            yield results

    return app


async def publish_until_delivered(publish: Publisher, records: Sequence[OutboundRecord], metrics: StreamsMetrics,
                                  initial_delay_s: float, max_delay_s: float = 30.0) -> None:
    """Publish, retrying with backoff until the broker took everything: a broker outage stalls the worker
    rather than letting later offsets be committed past undelivered facts (retries may duplicate records:
    at-least-once, the sink deduplicates by fact id and content hash)."""
    delay = initial_delay_s
    while True:
        try:
            await publish(records)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            metrics.publish_failures.inc()
            logger.warning("publishing %d records failed (%r); retrying in %.1f s", len(records), error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)


def withhold_acks(events: Sequence[faust.EventT]) -> None:
    """Make sure undelivered events are never committed.

    take_events acks its batch in a ``finally``, even when the body was cancelled. Marking each message as acked
    *without* the consumer's bookkeeping turns that ack into a no-op: the offsets never become committable,
    the partition's commit stays before them and a restarted worker replays them (at-least-once).
    """
    for event in events:
        event.message.acked = True


def _record_lag(app: faust.App, metrics: StreamsMetrics, message: Any) -> None:
    """Lag of the message's partition from the consumer's cached high-water mark (no broker round trip)."""
    consumer = app._consumer  # only a running worker has one; never create it here
    if consumer is None:
        return
    try:
        highwater = consumer.highwater(message.tp)
    except (ConsumerNotStarted, KeyError, AttributeError, AssertionError, TypeError):
        return
    if highwater is not None:
        metrics.consumer_lag.labels(topic=message.topic, partition=str(message.partition)).set(
            max(0, highwater - message.offset - 1))


def run_worker(settings: StreamsSettings, kafka: KafkaSettings, privacy: PrivacySettings) -> None:
    """Start the worker and block until it is stopped (``caliper-pipeline streams``); refuses to start without
    the privacy keys (``MissingPrivacyKeyError``)."""
    privacy.require_keys()
    metrics = StreamsMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    app = build_app(settings, kafka, privacy, metrics=metrics)
    worker = faust.Worker(app, loglevel=settings.log_level)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise
