"""Filling a store with many tasks fast, for the scale benchmark's setup only.

The records are the service's own (`TaskRecord`), stored as the store stores them
(its row and index layout), but in bulk: one SQLite transaction of `executemany`,
one unchained Redis pipeline per batch. Nothing here is measured.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

from bench.clients import OWNER
from taskservice.domain.model import Dispatch, TaskRecord, TaskStatus
from taskservice.store.base import TaskCursor

BATCH = 20_000
TTL_MS = 86_400_000
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def records(count: int, seed: int = 1) -> Iterator[TaskRecord]:
    """`count` finished tasks of one owner, one per millisecond up to now, with random ids."""
    rng = random.Random(seed)
    start = time.time_ns() // 1_000_000 - count - 1000
    result = {"content": [{"type": "text", "text": "done"}], "isError": False}
    for i in range(count):
        created = start + i
        yield TaskRecord(
            task_id="".join(rng.choices(_ALPHABET, k=22)),
            owner=OWNER,
            status=TaskStatus.COMPLETED,
            created_at=created,
            last_updated_at=created + 1,
            ttl_ms=TTL_MS,
            poll_interval_ms=1_000,
            status_message="",
            tool_name="one_step",
            arguments={"n": i},
            result=result,
            dispatch=Dispatch.DONE,
        )


def pick(count: int, wanted: int, seed: int = 1) -> set[int]:
    """Indices of `wanted` tasks spread over the first count-100 (a page after each is full)."""
    usable = max(count - 100, 1)
    return set(random.Random(seed + 1).sample(range(usable), min(wanted, usable)))


def sample(task: TaskRecord) -> list[str]:
    """[task id, the page token of the page that starts after it]."""
    return [task.task_id, TaskCursor.after_task(task).encode()]


def fill_sqlite(path: Path, count: int, wanted: int, seed: int = 1) -> list[list[str]]:
    """Store `count` tasks in a new SQLite store; return `wanted` samples of them."""
    from taskservice.store.sqlite import SqliteTaskStore

    store = SqliteTaskStore(path)
    db = store._db
    insert = (
        "INSERT INTO tasks (owner, created_at, expires_at, dispatch, tool_name, worker_id,"
        " lease_expires_at, body, task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    db.execute("BEGIN")
    batch: list[tuple[object, ...]] = []
    chosen, out = pick(count, wanted, seed), []
    for index, task in enumerate(records(count, seed)):
        if index in chosen:
            out.append(sample(task))
        batch.append(store._row(task))
        if len(batch) >= BATCH:
            db.executemany(insert, batch)
            batch.clear()
    if batch:
        db.executemany(insert, batch)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    asyncio.run(store.close())
    return out


def fill_redis(url: str, count: int, wanted: int, seed: int = 1) -> list[list[str]]:
    """Store `count` tasks in a Redis store (an unused key prefix); return `wanted` samples of them."""
    from taskservice.store.redis import EXPIRY_GRACE_MS, RedisTaskStore, _dumps

    chosen, out = pick(count, wanted, seed), []

    async def fill() -> None:
        store = RedisTaskStore(url)
        try:
            pipe = store._client.pipeline(transaction=False)
            pending = 0
            for index, task in enumerate(records(count, seed)):
                if index in chosen:
                    out.append(sample(task))
                pipe.set(
                    store._key("task", task.task_id), _dumps(task.to_json()), px=task.ttl_ms + EXPIRY_GRACE_MS
                )
                store._reindex(pipe, None, task)
                pending += 1
                if pending >= BATCH:
                    await pipe.execute()
                    pending = 0
            if pending:
                await pipe.execute()
        finally:
            await store.close()

    asyncio.run(fill())
    return out


def clear_redis(url: str) -> None:
    """Delete every key under the URL's prefix."""
    from redis.asyncio import Redis

    from taskservice.store.redis import parse_url

    client_url, prefix = parse_url(url)

    async def clear() -> None:
        client = Redis.from_url(client_url)
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=prefix + "*", count=10_000):
                batch.append(key)
                if len(batch) >= BATCH:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()

    asyncio.run(clear())
