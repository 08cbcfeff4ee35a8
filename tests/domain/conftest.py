"""Fixtures of the domain tests: a TaskManager over every store backend, on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskservice.domain.service import ServiceLimits, TaskManager
from taskservice.store import TaskStore, open_store

from . import support
from .support import FakeClock

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limits() -> ServiceLimits:
    return ServiceLimits(
        default_ttl_ms=60_000,
        max_ttl_ms=600_000,
        poll_interval_ms=500,
        lease_ttl_ms=30_000,
        default_page_size=3,
        max_page_size=10,
    )


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TaskStore]:
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))  # a key prefix of its own: tests/conftest.py
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'tasks.db'}"
    opened = open_store(url)
    await opened.ping()
    # Its waiters counted, for settle().
    feed = support.CountedFeed(opened.changes)
    monkeypatch.setattr(opened, "changes", feed)
    monkeypatch.setattr(support, "counted", feed)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def manager(store: TaskStore, limits: ServiceLimits, clock: FakeClock) -> TaskManager:
    return TaskManager(store, limits, clock=clock)
