"""Create the pipeline's topics (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import TopicAlreadyExistsError

from schemas.kafka import KafkaSettings

REJECTED_RETENTION = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": str(256 * 1024 * 1024)}


def min_insync_replicas(replication_factor: int) -> int:
    """A majority of the replicas: 1 of 1, 2 of 3. With ``acks=all`` a write is acknowledged only once that many
    replicas have it, so with 3 one broker can fail without losing an acknowledged write or stopping writes, and
    with two down writes stop (the gateway answers 503) rather than being acknowledged by one copy."""
    return replication_factor // 2 + 1


async def ensure_topics(kafka: KafkaSettings) -> list[str]:
    """Create every topic that does not exist yet; return the names created."""
    topics = kafka.topics
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for name in topics.all_topics():
            if name in existing:
                continue
            configs = {"min.insync.replicas": str(min_insync_replicas(kafka.replication_factor))}
            if name == topics.rejected:
                configs.update(REJECTED_RETENTION)
            wanted.append(NewTopic(name, kafka.partitions, kafka.replication_factor, topic_configs=configs))
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won the race
                await admin.create_topics(wanted)
    finally:
        await admin.close()
    await wait_for_leaders(kafka, topics.all_topics())
    return [topic.name for topic in wanted]


async def wait_for_leaders(kafka: KafkaSettings, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of the topics has a leader, so the first produce does not bounce."""
    client = AIOKafkaClient(**kafka.client_options())
    await client.bootstrap()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            metadata = await client.fetch_all_metadata()
            led = all(
                (partitions := metadata.partitions_for_topic(name))
                and all(metadata.leader_for_partition(TopicPartition(name, p)) not in (None, -1) for p in partitions)
                for name in names
            )
            if led or asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.2)
    finally:
        await client.close()
