"""A sink dying inside a window, on the real broker and the real engine (embedded chDB): every acknowledged fact
is in ClickHouse exactly once afterwards, counted without FINAL, by event id.

The fault is injected at the exact point of the first window holding several partitions - after its intent is
recorded and before its insert; after its insert and before its done marker; after its done marker and before the
offset commit - by an exception that is not the sink's: the loader stops there without committing anything, as a
killed process would. A second loader of the same group then takes the partitions over."""

from __future__ import annotations

import asyncio
import time
import typing
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import LearningFactCodec
from schemas.kafka import KafkaSettings
from schemas.records import LearningFact, fact_id_for
from sinks.clickhouse import ClickHouse, connect
from sinks.loader import SinkLoader
from sinks.migrations import Layout, apply_migrations
from sinks.settings import ClickHouseSettings, SinkSettings
from sinks.tables import BATCHES_TABLE, FACT_INPUT_TABLE

pytestmark = pytest.mark.integration

DAY_MS = 1_700_006_400_000
TOTAL = 3000


class Crash(Exception):
    """The sink process dying at the injected point."""


def make_fact(number: int, run: str) -> LearningFact:
    event_id = f"{run}-{number}"
    return LearningFact(
        fact_id=fact_id_for("school-a", event_id), fact_index=0, content_hash=f"h{number}", tenant="school-a",
        client_id="client", source="hub", event_id=event_id, event_type="GradeEvent", profile="GradingProfile",
        action="Graded", event_time_ms=DAY_MS + number, send_time_ms=DAY_MS + number,
        received_time_ms=DAY_MS + number, student_id=f"student-{number % 37}", xp_earned=1.0)


class CrashingClickHouse:
    """The real engine, dying once at ``point`` of the first window of several partitions; remembers how many
    rows that window held."""

    def __init__(self, real: ClickHouse, point: str) -> None:
        self.real = real
        self.database = real.database
        self.point = point  # "intent", "insert" (before the done marker) or "commit" (after it)
        self.window_rows = 0

    def insert_raw(self, table: str, body: bytes, fmt: str, settings: Any = None) -> None:
        rows = [orjson.loads(line) for line in body.splitlines()] if table == BATCHES_TABLE else []
        if self.window_rows or not rows or rows[0]["parts"] < 2:
            self.real.insert_raw(table, body, fmt, settings)
            return
        done = rows[0]["done"] == 1
        if (self.point, done) in {("intent", False), ("commit", True)}:
            self.real.insert_raw(table, body, fmt, settings)  # recorded; the process dies right after
        elif (self.point, done) != ("insert", True):
            self.real.insert_raw(table, body, fmt, settings)
            return
        self.window_rows = sum(row["last_offset"] - row["first_offset"] + 1 for row in rows)
        raise Crash(f"killed at {self.point}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def target(tmp_path: Path) -> Any:
    engine = connect(ClickHouseSettings(data_path=tmp_path / "chdb"), create_database=True)
    apply_migrations(engine, Layout("learning"))
    yield engine
    engine.close()


async def produce(kafka: KafkaSettings, facts: list[LearningFact]) -> None:
    codec = LearningFactCodec()
    producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1 << 20, **kafka.client_options())
    await producer.start()
    try:
        pending = [await producer.send(kafka.topics.facts, codec.encode_record(f), key=f.student_id.encode())
                   for f in facts]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def count(target: ClickHouse, sql: str) -> int:
    return int(target.scalar(sql))


async def wait_for(condition: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running(loader: SinkLoader) -> AsyncIterator[SinkLoader]:
    task = asyncio.create_task(loader.run())
    try:
        yield loader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("point", ["intent", "insert", "commit"])
async def test_a_sink_dying_inside_a_window_leaves_every_fact_once(kafka_settings: KafkaSettings, target: Any,
                                                                   point: str) -> None:
    await produce(kafka_settings, [make_fact(i, f"window-{point}") for i in range(TOTAL)])
    settings = SinkSettings(batch_rows=400, batch_seconds=0.3, group_id=f"sink-{uuid.uuid4().hex[:8]}")
    crashing = CrashingClickHouse(target, point)
    first = SinkLoader(settings, kafka_settings, typing.cast(ClickHouse, crashing))
    task = asyncio.create_task(first.run())
    done, _ = await asyncio.wait([task], timeout=60)
    assert done and isinstance(task.exception(), Crash), "the sink should have died inside a window"
    assert crashing.window_rows > 0
    inserted_before = count(target, "SELECT count() FROM learning.learning_facts")

    second = SinkLoader(settings, kafka_settings, target)
    async with running(second):
        await wait_for(lambda: count(target, "SELECT count() FROM learning.learning_facts FINAL") >= TOTAL)
        await asyncio.sleep(1.5)  # anything replayed twice would have landed by now
    assert count(target, "SELECT count() FROM learning.learning_facts") == TOTAL  # no FINAL
    assert count(target, "SELECT uniqExact(event_id) FROM learning.learning_facts") == TOTAL
    fact_inserts = second.metrics.inserts.labels(FACT_INPUT_TABLE)._value.get()
    if point == "commit":  # the window was done: skipped and committed, not inserted again
        assert second.rows_written == TOTAL - inserted_before
    else:  # rebuilt exactly: inserted (intent) or dropped by ClickHouse as the same block (insert)
        assert second.rows_written == TOTAL - inserted_before + (crashing.window_rows if point == "insert" else 0)
    assert fact_inserts >= 1
