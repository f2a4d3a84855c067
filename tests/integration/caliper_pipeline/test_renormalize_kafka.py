"""``renormalize`` on the real broker: it takes the streams worker's path. Each chunk of archived events goes out
as one record batch per partition (never one ``send`` per record), and the facts and dead letters that arrive
on the topics are what the worker's processor makes of the same events (dead letters with renormalize's worker
version and partition/offset -1).

The archive stream is served by a small HTTP server speaking the sink's ``POST /archive/raw-events`` format
(``ArchivedEvent`` lines), written in pieces that cut lines apart, as a network may deliver them."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from published import fact_count, facts_in
from pydantic import SecretStr

import caliper_pipeline.ops.renormalize as renormalize_module
from caliper_pipeline.bench.streams_bench import sample_raw_events
from caliper_pipeline.ops.renormalize import WORKER_VERSION, renormalize
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry
from gateway.settings import GatewaySettings
from schemas.archive import ArchivedEvent
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.kafka import KafkaSettings, Source, crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings
from schemas.record_batches import OutboundRecord
from schemas.records import LearningFact, RawEvent
from schemas.side_topics import DeadLetter
from sinks.settings import ClickHouseSettings, SinkSettings
from streams.processor import EventProcessor
from streams.settings import StreamsSettings

pytestmark = pytest.mark.integration

PRIVACY = PrivacySettings(email_hash_key=SecretStr("renorm-email-key"), student_key=SecretStr("renorm-student-key"))
ADMIN = secrets.token_urlsafe(16)
CHUNK = 100


def archived_events() -> list[RawEvent]:
    """Events of every source, all of one tenant, and two the normalizers refuse."""
    events = [dataclasses.replace(raw, tenant="school-r") for raw in sample_raw_events(250)]
    events[17] = dataclasses.replace(events[17], payload=b"{not json")
    events[203] = dataclasses.replace(events[203], payload=b"[1, 2]")
    return events


@asynccontextmanager
async def archive_server(events: list[RawEvent]) -> AsyncIterator[str]:
    """The sink's archive stream of ``events``, written 999 bytes at a time."""

    async def archive(request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == f"Bearer {ADMIN}"
        assert (await request.json())["tenant"] == "school-r"
        response = web.StreamResponse(headers={"X-Total-Count": str(len(events))})
        await response.prepare(request)
        body = b"".join(ArchivedEvent(event=raw, content_hash="0" * 32).to_json() + b"\n" for raw in events)
        for start in range(0, len(body), 999):
            await response.write(body[start:start + 999])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/archive/raw-events", archive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def read_topic(kafka: KafkaSettings, topic: str, expect: int,
                     count: Callable[[bytes], int] = lambda value: 1) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of the topic's first messages holding ``expect`` records (``count``: how many a message holds;
    a facts block holds many)."""
    reader = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                              **kafka.client_options())
    await reader.start()
    found: list[tuple[bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while sum(count(value) for _, value in found) < expect:
                for messages in (await reader.getmany(timeout_ms=500)).values():
                    found += [(m.key, m.value) for m in messages if m.value is not None]
    finally:
        await reader.stop()
    return found


def comparable_fact(value: bytes | LearningFact) -> dict[str, Any]:
    fact = dataclasses.asdict(value if isinstance(value, LearningFact) else LearningFactCodec().decode_record(value))
    fact.pop("derived_time_ms")  # when it was derived: the only difference between two derivations
    return fact


def comparable_letter(value: bytes) -> dict[str, Any]:
    letter = dataclasses.asdict(DeadLetter.from_json(value))
    letter.pop("time_ms")
    return letter


async def test_renormalize_publishes_a_batch_per_partition_per_chunk_what_the_worker_makes(
        tmp_path: Path, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    events = archived_events()
    topics = kafka_settings.topics
    monkeypatch.setattr(renormalize_module, "CHUNK_EVENTS", CHUNK, raising=False)
    handed: list[list[OutboundRecord]] = []  # the records of each publishing step
    batches: list[list[tuple[str, int]]] = []  # the (topic, partition) of each batch sent, per step
    from streams.publishing import hand_records

    async def watched_hand(producer: Any, records: list[OutboundRecord], partitioner: Any, blocks: Any) -> Any:
        handed.append(list(records))
        batches.append([])
        return await hand_records(producer, records, partitioner, blocks)

    send_batch = AIOKafkaProducer.send_batch

    async def watched_send_batch(self: AIOKafkaProducer, batch: Any, topic: str, *, partition: int) -> Any:
        batches[-1].append((topic, partition))
        return await send_batch(self, batch, topic, partition=partition)

    async def no_send(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("renormalize sent a record on its own")

    monkeypatch.setattr(renormalize_module, "hand_records", watched_hand, raising=False)
    monkeypatch.setattr(AIOKafkaProducer, "send_batch", watched_send_batch)
    monkeypatch.setattr(AIOKafkaProducer, "send", no_send)

    async with archive_server(events) as url:
        settings = Settings(kafka=kafka_settings, clickhouse=ClickHouseSettings(data_path=tmp_path / "chdb"),
                            privacy=PRIVACY, gateway=GatewaySettings(clients_file=tmp_path / "clients.json"),
                            sink=SinkSettings(sink_url=url, admin_token=SecretStr(ADMIN)),
                            streams=StreamsSettings(worker_version="the worker's own"))
        summary = await renormalize(settings, "school-r", progress=False)
    monkeypatch.undo()

    # what the worker makes of the same events (each as a lone RawEvent record on its source's raw topic), with
    # the extensions policy renormalize applies: the tenant's current one
    policy = ClientRegistry(settings.gateway.clients_file).tenant("school-r").extensions_policy
    worker = EventProcessor(settings.streams, topics, PRIVACY)
    codec = RawEventCodec()
    made = [result for raw in events for result in worker.process_message(
        topics.raw(Source(raw.source)), 0, 7, partition_key(raw.tenant, raw.student_id),
        codec.encode_record(dataclasses.replace(raw, extensions_policy=policy)))]
    worker_facts = [record.value for result in made for record in result.records if record.topic == topics.facts]
    worker_letters = [record for result in made for record in result.records if record.topic == topics.dead_letters]
    assert len(worker_letters) == 2 and len(worker_facts) > 200

    assert (summary.events, summary.facts, summary.dead_letters) == (250, len(worker_facts), 2)
    # one publishing step per chunk, each one batch per (topic, partition) its records go to
    assert len(handed) == 3
    for records, sent in zip(handed, batches, strict=True):
        partitions = list(range(kafka_settings.partitions))
        assert sorted(sent) == sorted({(r.topic, crc32_partitioner(r.key, partitions, partitions)) for r in records})
    assert sum(len(records) for records in handed) == len(worker_facts) + 2

    facts = facts_in([value for _, value in await read_topic(kafka_settings, topics.facts, len(worker_facts),
                                                             count=fact_count)])
    letters = await read_topic(kafka_settings, topics.dead_letters, 2)
    assert sorted(map(comparable_fact, facts), key=repr) == sorted(
        map(comparable_fact, worker_facts), key=repr)
    expected_letters = []
    for record in worker_letters:
        letter = comparable_letter(record.value)
        assert letter["worker_version"] == "the worker's own"
        # renormalize signs its dead letters; its events came from the archive, not a topic
        letter |= {"worker_version": WORKER_VERSION, "partition": -1, "offset": -1}
        expected_letters.append((record.key, letter))
    assert sorted(((key, comparable_letter(value)) for key, value in letters), key=repr) == sorted(
        expected_letters, key=repr)
    # the facts carry this installation's normalizer version, as the worker's do
    assert {fact.normalizer_version for fact in facts} == {
        settings.streams.normalizer_version}
