"""``caliper-pipeline renormalize --tenant T [--from ISO] [--to ISO]``: derive a range's facts again after a
normalizer change.

The tenant's events RECEIVED in ``[from, to)`` are read back from the raw archive (every archived version: a
corrected event's older versions are re-derived too): through the sink's ``POST /archive/raw-events`` (admin token;
the sink owns the embedded engine), or straight from a ClickHouse server. Each is normalized by the normalizers of
THIS installation (``streams.normalizers.normalize_with``, with the privacy keys and normalizer version of the
settings, as the streams worker would), and its facts are published to the facts topic in blocks, as the worker
publishes them (``streams.publishing.Blocks``), where the sink loads them:

- the same fact ids and content hashes (both come from the tenant, the event and its content), so a re-derived fact
  is the same fact in a newer derivation: it carries ``derived_time_ms`` = now, and the current-version rule's last
  tie-break (``current_facts``) makes the newest derivation current;
- the personal-data policy of extensions is the tenant's as the clients file of this machine says it NOW (``caliper-
  pipeline clients extensions``; the default policy for a tenant it does not name): the archive records the policy
  each event was accepted under (``raw_events.extensions_policy``, since migration 015), but a re-derivation
  follows the tenant's current wishes;
- an event the normalizers now refuse becomes a dead letter on the dead-letter topic (as the worker makes it, signed
  ``WORKER_VERSION``; ``partition``/``offset`` -1: it came from the archive, not a topic), which ``replay`` can send
  to the raw topic.

It takes the streams worker's own path, chunk by chunk (``CHUNK_EVENTS`` archived events' JSON lines): the
worker's ``EventProcessor.process_event`` (its facts, encodings and dead letters; no conflict notices: those were
sent when the events first came) and the worker's publishing step (``streams.publishing.hand_records``: one record
batch per partition, the facts joined into blocks as the worker joins them). Normalizing is most of the work, so
the chunks are processed by ``processes`` child processes (one per core by default, each with the worker's
processor), while this process reads the archive ahead (``read_ahead``: at most ``READ_AHEAD_CHUNKS`` waiting) and
publishes the chunks in the order they were read (a chunk's batches are acknowledged while the next chunk is handed
over: at most two chunks in flight).

A progress bar goes to stderr; the summary says how many events were read, facts produced, dead letters and how
long it took. A run can be repeated: the facts collapse with the previous run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from caliper_pipeline.local.stack_secrets import local_admin_token
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from schemas.archive import ArchivedEvent
from schemas.avro.registry import learning_fact_block_codec, learning_fact_codec, raw_event_codec
from schemas.errors import PipelineError
from schemas.kafka import Source, crc32_partitioner
from schemas.kafka_lz4 import use_kafka_lz4_frames
from schemas.record_batches import OutboundRecord
from schemas.side_topics import SideTopicRecordError
from schemas.version import PIPELINE_VERSION
from streams.processor import EventProcessor
from streams.publishing import Blocks, hand_records

WORKER_VERSION = f"renormalize/{PIPELINE_VERSION}"
CHUNK_EVENTS = 2000  # archived events processed and published together (one record batch per partition)
READ_AHEAD_CHUNKS = 2  # chunks read from the archive while one is processed

T = TypeVar("T")
_END = object()
ChunkResult = tuple[list[OutboundRecord], int, int, int]  # records, events, facts, dead letters


class RenormalizeError(PipelineError):
    """A re-derivation that cannot run or was cut short; the message says why and what was done."""


@dataclass
class RenormalizeSummary:
    tenant: str
    total: int = 0  # archived versions in the range when the run started
    events: int = 0
    facts: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def lines(self) -> list[str]:
        rate = self.events / self.seconds if self.seconds else 0.0
        verb = "would publish" if self.dry_run else "published"
        return [f"tenant {self.tenant!r}: read {self.events} archived events (of {self.total}), {verb} "
                f"{self.facts} facts and {self.dead_letters} dead letters in {self.seconds:.1f} s "
                f"({rate:,.0f} events/s)"]


async def sink_archive(session: aiohttp.ClientSession, sink_url: str, admin_token: str, tenant: str,
                       from_ms: int | None, to_ms: int | None) -> AsyncGenerator[tuple[int, list[bytes]], None]:
    """``(total, lines)`` chunks of the sink's ``POST /archive/raw-events`` stream (``ArchivedEvent`` JSON lines,
    read as the bytes arrive and split at their newlines: no per-line read)."""
    url = f"{sink_url.rstrip('/')}/archive/raw-events"
    try:
        async with session.post(url, json={"tenant": tenant, "from_ms": from_ms, "to_ms": to_ms},
                                headers={"Authorization": f"Bearer {admin_token}"}) as response:
            if response.status != 200:
                raise RenormalizeError(f"the sink refused the archive read ({response.status}): "
                                       f"{(await response.text())[:500]}")
            total = int(response.headers.get("X-Total-Count", "0"))
            chunk: list[bytes] = []
            partial: list[bytes] = []  # the bytes of a line not ended yet
            async for data in response.content.iter_any():
                end = data.rfind(b"\n")
                if end < 0:
                    partial.append(data)
                    continue
                partial.append(data[:end])
                lines = b"".join(partial).split(b"\n")
                partial = [data[end + 1:]]
                chunk += [line for line in lines if line.strip()]
                while len(chunk) >= CHUNK_EVENTS:
                    yield total, chunk[:CHUNK_EVENTS]
                    chunk = chunk[CHUNK_EVENTS:]
            last = b"".join(partial)
            if last.strip():
                chunk.append(last)
            yield total, chunk
    except aiohttp.ClientError as error:
        raise RenormalizeError(f"the sink at {sink_url} could not be read: {error}") from error


async def server_archive(settings: Settings, tenant: str, from_ms: int | None,
                         to_ms: int | None) -> AsyncGenerator[tuple[int, list[bytes]], None]:
    """The same chunks read straight from a ClickHouse server (no sink in between): its pages as the sink's lines."""
    from sinks.archive import count_archived, read_archived
    from sinks.clickhouse import connect

    clickhouse = await asyncio.to_thread(connect, settings.clickhouse)
    try:
        database = settings.clickhouse.database
        total = await asyncio.to_thread(count_archived, clickhouse.query_rows, database, tenant, from_ms, to_ms)
        pages = read_archived(clickhouse.query_rows, database, tenant, from_ms, to_ms)
        while (page := await asyncio.to_thread(_next_lines, pages)) is not None:
            yield total, page
    finally:
        await asyncio.to_thread(clickhouse.close)


