"""Reading topics the way consumers outside the pipeline do: Apache Kafka's Java client, librdkafka, and the raw
record batches on the broker.

- ``read_with_java``: ``tests/fixtures/java/TopicDump.java``, compiled with ``javac`` against the broker
  distribution's ``kafka-clients`` jar and run once for all the topics (one JVM start);
- ``read_with_librdkafka``: confluent-kafka's consumer;
- ``record_batches``: each record batch as the broker stores it (a Fetch request through aiokafka's client), with
  its compression codec and the first bytes of its records: for lz4, the LZ4 frame descriptor.

Both readers use ``read_committed`` and no consumer group (partitions assigned), read every partition from its
start to the end that isolation level shows, and return the records as ``SeenRecord`` (same order: by topic,
partition, offset).
"""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest

from caliper_pipeline.local.broker import KafkaDistribution

JAVA_SOURCE = Path(__file__).parents[2] / "fixtures" / "java" / "TopicDump.java"
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}  # a v2 batch's attributes & 7
CONTROL_BATCH = 0x20  # attributes bit of transaction markers
BATCH_HEADER_BYTES = 61  # a v2 record batch's header; its (compressed) records follow


@dataclass(frozen=True, order=True)
class SeenRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def java_tools_available() -> bool:
    return shutil.which("java") is not None and shutil.which("javac") is not None


def _unbase64(text: str) -> bytes | None:
    return None if text == "-" else base64.b64decode(text)


def read_with_java(distribution: KafkaDistribution, work_dir: Path, bootstrap: str, topics: Sequence[str],
                   timeout: float = 60.0) -> list[SeenRecord]:
    """Every committed record of ``topics`` as Kafka's Java consumer (the distribution's version) returns it."""
    libs = distribution.install()
    [clients_jar] = libs.glob("kafka-clients-*.jar")
    classes = work_dir / "java-classes"
    classes.mkdir(parents=True, exist_ok=True)
    subprocess.run(["javac", "-cp", str(clients_jar), "-d", str(classes), str(JAVA_SOURCE)], check=True,
                   capture_output=True, timeout=120)
    # the broker's log4j2 jars are on the class path: without a configuration file it logs errors only
    result = subprocess.run(["java", "-Xmx256m", "-cp", f"{classes}:{libs}/*", "TopicDump", bootstrap,
                             str(int(timeout)), *topics], capture_output=True, text=True, timeout=timeout + 60,
                            check=False)
    if result.returncode != 0:
        raise AssertionError(f"the Java consumer failed ({result.returncode}): {result.stderr[-3000:]}")
    seen = []
    for line in result.stdout.splitlines():
        topic, partition, offset, key, value, *headers = line.split("\t")
        pairs = tuple(((_unbase64(name) or b"").decode(), _unbase64(header))
                      for name, header in (field.split(":", 1) for field in headers))
        seen.append(SeenRecord(topic, int(partition), int(offset), _unbase64(key), _unbase64(value), pairs))
    return sorted(seen)


def read_with_librdkafka(bootstrap: str, topics: Sequence[str], timeout: float = 60.0) -> list[SeenRecord]:
    """Every committed record of ``topics`` as librdkafka (confluent-kafka) returns it; raises on any error the
    consumer reports (a batch it cannot decompress, for one)."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": "interop-reader", "isolation.level": "read_committed",
        "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    seen = []
    try:
        assigned = []
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            assigned += [confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in partitions]
        consumer.assign(assigned)
        unfinished = {(tp.topic, tp.partition) for tp in assigned}
        deadline = time.monotonic() + timeout
        while unfinished:
            if time.monotonic() > deadline:
                raise AssertionError(f"librdkafka did not reach the end of {sorted(unfinished)}")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                unfinished.discard((message.topic(), message.partition()))
                continue
            if error is not None:
                raise AssertionError(f"librdkafka: {error}")
            headers = tuple((name, value) for name, value in message.headers() or ())
            seen.append(SeenRecord(message.topic(), message.partition(), message.offset(), message.key(),
                                   message.value(), headers))
    finally:
        consumer.close()
    return sorted(seen)


@dataclass(frozen=True)
class StoredBatch:
    """One record batch as the broker stores it."""

    topic: str
    partition: int
    base_offset: int
    last_offset_delta: int
    codec: str
    control: bool
    records_start: bytes  # the first bytes of its (compressed) records


def _batches(topic: str, partition: int, data: bytes) -> list[StoredBatch]:
    found, position = [], 0
    while position + BATCH_HEADER_BYTES <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, position)
        end = position + 12 + length
        if end > len(data):  # the fetch cut the last batch short
            break
        attributes, last_offset_delta = struct.unpack_from(">hi", data, position + 21)
        found.append(StoredBatch(topic, partition, base_offset, last_offset_delta, CODECS[attributes & 7],
                                 bool(attributes & CONTROL_BATCH), data[position + BATCH_HEADER_BYTES:end][:16]))
        position = end
    return found


async def record_batches(bootstrap: str, topics: Sequence[str]) -> list[StoredBatch]:
    """Every record batch of ``topics``, fetched raw (read_uncommitted: aborted batches too) from the leaders."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    found: list[StoredBatch] = []
    try:
        metadata = await client.fetch_all_metadata()
        for topic in topics:
            for partition in sorted(metadata.partitions_for_topic(topic) or ()):
                leader = metadata.leader_for_partition(TopicPartition(topic, partition))
                offset = 0
                while True:
                    request = FetchRequest(100, 1, 8 << 20, 0, [(topic, [(partition, offset, 8 << 20)])])
                    response = await client.send(leader, request)
                    [(_, [(_, error_code, highwater, *part_data)])] = response.topics
                    assert error_code == 0, f"fetching {topic}/{partition} at {offset}: error {error_code}"
                    batches = _batches(topic, partition, part_data[-1])
                    found += batches
                    if not batches:
                        break
                    offset = batches[-1].base_offset + batches[-1].last_offset_delta + 1
                    if offset >= highwater:
                        break
    finally:
        await client.close()
    return found

