"""All-or-nothing publishing: the events of a request reach the raw topics in ONE Kafka transaction.

A consumer reading with ``isolation_level=read_committed`` (the streams worker, the sink) sees a request's events
only when the transaction that carries them commits; a request answered with an error - a timeout, a broker that
fails mid-way - leaves none of its events visible, even if some had reached the broker.

One transaction per request would cost a few broker round trips each (AddPartitionsToTxn, the records, EndTxn and
its markers) and serialize on the producer, which runs one transaction at a time. So concurrent requests are
grouped: ``producers`` workers, each with its own transactional producer (``<transactional_id>-<n>``), take turns;
a worker that is free takes every request queued (up to ``max_group_records`` in all: a request counts its
``weight``, the gateway's its events, its records by default) and runs them as one transaction; requests that
arrive meanwhile queue for the next free worker. So the busier the gateway, the larger the groups, and an idle
gateway sends a lone request at once. ``window_seconds`` > 0 makes a worker wait that long
for more requests before it starts: with two producers, 2 ms gives fewer, larger transactions for less gateway
CPU per request (the gateway's defaults; docs/benchmarks.md, "Raw batch records"). Every request of a group gets
the group's outcome.

Costs cut per transaction (each measured, docs/benchmarks.md "Gateway throughput"):

- the records of a group go into one record batch per partition (``create_batch`` / ``send_batch``: the
  partition computed here with the producers' partitioner), not one ``send`` per record, which costs several
  microseconds each in aiokafka; the producers do not linger (a group is complete when it is sent);
- aiokafka waits ``BACKOFF_OVERRIDE`` (20 ms) when the coordinator answers AddPartitionsToTxn with
  CONCURRENT_TRANSACTIONS, which it does while it is still writing the markers of the producer's previous
  transaction (KAFKA-5477): on this broker the markers take 1-3 ms, so a producer that starts its next transaction
  at once lost ~17 ms each time. ``TRANSACTION_RETRY_BACKOFF_SECONDS`` replaces it (``patch_aiokafka_backoff``,
  applied when a publisher starts; a test checks that aiokafka still reads that constant); a retry is one small
  request to the coordinator.

Timeouts: a request still queued when its time is up is answered with an error and never sent. A group whose
sends are not all acknowledged by the deadline of its oldest request is aborted, and its requests are answered
(503) at once: no commit was sent, so none of their events can become visible, and the abort may itself wait long
for brokers that are down. Once the commit is sent, its outcome is awaited (up to ``commit_timeout_seconds``,
after which the broker itself aborts an unfinished transaction); a producer that failed or timed out is replaced,
which fences the old one (the new producer's InitProducerId completes or aborts what the old one left).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import aiokafka.producer.sender
from aiokafka import AIOKafkaProducer

from schemas.errors import PipelineError
from schemas.kafka import crc32_partitioner
from schemas.record_batches import OutboundRecord, Partitioner, send_in_batches

log = logging.getLogger(__name__)

ProducerFactory = Callable[[str], AIOKafkaProducer]
# how long aiokafka waits before retrying AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS (its own: 20 ms)
TRANSACTION_RETRY_BACKOFF_SECONDS = 0.002


def patch_aiokafka_backoff(seconds: float = TRANSACTION_RETRY_BACKOFF_SECONDS) -> None:
    """Set aiokafka's retry backoff after CONCURRENT_TRANSACTIONS (a module constant of ``aiokafka.producer.sender``
    read by ``AddPartitionsToTxnHandler.handle_response``; there is no setting for it). See the module doc."""
    aiokafka.producer.sender.BACKOFF_OVERRIDE = seconds


class TransactionFailedError(PipelineError):
    """The transaction carrying a request's events was aborted or could not be completed: none is visible."""


class _Request:
    __slots__ = ("deadline", "outcome", "records", "taken", "weight")

    def __init__(self, records: Sequence[OutboundRecord], deadline: float, outcome: asyncio.Future[None],
                 weight: int) -> None:
        self.records = records
        self.weight = weight  # what it counts toward max_group_records
        self.deadline = deadline
        self.outcome = outcome
        self.taken = False  # by a worker: its outcome now comes from a transaction


class TransactionStats:
    __slots__ = ("aborted", "records", "requests", "transactions")

    def __init__(self) -> None:
        self.transactions = 0
        self.aborted = 0
        self.requests = 0
        self.records = 0


