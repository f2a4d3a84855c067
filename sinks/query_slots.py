"""Slots and threads for one kind of query, so that no kind of caller can take what another kind needs.

The sink runs three kinds of work on ClickHouse from one event loop: the loader's inserts, analysts' statements
(``POST /sql``) and the read side's statements (the senders' ``/read/events``, ``/read/jobs``, the archive and
failed-events endpoints). Each blocking call runs in a thread. If they shared a pool (``asyncio.to_thread``'s
default executor, ``min(32, cores + 4)`` threads), a flood of reads would hold every thread and the loader's next
insert would wait behind them: freshness would be whatever the slowest reads allow.

So each kind has its own ``QuerySlots``: its own thread pool of ``max_concurrent`` threads, at most
``max_concurrent`` calls running at once, at most ``max_per_caller`` of them for one caller (a tenant, a
credential), and a caller waits ``queue_seconds`` at most for a slot before ``QueryCapacityError`` (HTTP 429 with
``Retry-After``). The loader has a pool of its own (``sinks.loader``) that nothing else uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sinks.errors import QueryCapacityError

T = TypeVar("T")


class OwnThreads:
    """A thread pool of ``count`` threads that only its owner uses, started on first use."""

    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in one of these threads."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.count, thread_name_prefix=f"sink-{self.name}")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(function, *args, **kwargs))

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class QuerySlots:
    """At most ``max_concurrent`` calls at once (``max_per_caller`` per caller; 0: no per-caller bound), each in
    one of this object's own threads."""

    def __init__(self, name: str, max_concurrent: int, *, max_per_caller: int = 0, queue_seconds: float = 2.0,
                 retry_after: int = 1) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_per_caller = max_per_caller
        self.queue_seconds = queue_seconds
        self.retry_after = retry_after
        self.running = 0
        self.by_caller: dict[str, int] = {}
        self._changed: asyncio.Condition | None = None
        self._threads = OwnThreads(name, max_concurrent)

    def _free_for(self, caller: str) -> bool:
        if self.running >= self.max_concurrent:
            return False
        return not self.max_per_caller or self.by_caller.get(caller, 0) < self.max_per_caller

    @contextlib.asynccontextmanager
    async def slot(self, caller: str = "") -> AsyncIterator[None]:
        """Hold one slot for ``caller`` while the block runs; ``QueryCapacityError`` when none frees in time."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        changed = self._changed
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(lambda: self._free_for(caller)),
                                       timeout=self.queue_seconds or 0.001)
            except TimeoutError:
                busy = (f"{self.by_caller.get(caller, 0)} of this caller's {self.name} are running"
                        if self.running < self.max_concurrent else f"{self.running} {self.name} are running")
                raise QueryCapacityError(f"{busy}; try again shortly", retry_after=self.retry_after) from None
            self.running += 1
            self.by_caller[caller] = self.by_caller.get(caller, 0) + 1
        try:
            yield
        finally:
            async with changed:
                self.running -= 1
                left = self.by_caller[caller] - 1
                if left:
                    self.by_caller[caller] = left
                else:
                    del self.by_caller[caller]
                changed.notify_all()

    async def in_thread(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` in one of this object's threads (the caller holds a slot)."""
        return await self._threads.run(function, *args, **kwargs)

    async def call(self, caller: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Wait for a slot for ``caller``, then run ``function`` in a thread of this object."""
        async with self.slot(caller):
            return await self.in_thread(function, *args, **kwargs)

    def close(self) -> None:
        self._threads.close()
