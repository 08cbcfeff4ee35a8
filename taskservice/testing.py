"""Run a real service in-process, for tests of the service and of workers.

async with running_service() as svc:
    worker = Worker(svc.target)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from taskservice.domain.service import ServiceLimits, TaskManager
from taskservice.grpc_api.auth import ServerTLS, Tokens
from taskservice.grpc_api.server import TaskServiceServer
from taskservice.store import open_store


@dataclasses.dataclass
class RunningService:
    manager: TaskManager
    server: TaskServiceServer
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 1.0) -> None:
        await self.server.stop(grace)
        await self.manager.store.close()


@contextlib.asynccontextmanager
async def running_service(
    store: str = "memory://",
    *,
    limits: ServiceLimits | None = None,
    port: int = 0,
    tokens: Tokens | None = None,
    tls: ServerTLS | None = None,
) -> AsyncIterator[RunningService]:
    """A service on 127.0.0.1 (a free port unless `port` is given), stopped on exit; `tokens`
    and `tls` as `taskservice serve` takes them (see taskservice.grpc_api.auth)."""
    manager = TaskManager(open_store(store), limits)
    server = TaskServiceServer(manager, f"127.0.0.1:{port}", tokens=tokens, tls=tls)
    running = RunningService(manager, server, await server.start())
    try:
        yield running
    finally:
        await running.stop()
