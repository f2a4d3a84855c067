"""The pipeline's lz4 record batches are LZ4 frames laid out as Kafka's Java producer and librdkafka write them
(``schemas.kafka_lz4``: no block checksum, which Go readers on pierrec/lz4 < v4.1.22 could not read), at the level
each producer asks for; aiokafka's batch builders still look ``lz4_encode`` up where ``use_kafka_lz4_frames`` sets
it, and what they write still reads back."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator

import aiokafka.codec
import lz4.frame
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from gateway.publisher import LZ4_LEVEL
from schemas.kafka_lz4 import BATCH_BUILDER_MODULES, kafka_lz4_encode, use_kafka_lz4_frames

LZ4 = 3  # aiokafka's attribute code
BATCH_HEADER_BYTES = 61  # a v2 record batch's header; the (compressed) records follow it
# what the Java producer (Lz4BlockOutputStream) writes: magic, FLG 0x60, BD 0x40 (64 KiB), header checksum 0x82
JAVA_LZ4_FRAME_START = bytes.fromhex("04224d18604082")
RECORDS = [(f"k{i}".encode(), b'{"type": "ActivityEvent", "id": "urn:uuid:%d", "xp": [1, 2, 3]}' % i * 8)
           for i in range(300)]


def built_batch(records: list[tuple[bytes, bytes]] = RECORDS) -> bytes:
    batch = BatchBuilder(1024 * 1024, LZ4, is_transactional=True)
    for key, value in records:
        batch.append(timestamp=1_764_519_183_052, key=key, value=value)
    batch._set_producer_state(1, 0, 0)
    return bytes(batch._build())


@pytest.fixture
def aiokafka_lz4() -> Iterator[None]:
    """aiokafka's own lz4 encoder in its batch builders during the test (a gateway started by an earlier test
    leaves ``use_kafka_lz4_frames`` on), put back as it was after."""
    modules = []
    for name in BATCH_BUILDER_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    saved = [(module, module.lz4_encode) for module in modules]
    for module in modules:
        module.lz4_encode = aiokafka.codec.lz4_encode
    yield
    for module, encode in saved:
        module.lz4_encode = encode


def test_batches_carry_the_java_producers_frame_descriptor(aiokafka_lz4: None) -> None:
    aiokafka_frames = built_batch()
    assert aiokafka_frames[BATCH_HEADER_BYTES + 4] & 0x10  # aiokafka's (cramjam's) frames: block checksums on
    use_kafka_lz4_frames(LZ4_LEVEL)
    batch = built_batch()
    assert batch[BATCH_HEADER_BYTES:BATCH_HEADER_BYTES + 7] == JAVA_LZ4_FRAME_START
    assert [(r.key, r.value) for r in MemoryRecords(batch).next_batch()] == RECORDS


def test_the_level_is_the_producers_and_the_builder_still_calls_the_encoder_it_is_given(aiokafka_lz4: None) -> None:
    assert LZ4_LEVEL != 9
    use_kafka_lz4_frames(9)
    level_9 = built_batch()
    use_kafka_lz4_frames(LZ4_LEVEL)
    fast = built_batch()
    assert fast != level_9  # the builder in use called the function set, and its level decides
    for batch in (level_9, fast):
        assert [(r.key, r.value) for r in MemoryRecords(batch).next_batch()] == RECORDS


@pytest.mark.parametrize("size", [0, 100, 64 * 1024, 300 * 1024])
def test_frames_of_any_size_are_independent_64k_blocks_without_checksums_that_every_decoder_reads(size: int) -> None:
    payload = (os.urandom(size // 4) + b"caliper " * (size // 8))[:size]  # incompressible and compressible blocks
    frame = kafka_lz4_encode(payload, level=LZ4_LEVEL)
    assert frame.startswith(JAVA_LZ4_FRAME_START)
    info = lz4.frame.get_frame_info(frame)
    assert (info["block_linked"], info["block_checksum"], info["content_checksum"], info["block_size"]) == (
        False, False, False, 64 * 1024)
    assert lz4.frame.decompress(frame) == payload
    assert aiokafka.codec.lz4_decode(frame) == payload  # aiokafka's consumers (the streams worker, the sink)
