"""A request whose transaction failed is answered without waiting for the abort (with two of three
brokers down, the abort waits for them, and senders got no answer for 30+ s instead of a 503)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.transactions import TransactionalPublisher, TransactionFailedError
from schemas.record_batches import OutboundRecord


class StuckBrokers:
    """A transactional producer whose sends never complete and whose abort never returns (the brokers holding
    the partitions and the transaction log are gone)."""

    def __init__(self, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self.aborts_started = 0
        self.commits = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def begin_transaction(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    @property
    def client(self) -> Any:
        return SimpleNamespace(cluster=SimpleNamespace(available_partitions_for_topic=lambda topic: {0}))

    def create_batch(self) -> Any:
        return SimpleNamespace(append=lambda **record: object())  # room for every record

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()  # never acknowledged

    async def abort_transaction(self) -> None:
        self.aborts_started += 1
        await asyncio.Event().wait()

    async def commit_transaction(self) -> None:
        self.commits += 1


async def test_a_failed_transaction_is_answered_before_its_abort_completes() -> None:
    producers: list[StuckBrokers] = []

    def make(transactional_id: str) -> Any:
        producers.append(StuckBrokers(transactional_id))
        return producers[-1]

    publisher = TransactionalPublisher(make, "stuck", producers=1, window_seconds=0.001,
                                       commit_timeout_seconds=3600)
    await publisher.start()
    try:
        with pytest.raises(TransactionFailedError):
            # before the fix: the answer waited for the abort (here forever; with real brokers up to
            # commit_timeout_seconds), so this wait ran out instead
            await asyncio.wait_for(publisher.publish([OutboundRecord("raw", b"k", b"v")], 0.2), 10)
        assert producers[0].aborts_started == 1, "the transaction is still aborted"
        assert producers[0].commits == 0
    finally:
        await asyncio.wait_for(publisher.stop(), 10)
