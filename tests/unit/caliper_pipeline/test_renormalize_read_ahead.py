"""``renormalize``'s read-ahead: items arrive in order, the reader's error is raised to the consumer after the items
before it, and a consumer that stops early stops the reader (its ``finally`` runs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from caliper_pipeline.ops.renormalize import read_ahead


async def test_items_arrive_in_order_then_the_readers_error() -> None:
    async def items() -> AsyncGenerator[int, None]:
        for item in range(5):
            yield item
        raise ConnectionError("the archive stream broke")

    seen = []
    with pytest.raises(ConnectionError, match="stream broke"):
        async for item in read_ahead(items(), 2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


async def test_stopping_early_stops_the_reader() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[int, None]:
        try:
            item = 0
            while True:
                yield item
                item += 1
        finally:
            closed.set()

    ahead = read_ahead(endless(), 2)
    async for item in ahead:
        if item == 3:
            break
    await ahead.aclose()
    assert closed.is_set()
