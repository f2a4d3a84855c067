"""Producing the worker's records: whole record batches handed to aiokafka, one per partition.

aiokafka's ``send`` costs ~50 us of Python per record here (metadata wait, serialization, partitioning, a lookup
of the partition's open batch, a future per record), a visible part of the worker's time through the broker.
``create_batch`` / ``send_batch`` instead append each record to a ``BatchBuilder`` (a C extension) and hand the
broker's acknowledgement back per batch: the worker groups a batch of facts by (topic, partition), the
partition chosen exactly as ``send`` chooses it (the producer's partitioner, ``schemas.kafka.crc32_partitioner``,
over the same partition lists), so one student's facts keep their partition and their order in it.

The delivery contract is unchanged: ``KafkaPublisher`` returns only once the broker acknowledged every batch (so
the consumer's offsets are acked after that, at-least-once); it raises if any batch failed, and the worker then
publishes everything again (duplicates are possible, losses are not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.processor import OutboundRecord

Partitioner = Callable[[bytes | None, Sequence[int], Sequence[int]], int]


async def send_in_batches(producer: AIOKafkaProducer, records: Sequence[OutboundRecord],
                          partitioner: Partitioner) -> list[asyncio.Future[Any]]:
    """Hand ``records`` to ``producer`` as one record batch per (topic, partition) (another when one is full, sent
    at once); the delivery future of every batch. A record's partition is ``partitioner(key, all, available)``
    over the producer's partition lists, as ``AIOKafkaProducer.send`` computes it."""
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    batches: dict[tuple[str, int], Any] = {}
    delivered: list[asyncio.Future[Any]] = []
    try:
        for record in records:
            topic = record.topic
            known = partitions.get(topic)
            if known is None:  # the lists ``AIOKafkaProducer._partition`` gives its partitioner, once per topic
                all_partitions = list(await producer.partitions_for(topic))
                available = list(producer.client.cluster.available_partitions_for_topic(topic) or ())
                known = partitions[topic] = (all_partitions, available)
            where = (topic, partitioner(record.key, known[0], known[1]))
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = producer.create_batch()
            if batch.append(timestamp=None, key=record.key, value=record.value) is None:  # full: send, start anew
                delivered.append(await producer.send_batch(batch, topic, partition=where[1]))
                batch = batches[where] = producer.create_batch()
                batch.append(timestamp=None, key=record.key, value=record.value)  # an empty batch takes any record
        for (topic, partition), batch in batches.items():
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
    except BaseException:
        for future in delivered:  # the caller publishes everything again; nobody will await these
            future.add_done_callback(_retrieve)
        raise
    return delivered


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read an abandoned delivery's outcome, so asyncio does not log "exception was never retrieved"."""
    if not future.cancelled():
        future.exception()


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
        return await send_in_batches(self._ensure_producer(), records, self.partitioner)


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
