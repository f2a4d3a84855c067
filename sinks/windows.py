"""Windows: the sink inserts once per window per table, across every partition of every topic feeding that table,
exactly once by window.

One insert into an entry table (a Null table and its materialized views) costs ClickHouse about the same whatever
its size, so the sink gathers the ranges its partitions closed in one window (``batch_seconds``; the raw archive's
topics on ``archive_batch_seconds``) into ONE insert per target table: a ``Window``. The insert body is built from the
messages' bytes (the facts' Avro container joins the bodies; nothing is decoded in Python).

Exactly once, after the design of ClickHouse's Kafka Connect sink (``processing/Processing.java``: a state record
per topic-partition, ``BEFORE_PROCESSING`` -> insert -> ``AFTER_PROCESSING``), applied to a window of ranges:

1. intent: one ``sink_batches`` row per part of the window - (consumer group, topic, partition, first offset, last
   offset, ``window_id``, ``parts``, ``done`` = 0) - is recorded in ONE insert before the data is inserted; it is
   each partition's current state (the table keeps the newest row per group, topic, partition);
2. the window's data is inserted with ``insert_deduplication_token`` = ``token_of`` its ranges (sorted by topic and
   partition): a one-range window keeps the per-partition token ``topic:partition:first-last``; a window of n
   ranges gets ``<first range>+<n-1>:<128-bit hash of all ranges>``, deterministic from the ranges alone;
3. done: the same rows again with ``done`` = 1 (one insert);
4. the loader commits every part's ``last + 1``.

Recovery, for each partition the consumer is given (``Plan``, read from ``sink_batches``):

- done: the range is inserted; the loader skips what it reads again of it and commits ``last + 1`` (no insert);
- recorded, not done, and this consumer owns every part of the window (``parts`` rows of that ``window_id``): each
  part's range is rebuilt exactly and the parts go into one window again - same ranges, same order, same token - so
  ClickHouse drops the block if the crash came after the insert;
- recorded, not done, and the window's parts are now split across sink instances (a rebalance came between the
  intent and the done marker): each owner replays only its own part, as a one-part window recorded anew, with that
  part's range token. If the original window's insert had returned before the crash, those rows are inserted a
  second time under the new token: ``learning_facts``, ``raw_events``, ``jobs``, ``job_facts``, ``failed_events``,
  ``sink_rejects`` are ReplacingMergeTrees on the row's identity, so the copy collapses at the next merge and
  ``FINAL`` (``current_facts``) never shows it; a reader counting without ``FINAL`` sees the rows twice meanwhile.
  This needs a crash after the insert and before its done marker AND a rebalance splitting the window's partitions;
  re-recording the part's intent first keeps later recoveries consistent (the part is then a window of its own).

A new window ClickHouse does not take (a transient failure, not a refusal of its data) is retried part by part, each
part recorded as a window of its own: a partition ClickHouse refuses then waits alone while the others load. The
same caveat applies (a failed insert that did reach the tables is inserted again under the parts' tokens: only when
the error came after ClickHouse had stored the block, as a lost response). A window rebuilt from its record (which
may be in ClickHouse already, from before the crash) is never split: it is retried whole, with its own token, its
partitions paused together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sinks.targets import MessageKey, Target

Range = tuple[str, int, int, int]  # topic, partition, first offset, last offset
TopicPartition = tuple[str, int]


def token_of(ranges: Sequence[Range], suffix: str = "") -> str:
    """The deduplication token of an insert of these ranges (in this order)."""
    topic, partition, first, last = ranges[0]
    head = f"{topic}:{partition}:{first}-{last}"
    if len(ranges) == 1:
        return head + suffix
    joined = "|".join(f"{t}:{p}:{f}-{la}" for t, p, f, la in ranges)
    digest = hashlib.blake2b(joined.encode(), digest_size=16).hexdigest()
    return f"{head}+{len(ranges) - 1}:{digest}{suffix}"


def ranges_of(keys: Iterable[MessageKey]) -> list[Range]:
    """Each partition's first and last offset among ``keys``, partitions in the order they first appear."""
    spans: dict[TopicPartition, list[int]] = {}
    for topic, partition, offset in keys:
        span = spans.get((topic, partition))
        if span is None:
            spans[(topic, partition)] = [offset, offset]
        else:
            span[1] = offset
    return [(topic, partition, first, last) for (topic, partition), (first, last) in spans.items()]


