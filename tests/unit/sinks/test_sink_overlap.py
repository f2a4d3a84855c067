"""The loader fetches while ClickHouse inserts, and still inserts and commits a partition's batches in
offset order, committing each only after its insert returned.

The real ClickHouse engine (embedded chDB) receives the inserts; its insert is held on an event so the test can
see what the loader does meanwhile. The consumer is a recorder of the loader's commits (no broker needed: what is
checked is the order of inserts and commits, and that ``_write_due`` does not wait for an insert in progress).
"""

from __future__ import annotations

import asyncio
import threading
import typing

from aiokafka import TopicPartition
from sink_fixtures import make_fact, scalar

from schemas.avro.codec import LearningFactCodec
from schemas.kafka import KafkaSettings
from sinks.batches import facts_target
from sinks.clickhouse import ClickHouse
from sinks.loader import SinkLoader
from sinks.settings import SinkSettings

TOPIC = "facts"
CODEC = LearningFactCodec()


class HeldInserts:
    """The real engine, whose inserts wait until ``release`` is set; records the offsets' order of the inserts."""

    def __init__(self, real: ClickHouse) -> None:
        self.real = real
        self.release = threading.Event()
        self.started = threading.Event()
        self.inserted: list[str] = []

    def insert_avro(self, table: str, container: bytes, settings: typing.Any = None) -> None:
        self.started.set()
        assert self.release.wait(30), "the test never released the insert"
        self.real.insert_avro(table, container, settings)
        self.inserted.append(str(settings["insert_deduplication_token"]))

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self.real, name)


class Commits:
    """What the loader asks of its consumer while writing: commits (recorded, with what was inserted then)."""

    def __init__(self, held: HeldInserts) -> None:
        self.held = held
        self.commits: list[tuple[int, int]] = []  # (offset committed, inserts done at that moment)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        (offset,) = offsets.values()
        self.commits.append((offset, len(self.held.inserted)))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, 0)}


def add_messages(loader: SinkLoader, first: int, count: int) -> None:
    for offset in range(first, first + count):
        loader.sink.add(CODEC.encode_record(make_fact(offset)), TOPIC, 0, offset)


async def test_fetching_goes_on_while_an_insert_runs_and_commits_follow_the_inserts(target: ClickHouse) -> None:
    held = HeldInserts(target)
    loader = SinkLoader(SinkSettings(batch_rows=3, batch_seconds=3600), KafkaSettings(), typing.cast(
        ClickHouse, held), targets={TOPIC: facts_target()})
    consumer = Commits(held)
    add_messages(loader, 0, 3)  # a full batch: due
    await asyncio.wait_for(loader._write_due(consumer), 5)  # hands it to the writer
    assert await asyncio.to_thread(held.started.wait, 10)
    assert held.inserted == [] and consumer.commits == []  # the insert is in ClickHouse's hands, nothing committed

    add_messages(loader, 3, 3)  # the next batch is read meanwhile; the loader does not wait for the insert
    await asyncio.wait_for(loader._write_due(consumer), 5)
    assert consumer.commits == [] and loader.sink.closed_size() == 3

    add_messages(loader, 6, 3)  # more than batch_rows waiting: now fetching waits for the writer
    waiting = asyncio.create_task(loader._write_due(consumer))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    held.release.set()
    await asyncio.wait_for(waiting, 30)
    await asyncio.wait_for(loader.finish_writing(), 30)
    await asyncio.wait_for(loader._write_due(consumer), 30)
    await asyncio.wait_for(loader.finish_writing(), 30)

    assert held.inserted == [f"{TOPIC}:0:0-2", f"{TOPIC}:0:3-5", f"{TOPIC}:0:6-8"]  # offset order
    assert consumer.commits == [(3, 1), (6, 2), (9, 3)]  # each after its own insert, in order
    assert loader.rows_written == 9
    assert scalar(target, f"SELECT count() FROM {target.database}.learning_facts") == 9
