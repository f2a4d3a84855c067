"""``caliper-pipeline replay``: re-publish dead letters (or any topic range) after a fix.

Dead letters carry the original message (base64) and the topic it came from; replay puts those bytes back on
that topic, keyed as before, so the fixed worker normalizes them again. Facts are deterministic (same fact ids),
so a replay of something that already landed collapses in ClickHouse. Any other topic's messages are copied
as they are to ``--to-topic``. The range is fixed when replay starts (end offsets at that moment).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.errors import PipelineError
from schemas.kafka import KafkaSettings, crc32_partitioner
from schemas.side_topics import DeadLetter, SideTopicRecordError


@dataclass
class ReplaySummary:
    read: int = 0
    republished: int = 0
    skipped: int = 0
    by_destination: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        lines = [f"read {self.read}, republished {self.republished}, skipped {self.skipped}"]
        lines += [f"  -> {topic}: {count}" for topic, count in sorted(self.by_destination.items())]
        lines += [f"  reason {count:>6} x {reason}" for reason, count in self.reasons.most_common(10)]
        return lines


def dead_letter_of(value: bytes) -> DeadLetter | None:
    """The dead letter a message holds, or None if it is not one."""
    try:
        return DeadLetter.from_json(value)
    except SideTopicRecordError:
        return None


class ReplayError(PipelineError):
    """A replay that cannot run as asked; the message says why (the CLI prints it as one line)."""


async def replay(kafka: KafkaSettings, *, topic: str | None = None, to_topic: str | None = None,
                 partition: int | None = None, from_offset: int | None = None, to_offset: int | None = None,
                 dry_run: bool = False, progress: bool = True) -> ReplaySummary:
    source = topic or kafka.topics.dead_letters
    is_dead_letters = source == kafka.topics.dead_letters
    if not is_dead_letters and not to_topic:
        raise ReplayError(f"--to-topic is needed to replay {source!r}: only dead letters know their destination")
    for name, value in (("--partition", partition), ("--from-offset", from_offset), ("--to-offset", to_offset)):
        if value is not None and value < 0:
            raise ReplayError(f"{name} must be 0 or more, not {value}")
    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise ReplayError(f"--from-offset {from_offset} is after --to-offset {to_offset}: the range is empty")
    options = kafka.client_options()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, isolation_level="read_committed",
                                **options)
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, partitioner=crc32_partitioner,
                                **options)
    summary = ReplaySummary()
    try:
        try:
            await consumer.start()
            await producer.start()
        except KafkaError as error:
            raise ReplayError(f"cannot reach Kafka at {kafka.bootstrap_servers or '(no bootstrap servers)'}: "
                              f"{error}") from error
        if source not in await consumer.topics():
            raise ReplayError(f"no topic {source!r} on the broker")
        if to_topic is not None and not is_dead_letters and to_topic not in await consumer.topics():
            raise ReplayError(f"no topic {to_topic!r} on the broker (create it first)")
        partitions = await producer.partitions_for(source)
        if partition is not None and partition not in partitions:
            raise ReplayError(f"{source!r} has no partition {partition} (it has {len(partitions)})")
        assigned = [TopicPartition(source, p) for p in sorted(partitions) if partition is None or p == partition]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await consumer.beginning_offsets(assigned)
        stops = {tp: min(ends[tp], to_offset + 1) if to_offset is not None else ends[tp] for tp in assigned}
        for tp in assigned:
            consumer.seek(tp, max(starts[tp], from_offset or 0))
        total = sum(max(0, stops[tp] - max(starts[tp], from_offset or 0)) for tp in assigned)
        pending = {tp for tp in assigned if stops[tp] > max(starts[tp], from_offset or 0)}
        started = time.monotonic()
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            sends = []
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= stops[tp]:
                        break
                    summary.read += 1
                    routed = _route(message.value or b"", is_dead_letters, to_topic, summary)
                    if routed is not None and not dry_run:
                        sends.append(await producer.send(routed[0], routed[1], key=message.key))
                if await consumer.position(tp) >= stops[tp]:
                    pending.discard(tp)
            if sends:
                await asyncio.gather(*sends)
            summary.republished += len(sends) if not dry_run else 0
            if progress:
                _progress(summary.read, total, started)
        if progress:
            print(file=sys.stderr)
    except KafkaError as error:
        raise ReplayError(f"Kafka failed during the replay ({summary.read} read, {summary.republished} "
                          f"republished so far; a rerun starts the range again): {error!r}") from error
    finally:
        await producer.stop()
        await consumer.stop()
    return summary


def _route(value: bytes, is_dead_letters: bool, to_topic: str | None,
           summary: ReplaySummary) -> tuple[str, bytes] | None:
    """Where one message goes back to, and its bytes; None (counted as skipped) for a broken dead letter."""
    if not is_dead_letters:
        destination, payload = str(to_topic), value
    else:
        letter = dead_letter_of(value)
        if letter is None:
            summary.skipped += 1
            return None
        destination, payload = letter.topic, letter.original
        summary.reasons[letter.reason[:120]] += 1
    summary.by_destination[destination] += 1
    return destination, payload


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    rate = done / max(time.monotonic() - started, 1e-6)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:,.0f}/s)", end="", file=sys.stderr,
          flush=True)