async def read_ahead(items: AsyncGenerator[T, None], depth: int) -> AsyncGenerator[T, None]:
    """``items``, read by a task of their own up to ``depth`` ahead of the consumer; the reader's error is raised
    here, in order. Stopping early cancels the reader and closes ``items`` (its ``async with`` blocks end)."""
    queue: asyncio.Queue[Any] = asyncio.Queue(depth)

    async def reader() -> None:
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    await queue.put(item)
        except Exception as error:  # handed over to the consumer, which raises it
            await queue.put(error)
            return
        await queue.put(_END)

    task = asyncio.create_task(reader())
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def archive_processor(settings: Settings) -> EventProcessor:
    """The streams worker's processor as renormalize runs it: the worker's codecs and normalizer settings (the
    facts' normalizer version is this installation's), renormalize's worker version on its dead letters, no
    conflict notices, no archive rows (its events come from the archive)."""
    return EventProcessor(settings.streams, settings.kafka.topics, settings.privacy, notice_conflicts=False,
                          archive=False, worker_version=WORKER_VERSION,
                          codecs=(raw_event_codec(settings.kafka), learning_fact_codec(settings.kafka)))


async def renormalize(settings: Settings, tenant: str, from_ms: int | None = None, to_ms: int | None = None, *,
                      dry_run: bool = False, progress: bool = True, processes: int | None = None) -> RenormalizeSummary:
    """Re-derive the facts of one tenant's archived events received in ``[from_ms, to_ms)``, normalized by
    ``processes`` child processes (default: one per core)."""
    archive_processor(settings)  # refuses to run without the privacy keys, as the worker does (before any child)
    extensions_policy = ClientRegistry(settings.gateway.clients_file).tenant(tenant).extensions_policy
    # the facts in blocks, exactly as the worker publishes them (streams.publishing)
    blocks = Blocks({settings.kafka.topics.facts: learning_fact_block_codec(settings.kafka,
                                                                           learning_fact_codec(settings.kafka))},
                    settings.streams.block_max_bytes)
    # forked children share the modules this process has imported (a spawned one imports the pipeline again: most
    # of a second of CPU each); every one is forked here, before this run opens a connection or starts a thread
    processes = processes or os.cpu_count() or 1
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"), initializer=_start_child,
                               initargs=(settings,))
    pool.submit(int).result()  # the pool forks all its processes at its first task
    summary = RenormalizeSummary(tenant=tenant, dry_run=dry_run)
    use_kafka_lz4_frames()  # the facts topic's lz4 batches as every Kafka client reads them
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, partitioner=crc32_partitioner, linger_ms=20,
                                max_batch_size=1 << 20, compression_type="lz4", **settings.kafka.client_options())
    loop = asyncio.get_running_loop()
    in_flight: list[asyncio.Future[Any]] = []  # the deliveries of the chunk published last

    async def publish(result: ChunkResult) -> None:
        nonlocal in_flight
        records, events, facts, dead_letters = result
        summary.events, summary.facts, summary.dead_letters = (summary.events + events, summary.facts + facts,
                                                               summary.dead_letters + dead_letters)
        if not dry_run:
            handed = await hand_records(producer, records, crc32_partitioner, blocks) if records else []
            await asyncio.gather(*in_flight)
            in_flight = handed
        if progress:
            _progress(summary.events, summary.total, started)

    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=300)) as session:
        if settings.clickhouse.embedded:
            chunks = sink_archive(session, settings.sink.base_url(), local_admin_token(settings), tenant, from_ms,
                                  to_ms)
        else:
            chunks = server_archive(settings, tenant, from_ms, to_ms)
        processing: deque[asyncio.Future[ChunkResult]] = deque()  # in the order read, published in that order
        try:
            if not dry_run:
                await producer.start()
            async for total, lines in read_ahead(chunks, READ_AHEAD_CHUNKS):
                summary.total = total
                processing.append(loop.run_in_executor(pool, _process_chunk, lines, extensions_policy))
                while len(processing) > processes:  # each process busy, one chunk waiting for it
                    await publish(await processing.popleft())
            while processing:
                await publish(await processing.popleft())
            await asyncio.gather(*in_flight)
            await loop.run_in_executor(None, pool.shutdown)  # the children exit (and are waited for) now
        except (KafkaError, SideTopicRecordError, BrokenProcessPool) as error:
            raise RenormalizeError(f"renormalize stopped after {summary.events} events ({summary.facts} facts "
                                   f"produced; a rerun is safe): {error!r}") from error
        finally:
            for waiting in processing:
                waiting.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            if progress:
                print(file=sys.stderr)
            if not dry_run:
                await producer.stop()
    summary.seconds = time.monotonic() - started
    return summary


