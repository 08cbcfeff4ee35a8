"""Helpers of the domain tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from taskservice.store.base import ChangeFeed, Subscription

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


async def _spin() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class CountedFeed:
    """A store's change feed that counts its subscriptions, and those of them waiting for a change.

    When every subscription waits, every waiter (an assignment stream, wait_for_answer, ...) has
    read the stored state and found nothing to do yet: then a test can check that it stays quiet.
    """

    def __init__(self, inner: ChangeFeed) -> None:
        self.inner = inner
        self.open = 0
        self.waiting = 0
        self.counted = asyncio.Event()  # set at every change of the counts

    def count(self, *, subscribed: int = 0, waiting: int = 0) -> None:
        self.open += subscribed
        self.waiting += waiting
        self.counted.set()

    def subscribe(self, keys: Iterable[str], *, first: bool = False) -> Subscription:
        return _CountedSubscription(self, self.inner.subscribe(keys, first=first))

    async def publish(self, keys: Iterable[str]) -> None:
        await self.inner.publish(keys)

    def __getattr__(self, name: str) -> Any:  # what else the store itself calls on its feed
        return getattr(self.inner, name)


class _CountedSubscription:
    def __init__(self, feed: CountedFeed, inner: Subscription) -> None:
        self._feed = feed
        self._inner = inner

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (Subscription's own)
        self._feed.count(waiting=1)
        try:
            return await self._inner.wait(timeout)
        finally:
            self._feed.count(waiting=-1)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> Self:
        self._inner.__enter__()
        self._feed.count(subscribed=1)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._feed.count(subscribed=-1)
        self._inner.__exit__(exc_type, exc, tb)


# The feed of the store of the running test (set by the `store` fixture), for settle().
counted: CountedFeed | None = None
_SETTLED = "settled"


async def settle() -> None:
    """Let every runnable task run until it blocks, and every waiter until it waits for a change.

    The memory and SQLite stores never suspend mid-operation and publish at once: running the
    ready tasks is enough. Redis answers later, and delivers each change through pub/sub: so a
    change published after the test's last one comes back after it (pub/sub keeps the order),
    and then the waiters it woke re-read the store until each waits again (bounded).
    """
    await _spin()
    feed = counted
    if feed is None:
        return
    with feed.inner.subscribe([_SETTLED]) as settled:
        await feed.inner.publish([_SETTLED])
        await settled.wait(TIMEOUT)
    await _spin()

    async def all_waiting() -> None:
        while feed.waiting < feed.open:
            feed.counted.clear()
            await feed.counted.wait()

    with contextlib.suppress(TimeoutError):  # a waiter held elsewhere: the test's check decides
        await asyncio.wait_for(all_waiting(), TIMEOUT)


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
