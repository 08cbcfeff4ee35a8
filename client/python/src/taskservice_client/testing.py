"""Helpers for testing your own workers against a real service.

    async with running_worker(worker):
        ...  # create tasks for its tools and check what they do
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio

from taskservice_client._worker import Worker

__all__ = ["running_worker"]


@contextlib.asynccontextmanager
async def running_worker(worker: Worker, *, stop_timeout: float = 20.0) -> AsyncIterator[Worker]:
    """Run `worker` for the body of the block; then shut it down, handing running tasks back at
    once, and wait (at most `stop_timeout` seconds) until it has stopped."""
    stopped = anyio.Event()

    async def run() -> None:
        try:
            await worker.run(handle_signals=False)
        finally:
            stopped.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            yield worker
        finally:
            worker.shutdown()
            worker.shutdown()  # the second call hands running tasks back at once
            with anyio.fail_after(stop_timeout):
                await stopped.wait()
