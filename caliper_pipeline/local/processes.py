"""Child processes of the local stack: started in their own session, stopped with SIGTERM then SIGKILL, and never
outliving the process that started them.

Every process the project starts (``ChildProcess``, the local Kafka broker, ``wrk``) is started with
``die_with_parent()``: Linux's ``PR_SET_PDEATHSIG`` makes the kernel SIGKILL it when its parent dies, whatever
ended the parent (SIGKILL included, which no handler can see). The children run this same code, so what they
start dies with them in turn. The death signal is tied to the *thread* that started the child: start children
from a thread that lives as long as they should (``up`` and ``LocalPipeline`` start them from the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved here, in the parent: the child between fork and exec must not load libraries


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``signum`` when this process dies. If this process died already (between
    the fork and the ``prctl``), the child kills itself at once instead of running as an orphan."""
    parent = os.getpid()
    prctl = _PRCTL

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class ChildProcess:
    def __init__(self, name: str, arguments: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.arguments = arguments
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.stop_seconds: float | None = None
        self.started_at: float | None = None  # time.monotonic() of the last start

    @classmethod
    def pipeline_command(cls, name: str, subcommand: list[str], env: dict[str, str], log_dir: Path) -> ChildProcess:
        return cls(name, [sys.executable, "-m", "caliper_pipeline.cli", *subcommand], env, log_dir)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(self.arguments, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=die_with_parent())
        self.started_at = time.monotonic()
        self.stop_seconds = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            started = time.monotonic()
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self.stop_seconds = time.monotonic() - started
        return process.returncode

    def kill(self) -> None:
        """SIGKILL (fault injection)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