@dataclass(slots=True)
class PartitionBatch:
    """Consecutive messages of one partition, ``first_offset`` to ``last_offset``: one part of a window."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    opened_at: float
    values: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # not contiguous: transaction markers take offsets
    nbytes: int = 0  # the messages' bytes (a block message holds many rows)
    planned_last: int | None = None  # a recorded range this batch must reproduce exactly
    plan: Plan | None = None  # the recorded window this range belongs to

    @property
    def dedup_token(self) -> str:
        return token_of([self.range])

    @property
    def range(self) -> Range:
        return (self.topic, self.partition, self.first_offset, self.last_offset)

    @property
    def size(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class Plan:
    """A partition's recorded state: its range, the window it belongs to (``parts`` ranges), inserted or not."""

    first: int
    last: int
    window_id: str
    parts: int = 1
    done: bool = False
    recorded: bool = True  # False: a part regrouped as a window of its own, its intent not yet recorded


@dataclass(slots=True)
class Window:
    """The parts (one range per partition, sorted by topic and partition) one insert into ``target`` carries."""

    target: Target
    parts: list[PartitionBatch]

    @property
    def ranges(self) -> list[Range]:
        return [part.range for part in self.parts]

    @property
    def token(self) -> str:
        return token_of(self.ranges)

    @property
    def recorded(self) -> bool:
        """Its intent is already in ``sink_batches`` (a rebuilt window: the same parts, the same window id)."""
        token = self.token
        return all(part.plan is not None and part.plan.recorded and part.plan.window_id == token
                   and part.plan.parts == len(self.parts) for part in self.parts)

    @property
    def keys(self) -> list[MessageKey]:
        return [(part.topic, part.partition, offset) for part in self.parts for offset in part.offsets]

    @property
    def values(self) -> list[bytes]:
        return [value for part in self.parts for value in part.values]

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    # a one-part window reads as its batch did (a multi-part window: its first part)
    @property
    def dedup_token(self) -> str:
        return self.token

    @property
    def topic(self) -> str:
        return self.parts[0].topic

    @property
    def partition(self) -> int:
        return self.parts[0].partition

    @property
    def first_offset(self) -> int:
        return self.parts[0].first_offset

    @property
    def last_offset(self) -> int:
        return self.parts[0].last_offset


def plan_rows(consumer_group: str, window: Window, recorded_at: str, *, done: bool) -> list[dict[str, Any]]:
    """The ``sink_batches`` rows of a window: its intent (``done`` False) or its done marker."""
    token, parts = window.token, len(window.parts)
    return [{"consumer_group": consumer_group, "topic": topic, "partition": partition, "first_offset": first,
             "last_offset": last, "recorded_at": recorded_at, "window_id": token, "parts": parts,
             "done": int(done)} for topic, partition, first, last in window.ranges]


def regroup(plans: dict[TopicPartition, Plan], owned: set[TopicPartition]) -> list[TopicPartition]:
    """Keep the plans of the ``owned`` partitions; a window not done whose parts are not all owned here any more
    becomes one window per owned part (recorded anew before its insert). Returns the partitions regrouped."""
    for tp in [tp for tp in list(plans) if tp not in owned]:
        plans.pop(tp, None)
    snapshot = list(plans.values())  # list() copies at once: the writer's thread updates plans too
    members: dict[str, int] = {}
    for plan in snapshot:
        members[plan.window_id] = members.get(plan.window_id, 0) + 1
    incomplete = {plan.window_id for plan in snapshot if not plan.done and members[plan.window_id] < plan.parts}
    return [tp for window_id in incomplete for tp in split(plans, window_id)]


def split(plans: dict[TopicPartition, Plan], window_id: str) -> list[TopicPartition]:
    """Make every part of a recorded window a window of its own (its range token; recorded anew before its
    insert). Returns those partitions."""
    parts = [(tp, plan) for tp, plan in list(plans.items()) if plan.window_id == window_id and not plan.done]
    for tp, plan in parts:
        plans[tp] = Plan(plan.first, plan.last, token_of([(*tp, plan.first, plan.last)]), recorded=False)
    return [tp for tp, _ in parts]
