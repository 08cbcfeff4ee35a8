"""Fixtures of the gRPC-level service tests: a real server on 127.0.0.1 and clients of it.

`svc` runs over every store backend (memory and SQLite), so each behaviour is
proven end to end on both; a test that needs other limits overrides `limits`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskservice.domain.service import ServiceLimits
from taskservice.testing import RunningService, running_service

from .support import Clients

BACKENDS = ["memory", "sqlite"]

# Small enough that an oversized payload is cheap to build.
MAX_PAYLOAD_BYTES = 4096


@pytest.fixture
def limits() -> ServiceLimits:
    return ServiceLimits(max_payload_bytes=MAX_PAYLOAD_BYTES)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'tasks.db'}"


@pytest.fixture
async def svc(store_url: str, limits: ServiceLimits) -> AsyncIterator[RunningService]:
    async with running_service(store_url, limits=limits) as running:
        yield running


@pytest.fixture
async def clients(svc: RunningService) -> AsyncIterator[Clients]:
    connected = Clients(svc.target)
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
async def worker_id(clients: Clients) -> str:
    """A registered worker serving the `echo` tool (CreateTask needs one)."""
    return await clients.register()


@pytest.fixture
async def task_id(clients: Clients, worker_id: str) -> str:
    """A fresh task of OWNER, status working."""
    return (await clients.create(arguments={"text": "hello"})).task_id
