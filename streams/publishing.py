"""Producing the worker's records: whole record batches handed to aiokafka, one per partition
(``schemas.record_batches``, the gateway's way too), through faust's producer.

``hand_records`` is the one step from the worker's records to aiokafka, taken by the worker (``KafkaPublisher``,
through faust's producer) and by ``caliper-pipeline renormalize`` (its own ``AIOKafkaProducer``): what the worker
publishes, and how, a re-derivation publishes the same way.

Facts and raw-archive rows travel in blocks (``Blocks``, the one place they are assembled, in ``hand_records``): the
records of one produce step that go to one partition of the
facts (or archive) topic become ONE block record (``schemas.blocks``: the items' Avro bodies joined, not
re-encoded), in the order they were produced, so one student's facts keep their order on one partition. An item's
partition is the pipeline's (``crc32_partitioner`` of its key, ``partition_key(tenant, student)``, over the
topic's partitions); a block's key is its first item's key, which that partitioner maps to the same partition.
A block closes before it would pass ``block_max_bytes`` (the next items start another). Conflict notices and dead
letters stay one record per event.

The delivery contract is unchanged: ``KafkaPublisher`` returns only once the broker acknowledged every batch (so
the consumer's offsets are acked after that, at-least-once); it raises if any batch failed, and the worker then
publishes everything again (duplicates are possible, losses are not).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.transport.drivers import aiokafka as aiokafka_driver

from schemas.blocks import BlockCodec
from schemas.record_batches import OutboundRecord, Partitioner, send_in_batches


class Blocks:
    """Turns the item records of the block topics (``codecs``: topic -> its block codec) into block records; any
    other record passes as it is."""

    def __init__(self, codecs: Mapping[str, BlockCodec], max_bytes: int) -> None:
        self.codecs = dict(codecs)
        self.max_bytes = max_bytes

    def assemble(self, records: Sequence[OutboundRecord], partitions: Mapping[str, int]) -> list[OutboundRecord]:
        """The records with each block topic's items joined into one block per partition (``partitions``: the
        block topics' partition counts); the other records first, the blocks after, each in the order given."""
        passed: list[OutboundRecord] = []
        open_blocks: dict[tuple[str, int], tuple[bytes, list[bytes], int]] = {}  # first key, items, their bytes
        blocks: list[OutboundRecord] = []
        for record in records:
            codec = self.codecs.get(record.topic)
            if codec is None or record.key is None:
                passed.append(record)
                continue
            where = (record.topic, zlib.crc32(record.key) % partitions[record.topic])
            current = open_blocks.get(where)
            if current is not None and current[2] + len(record.value) > self.max_bytes:
                blocks.append(OutboundRecord(record.topic, current[0], codec.join(current[1])))
                current = None
            if current is None:
                open_blocks[where] = (record.key, [record.value], len(record.value))
            else:
                current[1].append(record.value)
                open_blocks[where] = (current[0], current[1], current[2] + len(record.value))
        blocks += [OutboundRecord(topic, key, self.codecs[topic].join(items))
                   for (topic, _), (key, items, _) in open_blocks.items()]
        return passed + blocks

    async def assemble_for(self, partitions_for: Callable[[str], Awaitable[Collection[int]]],
                           records: Sequence[OutboundRecord]) -> list[OutboundRecord]:
        """``assemble`` over the partitions a producer knows of the block topics (``partitions_for``: aiokafka's,
        the lists its partitioner is given); records of no block topic need no lookup."""
        topics = {record.topic for record in records if record.topic in self.codecs}
        partitions = {topic: len(await partitions_for(topic)) for topic in topics}
        return self.assemble(records, partitions) if topics else list(records)


async def hand_records(producer: AIOKafkaProducer, records: Sequence[OutboundRecord], partitioner: Partitioner,
                       blocks: Blocks) -> list[asyncio.Future[Any]]:
    """Hand the worker's ``records`` to ``producer``: the facts and archive rows joined into ``blocks`` over the
    partitions the producer knows, then one record batch per partition; the delivery future of every batch, to
    await before the records count as published."""
    return await send_in_batches(producer, await blocks.assemble_for(producer.partitions_for, records), partitioner)


class BatchingProducer(aiokafka_driver.Producer):
    """faust's aiokafka producer with ``send_records``: a list of records as whole record batches.

    faust's ``send`` wraps aiokafka's per-record ``send`` (and fires ``app.on_produce_message``, which nothing of
    the worker listens to); ``send_records`` uses the same underlying ``AIOKafkaProducer`` (same connection,
    acks, partitioner, request timeout) through its batch API. The worker's app is not transactional (faust's
    exactly-once mode is off), so no transaction producer is involved.
    """

    async def send_records(self, records: Sequence[OutboundRecord], blocks: Blocks) -> list[asyncio.Future[Any]]:
        if self.partitioner is None:  # set by faust from ``producer_partitioner``; without it we cannot match send
            raise RuntimeError("the worker's producer has no partitioner")
        return await hand_records(self._ensure_producer(), records, self.partitioner, blocks)


class KafkaPublisher:
    """Produce records with the app's producer (facts and archive rows in ``blocks``) and wait until the broker
    acknowledged every one."""

    def __init__(self, app: faust.App, blocks: Blocks) -> None:
        if not issubclass(app.transport.Producer, BatchingProducer):  # fail at build time, not in the retry loop
            raise RuntimeError("KafkaPublisher needs an app whose transport produces with BatchingProducer")
        self.app = app
        self.blocks = blocks

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        if not records:
            return
        producer = await self.app.maybe_start_producer()
        if not isinstance(producer, BatchingProducer):
            raise RuntimeError(f"the app's producer is a {type(producer).__name__}, not a BatchingProducer")
        await asyncio.gather(*await producer.send_records(records, self.blocks))