@dataclass(eq=False)
class TransactionalPublisher:
    """Groups the publishes of concurrent requests into Kafka transactions (the options: see the module doc)."""

    _make_producer: ProducerFactory
    transactional_id: str
    _: KW_ONLY
    producers: int = 2
    window_seconds: float = 0.0
    max_group_records: int = 10_000
    commit_timeout_seconds: float = 30.0
    partitioner: Partitioner = crc32_partitioner
    stats: TransactionStats = field(default_factory=TransactionStats, init=False)
    _queue: deque[_Request] = field(default_factory=deque, init=False, repr=False)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _workers: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _live: dict[int, AIOKafkaProducer] = field(default_factory=dict, init=False, repr=False)

    async def start(self) -> None:
        patch_aiokafka_backoff()
        for index in range(self.producers):
            self._live[index] = await self._started(index)
        self._workers = [asyncio.create_task(self._work(index), name=f"txn-{index}") for index in range(self.producers)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while self._queue:
            _settle(self._queue.popleft(), TransactionFailedError("the gateway is stopping"))
        for producer in self._live.values():
            with contextlib.suppress(Exception):
                await producer.stop()
        self._live = {}

    async def publish(self, records: Sequence[OutboundRecord], timeout_seconds: float,
                      weight: int | None = None) -> None:
        """Return when a committed transaction carries every record; else raise ``TransactionFailedError`` (no
        record is then visible to read_committed consumers). ``weight``: what the request counts toward
        ``max_group_records`` (the number of records when None; the gateway counts events, several of which
        travel in one batch record)."""
        if not self._workers:
            raise TransactionFailedError("the Kafka producer is not started")
        loop = asyncio.get_running_loop()
        request = _Request(records, loop.time() + timeout_seconds, loop.create_future(),
                           len(records) if weight is None else weight)
        self._queue.append(request)
        self._arrived.set()
        timer = loop.call_later(timeout_seconds, _expire, request)
        try:
            await request.outcome
        finally:
            timer.cancel()

    # -- workers --------------------------------------------------------------------------------------------

    async def _started(self, index: int) -> AIOKafkaProducer:
        producer = self._make_producer(f"{self.transactional_id}-{index}")
        await producer.start()
        return producer

    def _take(self, group: list[_Request], size: int) -> int:
        """Move queued requests into ``group`` while they fit in ``max_group_records`` (a first one always)."""
        queue = self._queue
        while queue:
            request = queue[0]
            if request.outcome.done():  # expired or cancelled while queued: never sent
                queue.popleft()
                continue
            if group and size + request.weight > self.max_group_records:
                break
            queue.popleft()
            request.taken = True
            group.append(request)
            size += request.weight
        return size

    async def _next_group(self) -> list[_Request]:
        group: list[_Request] = []
        while not group:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            size = self._take(group, 0)
        if self.window_seconds > 0:
            loop = asyncio.get_running_loop()
            closes_at = loop.time() + self.window_seconds
            while size < self.max_group_records and (remaining := closes_at - loop.time()) > 0:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                size = self._take(group, size)
        return group

    async def _work(self, index: int) -> None:
        while True:
            group = await self._next_group()
            try:
                await self._transact(self._live[index], group)
            except asyncio.CancelledError:
                for request in group:
                    _settle(request, TransactionFailedError("the gateway is stopping"))
                raise
            except Exception as error:
                self.stats.aborted += 1
                log.warning("transaction of %d requests failed: %r", len(group), error)
                for request in group:
                    _settle(request, TransactionFailedError(f"Kafka did not take the events: {type(error).__name__}"))
                await self._replace(index)
            else:
                stats = self.stats
                stats.transactions += 1
                stats.requests += len(group)
                for request in group:
                    stats.records += len(request.records)
                    if not request.outcome.done():
                        request.outcome.set_result(None)

    async def _transact(self, producer: AIOKafkaProducer, group: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        deadline = min(r.deadline for r in group)
        await producer.begin_transaction()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await asyncio.gather(*await self._send_batches(producer, group))
        except BaseException as error:
            if isinstance(error, Exception):
                # no commit was sent, and none will be: the group's requests are answered now, not after the
                # abort, which waits for the same brokers that failed (two of three down: tens of seconds)
                for request in group:
                    _settle(request, TransactionFailedError(
                        f"Kafka did not take the events: {type(error).__name__}"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), self.commit_timeout_seconds)
            raise
        await asyncio.wait_for(producer.commit_transaction(), self.commit_timeout_seconds)

    async def _send_batches(self, producer: AIOKafkaProducer, group: list[_Request]) -> list[asyncio.Future[Any]]:
        """The group's records in one record batch per partition (more when a batch is full), each handed to the
        producer as soon as it is full; their delivery futures."""
        records = (record for request in group for record in request.records)
        return await send_in_batches(producer, records, self.partitioner)

    async def _replace(self, index: int) -> None:
        """A new producer under the same transactional id: fences the old one and settles what it left."""
        old = self._live.get(index)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()
        while True:
            try:
                self._live[index] = await self._started(index)
                return
            except Exception as error:
                log.warning("cannot start transactional producer %s-%d: %r", self.transactional_id, index, error)
                await asyncio.sleep(1.0)


def _settle(request: _Request, error: TransactionFailedError) -> None:
    if not request.outcome.done():
        request.outcome.set_exception(error)


def _expire(request: _Request) -> None:
    """The request's time is up: answered with an error if no worker took it yet (it will never be sent); one
    taken gets the outcome of its transaction (whose sends are bounded by the same deadline)."""
    if not request.taken:
        _settle(request, TransactionFailedError("Kafka did not take the events in time"))
