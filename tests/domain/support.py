"""Helpers of the domain tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")

# Something that must happen happens at once; this bound only stops a broken test hanging.
TIMEOUT = 2.0


class FakeClock:
    """Milliseconds since the epoch that move only when a test says so."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


async def next_of(stream: AsyncIterator[T]) -> T:
    """The next item of a stream, failing the test instead of hanging."""
    return await asyncio.wait_for(anext(stream), TIMEOUT)


async def settle() -> None:
    """Let every runnable task run until it blocks (the stores never suspend mid-operation)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def drain(stream: AsyncIterator[T]) -> list[T]:
    """Every remaining item of a stream that must end by itself."""

    async def collect() -> list[T]:
        return [item async for item in stream]

    return await asyncio.wait_for(collect(), TIMEOUT)


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a stream (an async generator behind an AsyncIterator type) when the block ends."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
