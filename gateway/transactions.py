"""All-or-nothing publishing: the events of a request reach the raw topics in ONE Kafka transaction.

A consumer reading with ``isolation_level=read_committed`` (the streams worker, the sink) sees a request's events
only when the transaction that carries them commits; a request answered with an error - a timeout, a broker that
fails mid-way - leaves none of its events visible, even if some had reached the broker.

One transaction per request would cost a few broker round trips each (AddPartitionsToTxn, EndTxn and its
markers) and serialize on the producer, which runs one transaction at a time. So concurrent requests are grouped:
a request joins the group its worker is gathering; the group is closed after ``window_seconds`` or
``max_group_events`` events, sent, and committed or aborted as one. Every request of a group gets the group's
outcome. ``producers`` workers, each with its own transactional producer (``<transactional_id>-<n>``), overlap
their transactions so that one group's commit does not stall the next.

Transaction timeouts: a group whose sends are not all acknowledged by the deadline of its oldest request is
aborted. Once the commit is sent, its outcome is awaited (up to ``transaction_timeout_ms``, after which the broker
itself aborts an unfinished transaction); a producer that failed or timed out is replaced, which fences the old
one (the new producer's InitProducerId completes or aborts what the old one left).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from schemas.errors import PipelineError

log = logging.getLogger(__name__)

ProducerFactory = Callable[[str], AIOKafkaProducer]


class TransactionFailedError(PipelineError):
    """The transaction carrying a request's events was aborted or could not be completed: none is visible."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class _Request:
    records: Sequence[Record]
    deadline: float
    outcome: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(slots=True)
class TransactionStats:
    transactions: int = 0
    aborted: int = 0
    requests: int = 0
    records: int = 0


class TransactionalPublisher:
    """Groups the publishes of concurrent requests into Kafka transactions."""

    def __init__(self, make_producer: ProducerFactory, transactional_id: str, *, producers: int = 2,
                 window_seconds: float = 0.002, max_group_records: int = 10_000,
                 commit_timeout_seconds: float = 30.0) -> None:
        self._make_producer = make_producer
        self.transactional_id = transactional_id
        self.producers = producers
        self.window_seconds = window_seconds
        self.max_group_records = max_group_records
        self.commit_timeout_seconds = commit_timeout_seconds
        self.stats = TransactionStats()
        self._queue: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._live: dict[int, AIOKafkaProducer] = {}

    async def start(self) -> None:
        for index in range(self.producers):
            self._live[index] = await self._started(index)
        self._workers = [asyncio.create_task(self._work(index), name=f"txn-{index}") for index in range(self.producers)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while self._queue:
            request = self._queue.popleft()
            if not request.outcome.done():
                request.outcome.set_exception(TransactionFailedError("the gateway is stopping"))
        for producer in self._live.values():
            with contextlib.suppress(Exception):
                await producer.stop()
        self._live = {}

    async def publish(self, records: Sequence[Record], timeout_seconds: float) -> None:
        """Return when a committed transaction carries every record; else raise ``TransactionFailedError`` (no
        record is then visible to read_committed consumers)."""
        if not self._workers:
            raise TransactionFailedError("the Kafka producer is not started")
        loop = asyncio.get_running_loop()
        request = _Request(records, loop.time() + timeout_seconds)
        self._queue.append(request)
        self._arrived.set()
        try:
            await asyncio.wait_for(asyncio.shield(request.outcome), timeout_seconds)
        except TimeoutError:
            try:
                self._queue.remove(request)  # still waiting for a worker: never sent
            except ValueError:  # in a transaction: its outcome comes (sends time out, the commit is bounded)
                await asyncio.shield(request.outcome)
            else:
                raise TransactionFailedError("Kafka did not take the events in time") from None

    # -- workers --------------------------------------------------------------------------------------------

    async def _started(self, index: int) -> AIOKafkaProducer:
        producer = self._make_producer(f"{self.transactional_id}-{index}")
        await producer.start()
        return producer

    async def _next_group(self) -> list[_Request]:
        loop = asyncio.get_running_loop()
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        group = [self._queue.popleft()]
        size = len(group[0].records)
        closes_at = loop.time() + self.window_seconds
        while size < self.max_group_records:
            if self._queue:
                if size + len(self._queue[0].records) > self.max_group_records:
                    break
                group.append(self._queue.popleft())
                size += len(group[-1].records)
                continue
            remaining = closes_at - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return group

    async def _work(self, index: int) -> None:
        while True:
            group = await self._next_group()
            loop = asyncio.get_running_loop()
            expired = [r for r in group if r.deadline <= loop.time()]
            for request in expired:  # waited too long in the queue: never sent
                request.outcome.set_exception(TransactionFailedError("Kafka did not take the events in time"))
            group = [r for r in group if r.deadline > loop.time()]
            if not group:
                continue
            try:
                await self._transact(self._live[index], group)
            except asyncio.CancelledError:
                for request in group:
                    if not request.outcome.done():
                        request.outcome.set_exception(TransactionFailedError("the gateway is stopping"))
                raise
            except Exception as error:
                self.stats.aborted += 1
                log.warning("transaction of %d requests failed: %r", len(group), error)
                for request in group:
                    if not request.outcome.done():
                        request.outcome.set_exception(TransactionFailedError(
                            f"Kafka did not take the events: {type(error).__name__}"))
                await self._replace(index)
            else:
                self.stats.transactions += 1
                self.stats.requests += len(group)
                self.stats.records += sum(len(r.records) for r in group)
                for request in group:
                    if not request.outcome.done():
                        request.outcome.set_result(None)

    async def _transact(self, producer: AIOKafkaProducer, group: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        deadline = min(r.deadline for r in group)
        await producer.begin_transaction()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                futures = [await producer.send(record.topic, record.value, key=record.key)
                           for request in group for record in request.records]
                await asyncio.gather(*futures)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), self.commit_timeout_seconds)
            raise
        await asyncio.wait_for(producer.commit_transaction(), self.commit_timeout_seconds)

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
