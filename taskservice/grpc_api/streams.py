"""The service's own long-lived streams, so that shutdown can end them first.

grpc.aio's `server.stop(grace)` waits the whole grace while streams are open.
Each streaming handler registers here; `close_all` cancels them and each ends
with UNAVAILABLE ("reconnect"), which every client of ours retries: since a
stream is a view of stored state, nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc


class StreamRegistry:
    def __init__(self) -> None:
        self._handlers: set[asyncio.Task[object]] = set()
        self._closing = False

    def __len__(self) -> int:
        return len(self._handlers)

    @contextlib.asynccontextmanager
    async def open(self, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the service is shutting down; reconnect")
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Ended by close_all: finish the RPC with a status clients retry on.
            task.uncancel()
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details("the service is shutting down; reconnect")
        finally:
            self._handlers.discard(task)

    async def close_all(self) -> None:
        """End every open stream; return once their handlers finished."""
        self._closing = True
        handlers = tuple(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5)
