"""The streams worker's state stays within its bounds, in entries and in bytes per entry."""

from __future__ import annotations

import gc
import tracemalloc
import uuid

from faust.types import TP
from faust.types.tuples import ConsumerMessage
from pydantic import SecretStr

from schemas.kafka import KafkaSettings
from schemas.privacy import PrivacySettings
from schemas.records import content_hash_of
from streams.processor import ConflictTracker
from streams.settings import StreamsSettings
from streams.worker import build_app

ENTRIES = 20_000
KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1")
PRIVACY = PrivacySettings(email_hash_key=SecretStr("k"), student_key=SecretStr("s"))


def _keys(count: int) -> list[tuple[tuple[str, str, int], str]]:
    """Fact keys and content hashes as the worker sees them: a fresh tenant, event id and hash str per fact."""
    return [((f"tenant-soak-{index % 3}", f"urn:uuid:{uuid.uuid4()}", 0), content_hash_of(str(index).encode()))
            for index in range(count)]


def test_a_conflict_tracker_entry_keeps_none_of_the_facts_strings() -> None:
    """The tracker fills up at the worker's rate (100,000 entries in 100 s at 1,000 facts/s): what one entry holds
    is most of the worker's memory after the warm-up. An entry holding the key's strings (tenant, event id) and
    the hash's str costs ~450 bytes; a hashed key and an int hash ~180."""
    tracker = ConflictTracker(max_entries=ENTRIES)
    gc.collect()
    tracemalloc.start()  # before the keys are made: the strings the tracker would keep are traced
    try:
        before = tracemalloc.get_traced_memory()[0]
        keys = _keys(ENTRIES)
        for key, content_hash in keys:
            tracker.seen(key, content_hash)
        del keys, key, content_hash  # what the tracker retains is all that is left of them
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / ENTRIES < 250, f"{held / ENTRIES:.0f} bytes per entry"
    assert len(tracker) == ENTRIES


def test_the_conflict_tracker_reports_the_previous_hash_as_it_was_given() -> None:
    tracker = ConflictTracker(max_entries=10)
    first, second = content_hash_of(b"one"), content_hash_of(b"two")
    assert tracker.seen(("t", "e", 0), first) is None
    assert tracker.seen(("t", "e", 0), first) is None  # a re-send
    assert tracker.seen(("t", "e", 0), second) == first
    assert tracker.seen(("t", "e", 1), "0x" + first[2:]) is None  # not a plain hex digest: kept as a str
    assert tracker.seen(("t", "e", 1), first) == "0x" + first[2:]
    assert tracker.seen(("t", "e", 2), first.upper()) is None
    assert tracker.seen(("t", "e", 2), first) == first.upper()


async def test_the_worker_reads_ahead_a_bounded_number_of_records() -> None:
    """A worker behind its partitions held every record of every partition's last fetch at once: faust's poll asked
    aiokafka for all it had (59,283 records, ~40 MiB, in a traced soak). Each bound of the read-ahead is a setting
    the consumer and the agent's queue are built with."""
    app = build_app(StreamsSettings(), KAFKA, PRIVACY)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # built, not started: no broker
    defaults = StreamsSettings()
    assert consumer._max_poll_records == defaults.poll_max_records
    assert consumer._max_partition_fetch_bytes == defaults.fetch_max_bytes_per_partition
    agent = next(iter(app.agents.values()))
    assert agent.channel.queue.maxsize == defaults.buffer_max_events

    tight = StreamsSettings(poll_max_records=7, buffer_max_events=11, fetch_max_bytes_per_partition=4096)
    app = build_app(tight, KAFKA, PRIVACY)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert (consumer._max_poll_records, consumer._max_partition_fetch_bytes) == (7, 4096)
    assert next(iter(app.agents.values())).channel.queue.maxsize == 11


async def test_offsets_after_transaction_markers_are_committed_in_one_go() -> None:
    """The gateway writes each envelope in one transaction: a commit marker takes an offset after the envelope's
    records, which the worker never sees. The consumer records the skipped offset as a gap; every offset up to
    the last acked one is then committable at once, and the acked offsets it kept are released."""
    app = build_app(StreamsSettings(), KAFKA, PRIVACY)
    consumer = app.consumer
    topic = KAFKA.topics.raw_topics[0]
    tp = TP(topic, 0)
    app.topics._acking_topics.add(topic)  # as when the running agent subscribes to the topic
    read: int | None = None
    for transaction in range(3):  # 20 records, then the marker's offset
        for offset in range(transaction * 21, transaction * 21 + 20):
            if read is not None and offset - read > 1:
                await consumer._add_gap(tp, read + 1, offset)  # what faust's reading loop does on a gap
            read = offset
            assert consumer.ack(ConsumerMessage(topic=topic, partition=0, offset=offset, timestamp=0.0,
                                                timestamp_type=0, headers=None, key=None, value=b"v", checksum=None))
    assert consumer._new_offset(tp) == 62  # offsets 0..61: 60 records and two markers
    assert consumer._acked[tp] == []
