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
- an event the normalizers now refuse becomes a dead letter on the dead-letter topic (as the worker would make it;
  ``partition``/``offset`` -1: it came from the archive, not a topic), which ``replay`` can send to the raw topic.

A progress bar goes to stderr; the summary says how many events were read, facts produced, dead letters and how
long it took. A run can be repeated: the facts collapse with the previous run's.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from caliper_pipeline.local_secrets import local_admin_token
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from schemas.archive import ArchivedEvent
from schemas.codec import RawEventCodec
from schemas.errors import PipelineError
from schemas.kafka import Source, crc32_partitioner, partition_key
from schemas.kafka_lz4 import use_kafka_lz4_frames
from schemas.record_batches import OutboundRecord
from schemas.registry import learning_fact_block_codec, learning_fact_codec
from schemas.side_topics import DeadLetter, SideTopicRecordError
from schemas.version import PIPELINE_VERSION
from streams.normalizers import NormalizeOptions, normalize_with
from streams.processor import fact_key, stamp_derived
from streams.publishing import Blocks

WORKER_VERSION = f"renormalize/{PIPELINE_VERSION}"


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
                       from_ms: int | None, to_ms: int | None) -> AsyncIterator[tuple[int, list[ArchivedEvent]]]:
    """``(total, events)`` chunks of the sink's ``POST /archive/raw-events`` stream."""
    url = f"{sink_url.rstrip('/')}/archive/raw-events"
    try:
        async with session.post(url, json={"tenant": tenant, "from_ms": from_ms, "to_ms": to_ms},
                                headers={"Authorization": f"Bearer {admin_token}"}) as response:
            if response.status != 200:
                raise RenormalizeError(f"the sink refused the archive read ({response.status}): "
                                       f"{(await response.text())[:500]}")
            total = int(response.headers.get("X-Total-Count", "0"))
            chunk: list[ArchivedEvent] = []
            async for line in response.content:
                if line.strip():
                    chunk.append(ArchivedEvent.from_json(line))
                if len(chunk) >= 1000:
                    yield total, chunk
                    chunk = []
            yield total, chunk
    except aiohttp.ClientError as error:
        raise RenormalizeError(f"the sink at {sink_url} could not be read: {error}") from error


async def server_archive(settings: Settings, tenant: str, from_ms: int | None,
                         to_ms: int | None) -> AsyncIterator[tuple[int, list[ArchivedEvent]]]:
    """The same chunks read straight from a ClickHouse server (no sink in between)."""
    from sinks.archive import count_archived, read_archived
    from sinks.clickhouse import connect

    clickhouse = await asyncio.to_thread(connect, settings.clickhouse)
    try:
        database = settings.clickhouse.database
        total = await asyncio.to_thread(count_archived, clickhouse.query_rows, database, tenant, from_ms, to_ms)
        pages = read_archived(clickhouse.query_rows, database, tenant, from_ms, to_ms)
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            yield total, page
    finally:
        await asyncio.to_thread(clickhouse.close)


async def renormalize(settings: Settings, tenant: str, from_ms: int | None = None, to_ms: int | None = None, *,
                      dry_run: bool = False, progress: bool = True) -> RenormalizeSummary:
    """Re-derive the facts of one tenant's archived events received in ``[from_ms, to_ms)``."""
    settings.privacy.require_keys()  # the facts' pseudonyms need the same keys as the worker's
    options = NormalizeOptions(email_hash_key=settings.privacy.email_hash_key_bytes,
                               keep_raw_email=settings.privacy.keep_raw_email,
                               normalizer_version=settings.streams.normalizer_version,
                               student_key=settings.privacy.student_key_bytes)
    extensions_policy = ClientRegistry(settings.gateway.clients_file).tenant(tenant).extensions_policy
    topics, fact_codec, raw_codec = settings.kafka.topics, learning_fact_codec(settings.kafka), RawEventCodec()
    # the facts in blocks, exactly as the worker publishes them (streams.publishing)
    blocks = Blocks({topics.facts: learning_fact_block_codec(settings.kafka, fact_codec)},
                    settings.streams.block_max_bytes)
    summary = RenormalizeSummary(tenant=tenant, dry_run=dry_run)
    use_kafka_lz4_frames()  # the facts topic's lz4 batches as every Kafka client reads them
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, partitioner=crc32_partitioner, linger_ms=20,
                                max_batch_size=1 << 20, compression_type="lz4", **settings.kafka.client_options())
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=300)) as session:
        if settings.clickhouse.embedded:
            chunks = sink_archive(session, settings.sink.base_url(), local_admin_token(settings), tenant, from_ms,
                                  to_ms)
        else:
            chunks = server_archive(settings, tenant, from_ms, to_ms)
        try:
            if not dry_run:
                await producer.start()
            async for total, chunk in chunks:
                summary.total = total
                records: list[OutboundRecord] = []
                for archived in chunk:
                    summary.events += 1
                    raw = archived.event
                    raw.extensions_policy = extensions_policy
                    try:
                        facts = stamp_derived(normalize_with(raw, options))
                        records += [OutboundRecord(topics.facts, fact_key(fact), fact_codec.encode_record(fact))
                                    for fact in facts]
                        summary.facts += len(facts)
                    except PipelineError as error:
                        letter = DeadLetter(reason=f"{type(error).__name__}: {error}", reason_code=error.reason_code,
                                            worker_version=WORKER_VERSION,
                                            topic=topics.raw(_source(raw.source)), partition=-1, offset=-1,
                                            original=raw_codec.encode_record(raw))
                        records.append(OutboundRecord(topics.dead_letters, partition_key(raw.tenant, raw.student_id),
                                                      letter.to_json()))
                        summary.dead_letters += 1
                if not dry_run and records:
                    sends = [await producer.send(topic, value, key=key)
                             for topic, key, value in await blocks.assemble_for(producer.partitions_for, records)]
                    await asyncio.gather(*sends)
                if progress:
                    _progress(summary.events, summary.total, started)
        except (KafkaError, SideTopicRecordError) as error:
            raise RenormalizeError(f"renormalize stopped after {summary.events} events ({summary.facts} facts "
                                   f"published; a rerun is safe): {error!r}") from error
        finally:
            if progress:
                print(file=sys.stderr)
            if not dry_run:
                await producer.stop()
    summary.seconds = time.monotonic() - started
    return summary


def _source(name: str) -> Source:
    return Source(name) if name in Source._value2member_map_ else Source.CALIPER


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = min(width, int(width * done / total)) if total else width
    rate = done / max(time.monotonic() - started, 1e-6)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events ({rate:,.0f}/s)", end="",
          file=sys.stderr, flush=True)
