"""glibc's allocator, set for a long-running worker whose consumer runs in a thread of its own.

faust reads Kafka in a second thread (its consumer's event loop), and the raw records it fetches are large
allocations (fetch responses, record values, decompressed batches) made in one thread and freed in the other.
glibc's defaults can keep such memory mapped after Python freed it: each thread gets arenas of its own (up to 8
per core), and the mmap threshold is dynamic: once a large block allocated with ``mmap`` is freed, the threshold
rises to its size (and the trim threshold to twice that), so the next blocks of that size grow an arena's heap,
which is returned to the system only from its top. A fixed threshold maps a large block the free space cannot
hold on its own (returned at ``free``) and keeps the trim threshold at glibc's 128 KiB; fewer arenas bound what
freed small blocks can pin.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8


def configure_allocator(arena_max: int, mmap_threshold_bytes: int) -> bool:
    """Set glibc's arena count and a fixed mmap threshold (0 leaves a parameter as glibc has it); False when the C
    library is not glibc (nothing is changed). Call it before the process starts its threads."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.info("not glibc: the allocator keeps its own settings")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = True
    if arena_max:
        done = bool(mallopt(M_ARENA_MAX, arena_max)) and done
    if mmap_threshold_bytes:
        done = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold_bytes)) and done
    return done