_child_processor: EventProcessor | None = None


def _start_child(settings: Settings) -> None:
    """A child process's processor (``archive_processor``), made once."""
    global _child_processor
    _child_processor = archive_processor(settings)


def _process_chunk(lines: list[bytes], extensions_policy: str) -> ChunkResult:
    """In a child process: what the archived events of ``lines`` become, with the tenant's current extensions
    policy: the worker's records (facts, or a dead letter on the event's source's raw topic) and the counts."""
    processor = _child_processor
    if processor is None:
        raise RuntimeError("the renormalize child process was not started with its settings")
    topics = processor.topics
    records: list[OutboundRecord] = []
    facts = dead_letters = 0
    for line in lines:
        raw = ArchivedEvent.from_json(line).event
        raw.extensions_policy = extensions_policy
        result = processor.process_event(raw, topics.raw(_source(raw.source)))
        facts += len(result.facts)
        dead_letters += bool(result.dead_letter_reason)
        records += result.records
    return records, len(lines), facts, dead_letters


def _next_lines(pages: Iterator[list[ArchivedEvent]]) -> list[bytes] | None:
    page = next(pages, None)
    return None if page is None else [event.to_json() for event in page]


def _source(name: str) -> Source:
    return Source(name) if name in Source._value2member_map_ else Source.CALIPER


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = min(width, int(width * done / total)) if total else width
    rate = done / max(time.monotonic() - started, 1e-6)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events ({rate:,.0f}/s)", end="",
          file=sys.stderr, flush=True)
