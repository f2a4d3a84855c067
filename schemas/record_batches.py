"""Producing records as whole record batches, one per (topic, partition): the one way the gateway and the streams
worker hand records to aiokafka.

aiokafka's ``send`` costs ~50 us of Python per record (metadata wait, serialization, partitioning, a lookup of the
partition's open batch, a future per record). ``create_batch`` / ``send_batch`` instead append each record to a
``BatchBuilder`` (a C extension) and hand the broker's acknowledgement back per batch. The partition is chosen
exactly as ``send`` chooses it (the producer's partitioner, ``schemas.kafka.crc32_partitioner``, over the same
partition lists), so one student's records keep their partition and their order in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer

Partitioner = Callable[[bytes | None, Sequence[int], Sequence[int]], int]


class OutboundRecord(NamedTuple):
    """One message a stage produces."""

    topic: str
    key: bytes | None
    value: bytes


PartitionLists = tuple[list[int], list[int]]  # a topic's partitions, and those available: a partitioner's input


async def partition_lists(producer: AIOKafkaProducer, topic: str) -> PartitionLists:
    """The lists ``AIOKafkaProducer._partition`` gives its partitioner for ``topic`` (waiting for its metadata)."""
    all_partitions = list(await producer.partitions_for(topic))
    available = list(producer.client.cluster.available_partitions_for_topic(topic) or ())
    return all_partitions, available


async def send_in_batches(producer: AIOKafkaProducer, records: Iterable[OutboundRecord],
                          partitioner: Partitioner) -> list[asyncio.Future[Any]]:
    """Hand ``records`` to ``producer`` as one record batch per (topic, partition) (another when one is full, sent
    at once); the delivery future of every batch. A record's partition is ``partitioner(key, all, available)``
    over the producer's partition lists, as ``AIOKafkaProducer.send`` computes it. When handing a batch fails, the
    futures already given are left to nobody (the caller sends everything again): their outcome is read so asyncio
    does not log it."""
    partitions: dict[str, PartitionLists] = {}
    batches: dict[tuple[str, int], Any] = {}
    delivered: list[asyncio.Future[Any]] = []
    try:
        for topic, key, value in records:
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = await partition_lists(producer, topic)
            where = (topic, partitioner(key, known[0], known[1]))
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value) is None:  # full: send it, start another
                delivered.append(await producer.send_batch(batch, topic, partition=where[1]))
                batch = batches[where] = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value)  # an empty batch takes any record
        for (topic, partition), batch in batches.items():
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
    except BaseException:
        for future in delivered:
            future.add_done_callback(_retrieve)
        raise
    return delivered


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read an abandoned delivery's outcome, so asyncio does not log "exception was never retrieved"."""
    if not future.cancelled():
        future.exception()
