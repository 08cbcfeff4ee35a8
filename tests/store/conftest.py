"""Fixtures of the store contract suite.

`store` is parametrized over every backend by URL, so a new backend (Redis)
joins the whole contract by adding one entry to BACKENDS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from taskservice.store import TaskStore, open_store

# Backend name -> the URL of a fresh, empty store of that backend (under tmp_path, or
# under a key prefix of its own on the session's redis-server: tests/conftest.py).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "memory": lambda request, tmp_path: "memory://",
    "sqlite": lambda request, tmp_path: f"sqlite:///{tmp_path / 'tasks.db'}",
    "redis": lambda request, tmp_path: str(request.getfixturevalue("redis_url")),
}


@pytest.fixture(params=sorted(BACKENDS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: str = request.param
    return BACKENDS[backend](request, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[TaskStore]:
    opened = open_store(store_url)
    await opened.ping()  # a store is ready to serve once it answers (Redis: its change feed listens)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "durable" / "tasks.db"
