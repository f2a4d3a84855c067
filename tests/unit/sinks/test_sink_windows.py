"""Batch windows per topic: the raw archive's topics close their batches on a longer window than the facts'
(each insert has a fixed cost in ClickHouse; the archive is not on the facts' freshness path)."""

from __future__ import annotations

import asyncio
from typing import cast

from schemas.kafka import KafkaSettings
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse
from sinks.loader import SinkLoader
from sinks.settings import SinkSettings

NO_ENGINE = cast(ClickHouse, None)  # accumulating batches never touches ClickHouse


def test_a_topic_with_its_own_window_closes_its_batches_on_that_window() -> None:
    sink = BatchSink(NO_ENGINE, "g", batch_rows=1000, batch_seconds=1.0, topic_seconds={"raw": 5.0})
    sink.add(b"f", "facts", 0, 10, now=100.0)
    sink.add(b"r", "raw", 0, 20, now=100.0)
    assert [(b.topic, b.first_offset) for b in sink.take_due(now=101.0)] == [("facts", 10)]
    assert sink.take_due(now=104.9) == []
    due = sink.take_due(now=105.0)
    assert [(b.topic, b.first_offset, b.last_offset) for b in due] == [("raw", 20, 20)]


def test_a_full_batch_is_due_whatever_its_window() -> None:
    sink = BatchSink(NO_ENGINE, "g", batch_rows=2, batch_seconds=1.0, topic_seconds={"raw": 5.0})
    sink.add(b"a", "raw", 0, 1, now=100.0)
    sink.add(b"b", "raw", 0, 2, now=100.0)
    assert [b.size for b in sink.take_due(now=100.0)] == [2]


def test_the_loader_gives_the_archive_topic_the_archive_window_and_reads_no_raw_topic() -> None:
    kafka = KafkaSettings()
    loader = SinkLoader(SinkSettings(batch_seconds=0.7, archive_batch_seconds=4.0), kafka, NO_ENGINE,
                        student_key=b"k")
    topics = kafka.topics
    assert loader.sink.topic_seconds == {topics.archive: 4.0}
    for topic in (topics.facts, topics.jobs, topics.dead_letters, topics.rejected):
        assert topic in loader.targets and topic not in loader.sink.topic_seconds
    assert not set(topics.raw_topics) & set(loader.topics)  # the worker archives the raw events


def test_the_consumer_waits_for_larger_fetches() -> None:
    settings = SinkSettings(fetch_min_bytes=1 << 20, fetch_max_wait_ms=150)
    loader = SinkLoader(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), NO_ENGINE)

    async def options() -> tuple[int, int]:
        consumer = loader._new_consumer()  # not started: nothing is contacted
        return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms

    assert asyncio.run(options()) == (1 << 20, 150)


def test_a_range_closes_at_batch_bytes_too() -> None:
    """A block message holds many rows: a range closes at ``batch_bytes`` of messages whatever their count, so a
    window's memory stays bounded; a message that reaches it is the range's last."""
    sink = BatchSink(NO_ENGINE, "g", batch_rows=1000, batch_seconds=60, batch_bytes=250)
    for offset in range(5):
        sink.add(b"x" * 100, "facts", 0, offset, now=100.0)
    assert sink.closed_size() == 3 and sink.closed_bytes() == 300  # closed at the third message (300 >= 250)
    assert [(b.first_offset, b.last_offset) for b in sink.take_due(now=1000.0)[0].parts] == [(0, 2)]
