"""``up`` keeps its processes running the way an orchestrator's restart policy would.

A process that exits while the stack runs (crash, OOM kill, a stray SIGKILL) is reported with the end of its log
and started again after a backoff: 1 s, doubling up to 30 s for a process that keeps failing, back to 1 s once it
ran for a minute. The current pid of every process is kept in ``<home>/processes.json`` for operators and tests.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Supervised(Protocol):
    name: str

    def start(self) -> None: ...

    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...

    def tail(self, lines: int = 30) -> str: ...


@dataclass
class RestartPolicy:
    backoff_min_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    healthy_after_seconds: float = 60.0  # a process that ran this long starts over at the minimum backoff

    def backoff(self, failures: int) -> float:
        return min(self.backoff_max_seconds, self.backoff_min_seconds * 2 ** max(0, failures - 1))


@dataclass
class _State:
    started: float
    failures: int = 0
    restart_at: float | None = None  # set while the process is down and waiting for its restart
    restarts: int = 0


class Supervisor:
    """Watches processes that are already started; ``check`` restarts the ones that died."""

    def __init__(self, processes: list[Supervised], *, pids_file: Path | None = None,
                 policy: RestartPolicy | None = None, report: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processes = processes
        self.pids_file = pids_file
        self.policy = policy or RestartPolicy()
        self.report = report or (lambda line: print(line, flush=True))
        self.clock = clock
        self._states = {p.name: _State(started=clock()) for p in processes}
        self.write_pids()

    def restarts(self, name: str) -> int:
        return self._states[name].restarts

    def check(self) -> None:
        now = self.clock()
        for process in self.processes:
            state = self._states[process.name]
            if state.restart_at is None:
                if process.alive():
                    continue
                ran = now - state.started
                state.failures = 1 if ran >= self.policy.healthy_after_seconds else state.failures + 1
                delay = self.policy.backoff(state.failures)
                state.restart_at = now + delay
                tail = process.tail(15)
                self.report(f"{process.name} (pid {process.pid}) exited with code {process.returncode} after "
                            f"{ran:.1f}s; restarting it in {delay:.0f}s (restart #{state.restarts + 1})"
                            + (f". The end of its log:\n{tail}" if tail else ""))
            elif now >= state.restart_at:
                state.restart_at = None
                state.restarts += 1
                state.started = now
                try:
                    process.start()
                except Exception as error:  # reported, and retried after the next backoff
                    self.report(f"{process.name} could not be restarted: {error}")
                    continue
                self.report(f"{process.name} restarted (pid {process.pid})")
                self.write_pids()

    def run(self, stop: threading.Event, poll_seconds: float = 0.5) -> None:
        """Check every ``poll_seconds`` until ``stop`` is set."""
        while not stop.wait(poll_seconds):
            self.check()

    def write_pids(self) -> None:
        if self.pids_file is None:
            return
        pids = {"up": os.getpid(), **{p.name: p.pid for p in self.processes if p.pid is not None}}
        temporary = self.pids_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(pids))
        temporary.replace(self.pids_file)

    def remove_pids(self) -> None:
        if self.pids_file is not None:
            self.pids_file.unlink(missing_ok=True)
