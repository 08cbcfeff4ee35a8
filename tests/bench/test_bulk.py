"""The scale benchmark's bulk fills write what the stores themselves read: the records, the
list order and the expiry index (a fill that drifted from a store's layout would measure nothing)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bench import bulk
from bench.clients import OWNER
from taskservice.domain.model import TaskRecord
from taskservice.store import open_store

COUNT = 150


def undated(task: TaskRecord) -> TaskRecord:
    """Each `records` call dates its tasks from the clock: compare everything else."""
    return dataclasses.replace(task, created_at=0, last_updated_at=0)


async def read_back(url: str) -> None:
    expected = list(bulk.records(COUNT))
    store = open_store(url)
    try:
        listed = await store.list_tasks(OWNER, None, COUNT + 1)
        assert [t.task_id for t in listed] == [t.task_id for t in expected]
        assert [undated(t) for t in listed] == [undated(t) for t in expected]
        got = await store.get_task(expected[7].task_id)
        assert got is not None
        assert undated(got) == undated(expected[7])
        far = max(t.expires_at for t in listed) + 1
        assert sorted(await store.delete_expired_tasks(far)) == sorted(t.task_id for t in expected)
        assert await store.list_tasks(OWNER, None, 10) == []
    finally:
        await store.close()


def test_the_sqlite_fill_is_the_stores_layout(tmp_path: Path) -> None:
    path = tmp_path / "filled.db"
    samples = bulk.fill_sqlite(path, COUNT, 5)
    assert len(samples) == 5
    asyncio.run(read_back(f"sqlite:///{path}"))


def test_the_redis_fill_is_the_stores_layout(redis_url: str) -> None:
    samples = bulk.fill_redis(redis_url, COUNT, 5)
    assert len(samples) == 5
    asyncio.run(read_back(redis_url))
