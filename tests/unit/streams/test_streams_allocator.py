"""The worker's allocator keeps large freed blocks out of its arenas (glibc's mmap threshold stays fixed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streams.settings import StreamsSettings

# a fresh interpreter: the allocator's parameters are process-wide. What the worker's consumer thread does with its
# fetches: a large block freed, then blocks of that size again; mallinfo2 counts the blocks that are mapped on their
# own (hblks), which go back to the system when freed, unlike blocks carved from a heap that grew for them.
PROBE = """
import ctypes, json, sys
import faust
from pydantic import SecretStr
from schemas.kafka import KafkaSettings
from schemas.privacy import PrivacySettings
from streams import worker

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def fetches():
    first = bytearray(16 << 20)
    del first
    blocks = [bytearray(16 << 20) for _ in range(8)]
    print(json.dumps({"mapped_blocks": libc.mallinfo2().hblks}))

class Worker:  # the worker's process as run_worker sets it up, without running faust
    def __init__(self, app, loglevel):
        pass
    def execute_from_commandline(self):
        fetches()

if sys.argv[1] == "worker":
    worker.faust.Worker = Worker
    worker.run_worker(worker.StreamsSettings(), KafkaSettings(bootstrap_servers="127.0.0.1:1"),
                      PrivacySettings(email_hash_key=SecretStr("k"), student_key=SecretStr("s")))
else:
    fetches()
"""


def mapped_blocks(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                          check=True)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["mapped_blocks"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_worker_keeps_large_blocks_mapped_on_their_own_after_one_was_freed() -> None:
    assert StreamsSettings().malloc_mmap_threshold_bytes == 128 << 10
    assert mapped_blocks("worker") >= 8
    # glibc's default raises its threshold to the freed block's size: the next ones come from the arena
    assert mapped_blocks("glibc defaults") < 8
