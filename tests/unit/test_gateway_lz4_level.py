"""The gateway's record batches are LZ4-compressed at ``LZ4_LEVEL`` (``gateway.publisher.patch_aiokafka_lz4_level``;
why in that module): aiokafka's batch builders still look ``lz4_encode`` up where the patch sets it, and what they
write still reads back."""

from __future__ import annotations

import importlib

import aiokafka.codec
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from gateway.publisher import _BATCH_BUILDER_MODULES, LZ4_LEVEL, patch_aiokafka_lz4_level

LZ4 = 3  # aiokafka's attribute code
RECORDS = [(f"k{i}".encode(), b'{"type": "ActivityEvent", "id": "urn:uuid:%d", "xp": [1, 2, 3]}' % i * 8)
           for i in range(300)]


def built_batch() -> bytes:
    batch = BatchBuilder(512 * 1024, LZ4, is_transactional=True)
    for key, value in RECORDS:
        batch.append(timestamp=1_764_519_183_052, key=key, value=value)
    batch._set_producer_state(1, 0, 0)
    return bytes(batch._build())


@pytest.fixture
def restore_lz4() -> object:
    modules = []
    for name in _BATCH_BUILDER_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    saved = [(module, module.lz4_encode) for module in modules]
    for module in modules:  # aiokafka's own function (a gateway started by an earlier test leaves its patch on)
        module.lz4_encode = aiokafka.codec.lz4_encode
    yield
    for module, encode in saved:
        module.lz4_encode = encode


def test_batches_are_compressed_at_the_gateways_level_and_read_back(restore_lz4: object) -> None:
    assert LZ4_LEVEL != 9
    aiokafka_default = built_batch()
    patch_aiokafka_lz4_level()
    patched = built_batch()
    assert patched != aiokafka_default  # the builder in use did call the patched function
    patch_aiokafka_lz4_level(9)
    assert built_batch() == aiokafka_default  # ... and that function decides the level
    patch_aiokafka_lz4_level()
    records = MemoryRecords(patched).next_batch()
    assert [(r.key, r.value) for r in records] == RECORDS
    assert aiokafka.codec.lz4_decode(aiokafka.codec.lz4_encode(b"x" * 100, level=LZ4_LEVEL)) == b"x" * 100
