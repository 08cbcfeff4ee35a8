"""Filling a store with many tasks fast, for the scale benchmark's setup only.

The records are the service's own (`TaskRecord`), stored as the store stores them
(its row and index layout), but in bulk: one SQLite transaction of `executemany`,
one unchained Redis pipeline per batch. Nothing here is measured.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

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
    from taskservice.store.sqlite import INSERT_TASK, SqliteTaskStore, insert_row

    store = SqliteTaskStore(path)
    db = store._db
    db.execute("BEGIN")
    batch: list[tuple[object, ...]] = []
    chosen, out = pick(count, wanted, seed), []
    for index, task in enumerate(records(count, seed)):
        if index in chosen:
            out.append(sample(task))
        batch.append(insert_row(task))
        if len(batch) >= BATCH:
            db.executemany(INSERT_TASK, batch)
            batch.clear()
    if batch:
        db.executemany(INSERT_TASK, batch)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    asyncio.run(store.close())
    return out


class _Commands:
    """Stands in for the store's script arguments (`_Writes`): records the commands, as RESP bytes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.count = 0

    def command(self, *parts: object) -> None:
        encoded = [str(part).encode() if not isinstance(part, bytes) else part for part in parts]
        self.buffer += b"*%d\r\n" % len(encoded)
        for part in encoded:
            self.buffer += b"$%d\r\n%s\r\n" % (len(part), part)
        self.count += 1

    def add(self, command: str, key: str, *args: str | int | float) -> None:
        self.command(command, key, *args)


def _send(sock: socket.socket, commands: _Commands) -> None:
    """Send the recorded commands and read one reply per command; an error reply raises."""
    sock.sendall(commands.buffer)
    replies, pending = 0, b""
    while replies < commands.count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        pending += chunk
        *lines, pending = pending.split(b"\r\n")
        for line in lines:
            if line.startswith(b"-"):
                raise RuntimeError(f"Redis refused a command: {line.decode(errors='replace')}")
        replies += len(lines)  # every reply of SET, ZADD and SADD is one line


def fill_redis(url: str, count: int, wanted: int, seed: int = 1) -> list[list[str]]:
    """Store `count` tasks in a Redis store (an unused key prefix); return `wanted` samples of them.

    The keys and index entries are the store's own (its `_key` and `_reindex`), sent as raw
    RESP over one socket: redis-py's pipeline would take most of the setup time.
    """
    from taskservice.store.base import encode_json
    from taskservice.store.redis import EXPIRY_GRACE_MS, RedisTaskStore

    chosen, out = pick(count, wanted, seed), []
    parts = urlsplit(url)
    store = RedisTaskStore(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379)) as sock:
            select = _Commands()
            select.command("SELECT", int(parts.path.strip("/") or 0))
            _send(sock, select)
            commands = _Commands()
            for index, task in enumerate(records(count, seed)):
                if index in chosen:
                    out.append(sample(task))
                key = store._key("task", task.task_id)
                commands.add("SET", key, encode_json(task.to_json()), "PX", task.ttl_ms + EXPIRY_GRACE_MS)
                store._reindex(commands, None, task)  # type: ignore[arg-type]  # records what it would write
                if commands.count >= BATCH:
                    _send(sock, commands)
                    commands = _Commands()
            if commands.count:
                _send(sock, commands)
    finally:
        asyncio.run(store.close())
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
