"""The faust-streaming worker: raw events (three raw topics) -> learning facts (Avro blocks) on the facts topic and
the raw archive's rows (Avro blocks) on the archive topic.

``build_app`` makes the app from settings (never at import time). Its one agent reads the raw topics as bytes
and hands each message (a batch record of events, or a lone event) to the faust-free
``streams.processor.EventProcessor``, then produces what its events became.

Delivery is at-least-once: the agent takes events in small batches (``take_events``: up to
``batch_max_events`` or ``batch_within_s``), produces everything the batch yields (one record batch per partition,
``streams.publishing``) and awaits the broker's acknowledgement of every record; faust acks the batch's
offsets (and later commits them) only after that.
If producing fails it is retried (backoff) until the broker takes the records; a worker stopped meanwhile
withholds the batch's acks, so its offsets are never committed and the batch is replayed.
The agent runs with ``concurrency=1``: with several concurrent actors faust can commit an offset ahead of a
message still being processed (faust issue #606); one actor per worker makes that impossible.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from prometheus_client import start_http_server

from schemas.avro.registry import learning_fact_block_codec, learning_fact_codec, raw_archive_codecs, raw_event_codec
from schemas.kafka import KafkaSettings, crc32_partitioner
from schemas.privacy import PrivacySettings
from schemas.record_batches import OutboundRecord
from streams.allocator import configure_allocator
from streams.metrics import StreamsMetrics
from streams.processor import EventProcessor, ProcessedEvent, Publisher
from streams.publishing import BatchingProducer, Blocks, KafkaPublisher
from streams.settings import StreamsSettings

AGENT_NAME = "normalize_raw_events"
logger = logging.getLogger(__name__)


READ_COMMITTED = "read_committed"


class ReadCommittedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread whose consumer reads only committed records.

    faust 0.15.3 hard-codes ``isolation_level="read_uncommitted"`` unless the whole app runs its
    exactly-once mode (transactional producers, one transaction per partition). The worker needs only the
    reading side: the gateway publishes an envelope in one Kafka transaction, and a record of an aborted or
    still-open transaction must never become a fact. aiokafka reads the consumer's isolation level when it
    starts, so it is set on the consumer faust has just built, before faust starts it.
    """

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        if getattr(consumer, "_isolation_level", None) is None:  # aiokafka changed: fail, never read uncommitted
            raise RuntimeError("cannot set the consumer's isolation level: aiokafka has no _isolation_level")
        consumer._isolation_level = READ_COMMITTED
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, and one without a committed offset (never
        committed, or 0) to its beginning.

        faust calls this after every rebalance so that records read ahead but not processed (its ``getmany``
        abandons a fetched batch when the flow stops or the generation changes mid-batch) are read again.
        aiokafka seeks only to a committed offset above 0, so a partition nobody had committed yet (a new group,
        or a worker that died before its first commit) kept a position past records no worker had processed,
        and faust, having no committed offset to compare with, committed past them: with three workers, one
        SIGKILLed before its first commit, 65 acknowledged events of its partitions never became facts in the
        worker that took them over (tests/integration/streams/test_streams_seek_uncommitted.py)."""
        committed = await super().seek_to_committed()
        never = [tp for tp, offset in committed.items() if not offset]
        if never:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *never)
        return committed


class ReadCommittedConsumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Record the offsets no message will come for (a transaction's commit marker, aborted records) as done.

        faust 0.15.3 calls this with the offset of the message after the gap as ``offset_to`` and records it as
        missing too, so that message's offset is counted twice once it is acked; each commit then advances only
        up to the next duplicate: every envelope (one transaction) of the gateway adds one, so the committed
        offsets fell ever further behind what the worker processed (a restart replays all of it) and the list of
        acked offsets faust keeps until their commit grew with every event (docs/benchmarks.md, soak)."""
        await super()._add_gap(tp, offset_from, offset_to - 1)


class ReadCommittedTransport(aiokafka_driver.Transport):
    """The aiokafka transport with ``ReadCommittedConsumer``, and ``BatchingProducer`` (faust's producer that can
    also hand whole record batches to aiokafka: ``streams.publishing``)."""

    Consumer = ReadCommittedConsumer
    Producer = BatchingProducer


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


def new_app(settings: StreamsSettings, kafka: KafkaSettings) -> faust.App:
    """A faust app configured as the worker runs (broker, timeouts, acks, partitioner, read_committed), without
    agents: ``build_app`` adds the worker's; ``bench ceilings`` a bare pass-through agent with the same batching."""
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
        # the read-ahead's bounds (StreamsSettings)
        broker_max_poll_records=settings.poll_max_records,
        stream_buffer_maxsize=settings.buffer_max_events,
        consumer_max_fetch_size=settings.fetch_max_bytes_per_partition,
    )
    # read_committed (see ReadCommittedConsumerThread); set before anything (app.topic) creates the transport
    app.transport = ReadCommittedTransport(app.conf.broker_consumer, app)
    return app


def build_app(settings: StreamsSettings, kafka: KafkaSettings, privacy: PrivacySettings, *,
              publisher: Publisher | None = None, metrics: StreamsMetrics | None = None) -> faust.App:
    """The worker app: one agent over the raw topics. ``publisher`` replaces Kafka output (tests)."""
    topics = kafka.topics
    app = new_app(settings, kafka)
    fact_codec = learning_fact_codec(kafka)
    row_codec, archive_codec = raw_archive_codecs(kafka)
    processor = EventProcessor(settings, topics, privacy, metrics, codecs=(raw_event_codec(kafka), fact_codec),
                               archive_codec=row_codec)
    blocks = Blocks({topics.facts: learning_fact_block_codec(kafka, fact_codec), topics.archive: archive_codec},
                    settings.block_max_bytes)
    publish: Publisher = publisher or KafkaPublisher(app, blocks)
    raw_topic = app.topic(*topics.raw_topics, key_serializer="raw", value_serializer="raw")

    # concurrency=1 on purpose: see the module docstring (faust #606, commit ahead of processing)
    @app.agent(raw_topic, name=AGENT_NAME, concurrency=1)
    async def normalize_raw_events(stream: faust.StreamT[bytes]) -> AsyncIterator[list[ProcessedEvent]]:
        # take_events acks a batch's events only once this body has finished with the batch
        batches = cast(faust.Stream, stream).take_events(settings.batch_max_events, within=settings.batch_within_s)
        async for events in batches:
            results = [result for event in events for result in processor.process_message(
                event.message.topic, event.message.partition, event.message.offset, event.message.key,
                event.message.value)]
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
    configure_allocator(settings.malloc_arena_max, settings.malloc_mmap_threshold_bytes)  # before any thread
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
