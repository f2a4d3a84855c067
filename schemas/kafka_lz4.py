"""The LZ4 frames of the pipeline's record batches: laid out as Kafka's own clients write them.

Kafka compresses a v2 record batch with ``compression.type=lz4`` as one LZ4 frame (KIP-57). The Java producer
(``Lz4BlockOutputStream``) and librdkafka write frame descriptor ``60 40 82``: version 1, independent blocks, no
block checksum, no content checksum, no content size, 64 KiB blocks. aiokafka builds its frames with cramjam,
which has no switch for the block-checksum flag and always sets it (descriptor ``70 40 AD``, an xxHash-32 after
every block). That is valid LZ4, but no Kafka client writes it, and readers tested only against Kafka's frames got
it wrong: pierrec/lz4 before v4.1.22 checked the checksum against the decompressed block, so Go consumers built
on it refused every batch (sarama up to v1.43: "lz4: invalid block checksum") or skipped it without a word
(franz-go up to v1.18.0: joins its group and delivers nothing).

``kafka_lz4_encode`` writes the Java producer's layout with liblz4 (python-lz4), at a chosen level; any level
reads the same. ``use_kafka_lz4_frames`` puts it in aiokafka's batch builders, which look ``lz4_encode`` up in
their module globals at each batch (the Cython builder and the pure-Python one; a unit test checks they still
do). Every process of the pipeline that produces lz4 batches calls it before its producer starts.
"""

from __future__ import annotations

import functools
import importlib

import lz4.frame

# aiokafka compresses at level 9 (LZ4 HC, the Java producer's default); the gateway passes its own level
DEFAULT_LEVEL = 9
# the frame descriptor Kafka's Java producer and librdkafka write: FLG (version 1, independent blocks), BD (64 KiB)
KAFKA_LZ4_FLG = 0x60
KAFKA_LZ4_BD = 0x40
BATCH_BUILDER_MODULES = ("aiokafka.record.default_records", "aiokafka.record._crecords.default_records")


def kafka_lz4_encode(payload: bytes | bytearray | memoryview, level: int = DEFAULT_LEVEL) -> bytes:
    """One LZ4 frame of ``payload`` with the descriptor Kafka's own producers write (see the module doc)."""
    return lz4.frame.compress(payload, compression_level=level, block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                              block_linked=False, content_checksum=False, block_checksum=False, store_size=False)


def use_kafka_lz4_frames(level: int = DEFAULT_LEVEL) -> None:
    """Make aiokafka's record-batch builders of this process compress lz4 with ``kafka_lz4_encode`` at ``level``."""
    encode = functools.partial(kafka_lz4_encode, level=level)
    for name in BATCH_BUILDER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # no C extension here: the pure-Python builder only
            continue
        if hasattr(module, "lz4_encode"):
            module.lz4_encode = encode  # type: ignore[attr-defined]
