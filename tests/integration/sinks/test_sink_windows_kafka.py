"""A sink dying inside a window, on the real broker and the real engine (embedded chDB): every acknowledged fact
is in ClickHouse exactly once afterwards, counted without FINAL, by event id.

The fault is injected at the exact point of the first window holding several partitions - after its intent is
recorded and before its insert; after its insert and before its done marker; after its done marker and before the
offset commit - by an exception that is not the sink's: the loader stops there without committing anything, as a
killed process would. A second loader of the same group then takes the partitions over."""

from __future__ import annotations

import asyncio
import typing
import uuid
from typing import Any

import orjson
import pytest
from test_sink_kafka import count, make_fact, produce, running, wait_for

from schemas.kafka import KafkaSettings
from sinks.clickhouse import ClickHouse
from sinks.loader import SinkLoader
from sinks.settings import SinkSettings
from sinks.tables import BATCHES_TABLE, FACT_INPUT_TABLE

pytestmark = pytest.mark.integration

TOTAL = 3000


class Crash(Exception):
    """The sink process dying at the injected point."""


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
    if point == "commit":  # windows of one partition before the crashed one may have loaded everything already
        assert (fact_inserts >= 1) == (inserted_before < TOTAL)
    else:
        assert fact_inserts >= 1
