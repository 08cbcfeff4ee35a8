"""Fixtures of the scale-out tests: service replicas sharing one Redis.

The Redis fixtures (`redis_url`, `redis_factory`) are in tests/conftest.py. Here the change feed's
timer re-check is pushed beyond every wait bound, so a test only passes when each wake travelled
through Redis pub/sub (or a feed reconnect), never because a waiter polled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from taskservice.domain.service import ServiceLimits
from taskservice.store import redis as redis_store
from taskservice.testing import RunningService, running_service

from .support import WAIT


@pytest.fixture(autouse=True)
def no_timer_wakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_store, "RECHECK_INTERVAL", 10 * WAIT)


# Workers heartbeat every lease/3 = 40 s, beyond every wait bound: a worker that learns of a
# cancellation within the bound learnt it from its WatchTask stream.
LIMITS = ServiceLimits(lease_ttl_ms=120_000)


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[RunningService, RunningService]]:
    """Two service replicas, A and B, on one Redis."""
    async with running_service(redis_url, limits=LIMITS) as a, running_service(redis_url, limits=LIMITS) as b:
        yield a, b
