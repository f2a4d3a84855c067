"""Producing the worker's records: whole record batches handed to aiokafka, one per partition
(``schemas.record_batches``, the gateway's way too), through faust's producer.

``hand_records`` is the one step from the worker's records to aiokafka, taken by the worker (``KafkaPublisher``,
through faust's producer) and by ``caliper-pipeline renormalize`` (its own ``AIOKafkaProducer``): what the worker
publishes, and how, a re-derivation publishes the same way.

The delivery contract is unchanged: ``KafkaPublisher`` returns only once the broker acknowledged every batch (so
the consumer's offsets are acked after that, at-least-once); it raises if any batch failed, and the worker then
publishes everything again (duplicates are possible, losses are not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.transport.drivers import aiokafka as aiokafka_driver

from schemas.record_batches import OutboundRecord, Partitioner, send_in_batches


async def hand_records(producer: AIOKafkaProducer, records: Sequence[OutboundRecord],
                       partitioner: Partitioner) -> list[asyncio.Future[Any]]:
    """Hand the worker's ``records`` to ``producer`` (one record batch per partition); the delivery future of every
    batch, to await before the records count as published."""
    return await send_in_batches(producer, records, partitioner)


class BatchingProducer(aiokafka_driver.Producer):
    """faust's aiokafka producer with ``send_records``: a list of records as whole record batches.

    faust's ``send`` wraps aiokafka's per-record ``send`` (and fires ``app.on_produce_message``, which nothing of
    the worker listens to); ``send_records`` uses the same underlying ``AIOKafkaProducer`` (same connection,
    acks, partitioner, request timeout) through its batch API. The worker's app is not transactional (faust's
    exactly-once mode is off), so no transaction producer is involved.
    """

    async def send_records(self, records: Sequence[OutboundRecord]) -> list[asyncio.Future[Any]]:
        if self.partitioner is None:  # set by faust from ``producer_partitioner``; without it we cannot match send
            raise RuntimeError("the worker's producer has no partitioner")
        return await hand_records(self._ensure_producer(), records, self.partitioner)


class KafkaPublisher:
    """Produce records with the app's producer and wait until the broker acknowledged every one."""

    def __init__(self, app: faust.App) -> None:
        if not issubclass(app.transport.Producer, BatchingProducer):  # fail at build time, not in the retry loop
            raise RuntimeError("KafkaPublisher needs an app whose transport produces with BatchingProducer")
        self.app = app

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        if not records:
            return
        producer = await self.app.maybe_start_producer()
        if not isinstance(producer, BatchingProducer):
            raise RuntimeError(f"the app's producer is a {type(producer).__name__}, not a BatchingProducer")
        await asyncio.gather(*await producer.send_records(records))
