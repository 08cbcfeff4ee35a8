"""`sqlite:///path`: the embedded default, durable for one service process.

Statements run synchronously on the event loop: each is a few microseconds on
a local file, there is no await inside a transaction (so a read-modify-write
is atomic in this process without locks), and it avoids a thread hop per call.
WAL with synchronous=NORMAL: a commit survives the process being killed;
the WAL is fsynced at checkpoints.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from taskservice.domain.errors import StoreUnavailable, TaskNotFound
from taskservice.domain.model import Dispatch, TaskRecord, WorkerRecord
from taskservice.store.base import LocalChangeFeed, TaskChange, TaskCursor, task_key

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    dispatch TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks (owner, created_at, task_id);
CREATE INDEX IF NOT EXISTS tasks_by_expiry ON tasks (expires_at);
CREATE INDEX IF NOT EXISTS tasks_queued ON tasks (tool_name, created_at, task_id)
    WHERE dispatch = 'queued';
CREATE INDEX IF NOT EXISTS tasks_by_worker ON tasks (worker_id) WHERE worker_id != '';
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"""


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# The columns besides the body, which the indexes use; in the order of `_indexed`.
_INDEXED = ("owner", "created_at", "expires_at", "dispatch", "tool_name", "worker_id", "lease_expires_at")


def _indexed(task: TaskRecord) -> tuple[object, ...]:
    return (
        task.owner,
        task.created_at,
        task.expires_at,
        task.dispatch.value,
        task.tool_name,
        task.worker_id,
        task.lease_expires_at,
    )


def _update(
    task_id: str, current: TaskRecord, updated: TaskRecord, body: str
) -> tuple[str, tuple[object, ...]]:
    """The UPDATE of a task's row from `current` to `updated`: the body and the indexed columns that
    changed. Only those: SQLite rewrites the entries of every index on a column the SET names,
    changed or not (a new status message would touch four indexes)."""
    changed = [
        (column, new)
        for column, old, new in zip(_INDEXED, _indexed(current), _indexed(updated), strict=True)
        if old != new
    ]
    assignments = "".join(f"{column} = ?, " for column, _ in changed)
    sql = f"UPDATE tasks SET {assignments}body = ? WHERE task_id = ?"
    return sql, (*(new for _, new in changed), body, task_id)


# How many tasks' last-seen bodies (and the records they decode to) a store keeps, and the
# largest body it keeps one for.
DECODED_TASKS = 1024
DECODED_BODY_MAX = 32_768

R = TypeVar("R")


class _Decoded(Generic[R]):
    """Records by id with the stored body each came from, the most recently stored last.

    Every change is read back by each of its waiters (a task's: a worker's Elicit, the
    bridge's event and status streams; a worker's: its assignment stream, each Ack):
    records are immutable, so an unchanged body needs no second decoding.
    """

    def __init__(self, from_json: Callable[[Any], R], limit: int) -> None:
        self._from_json = from_json
        self._limit = limit
        self._kept: dict[str, tuple[str, R]] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def seen(self, key: str) -> tuple[str, R] | None:
        return self._kept.get(key)

    def decode(self, key: str, body: str) -> R:
        """The record `body` holds, decoded once per body."""
        seen = self._kept.get(key)
        if seen is not None and seen[0] == body:
            return seen[1]
        record = self._from_json(json.loads(body))
        self.remember(key, body, record)
        return record

    def remember(self, key: str, body: str, record: R) -> None:
        kept = self._kept
        kept.pop(key, None)
        if len(body) <= DECODED_BODY_MAX:
            kept[key] = (body, record)
            if len(kept) > self._limit:
                del kept[next(iter(kept))]  # the least recently stored

    def forget(self, key: str) -> None:
        self._kept.pop(key, None)


class SqliteTaskStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.changes = LocalChangeFeed()
        self._decoded = _Decoded(TaskRecord.from_json, DECODED_TASKS)
        self._workers = _Decoded(WorkerRecord.from_json, DECODED_TASKS)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"{self.path} was written by a newer taskservice (schema {version})"
                )
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {str(self.path)!r}: {exc}") from exc

    async def close(self) -> None:
        self._db.close()

    async def ping(self) -> None:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {str(self.path)!r}: {exc}") from exc

    # One statement each; a store that fails is StoreUnavailable.
    def _one(self, sql: str, params: tuple[object, ...]) -> Any:
        try:
            return self._db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc

    def _write(self, sql: str, params: tuple[object, ...] = ()) -> int:
        """Run `sql`; how many rows it changed."""
        try:
            return self._db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc

    def _row(self, task: TaskRecord) -> tuple[object, ...]:
        return (*_indexed(task), _dumps(task.to_json()), task.task_id)

    def _tasks(self, sql: str, params: Iterable[object] = (), *, keep: bool = True) -> list[TaskRecord]:
        """The tasks a query of `task_id, body` finds. `keep=False` for tasks read once (a list
        page): decoded without the cache, so that they do not push the busy tasks out of it."""
        rows = self._all(sql, tuple(params))
        if not keep:
            return [TaskRecord.from_json(json.loads(body)) for _, body in rows]
        return [self._decoded.decode(task_id, body) for task_id, body in rows]

    async def insert_task(self, task: TaskRecord) -> None:
        row = self._row(task)
        try:
            self._db.execute(
                "INSERT INTO tasks (owner, created_at, expires_at, dispatch, tool_name, worker_id,"
                " lease_expires_at, body, task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"task {task.task_id!r} exists") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc
        self._decoded.remember(task.task_id, str(row[-2]), task)
        self.changes.publish_now((task_key(task.task_id),))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._one("SELECT body FROM tasks WHERE task_id = ?", (task_id,))
        return None if row is None else self._decoded.decode(task_id, row[0])

    async def update_task(self, task_id: str, change: TaskChange) -> TaskRecord:
        seen = self._decoded.seen(task_id)
        if seen is not None:
            done = self._update_seen(task_id, change, *seen)
            if done is not None:
                return done
        db = self._db
        self._write("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT body FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is None:
                raise TaskNotFound(task_id)
            current = self._decoded.decode(task_id, row[0])
            updated = change(current)
            body = None
            if updated is not current:
                body = _dumps(updated.to_json())
                db.execute(*_update(task_id, current, updated, body))
            db.execute("COMMIT")
        except BaseException as exc:
            db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"SQLite store: {exc}") from exc
            raise
        if body is not None:
            self._decoded.remember(task_id, body, updated)
            self.changes.publish_now((task_key(task_id),))
        return updated

    def _update_seen(
        self, task_id: str, change: TaskChange, body: str, current: TaskRecord
    ) -> TaskRecord | None:
        """The change applied to the body this store last read or wrote, in one statement that
        succeeds only if that body is still the stored one (no BEGIN, SELECT and COMMIT around it).

        None when that cannot decide it: the body changed meanwhile, or the change made no
        write (it refused, or changed nothing); `update_task` then decides on the stored record.
        """
        try:
            updated = change(current)
        except Exception:
            return None
        if updated is current:
            return None
        new_body = _dumps(updated.to_json())
        sql, params = _update(task_id, current, updated, new_body)
        if self._write(sql + " AND body = ?", (*params, body)) != 1:
            return None
        self._decoded.remember(task_id, new_body, updated)
        self.changes.publish_now((task_key(task_id),))
        return updated

    async def list_tasks(self, owner: str, after: TaskCursor | None, limit: int) -> list[TaskRecord]:
        if after is None:
            return self._tasks(
                "SELECT task_id, body FROM tasks WHERE owner = ? ORDER BY created_at, task_id LIMIT ?",
                (owner, limit),
                keep=False,
            )
        return self._tasks(
            "SELECT task_id, body FROM tasks WHERE owner = ? AND (created_at, task_id) > (?, ?)"
            " ORDER BY created_at, task_id LIMIT ?",
            (owner, after.created_at, after.task_id, limit),
            keep=False,
        )

    async def delete_task(self, task_id: str) -> bool:
        deleted = self._write("DELETE FROM tasks WHERE task_id = ?", (task_id,))
        self._decoded.forget(task_id)
        if deleted:
            self.changes.publish_now((task_key(task_id),))
        return bool(deleted)

    async def delete_expired_tasks(self, now_ms: int) -> list[str]:
        rows = self._all("DELETE FROM tasks WHERE expires_at <= ? RETURNING task_id", (now_ms,))
        ids = [row[0] for row in rows]
        for task_id in ids:
            self._decoded.forget(task_id)
        if ids:
            self.changes.publish_now(task_key(task_id) for task_id in ids)
        return ids

    async def queued_tasks(self, tool_names: Iterable[str], limit: int) -> list[TaskRecord]:
        names = sorted(set(tool_names))
        if not names:
            return []
        marks = ", ".join("?" * len(names))
        return self._tasks(
            f"SELECT task_id, body FROM tasks WHERE dispatch = 'queued' AND tool_name IN ({marks})"
            " ORDER BY created_at, task_id LIMIT ?",
            (*names, limit),
        )

    async def tasks_of_worker(self, worker_id: str) -> list[TaskRecord]:
        return self._tasks(
            "SELECT task_id, body FROM tasks WHERE worker_id = ? AND dispatch IN (?, ?)",
            (worker_id, Dispatch.OFFERED.value, Dispatch.RUNNING.value),
        )

    async def stale_offers(self, now_ms: int) -> list[TaskRecord]:
        return self._tasks(
            "SELECT task_id, body FROM tasks"
            " WHERE worker_id != '' AND dispatch = ? AND lease_expires_at <= ?",
            (Dispatch.OFFERED.value, now_ms),
        )

    async def put_worker(self, worker: WorkerRecord) -> None:
        body = _dumps(worker.to_json())
        self._write(
            "INSERT INTO workers (worker_id, body) VALUES (?, ?)"
            " ON CONFLICT (worker_id) DO UPDATE SET body = excluded.body",
            (worker.worker_id, body),
        )
        self._workers.remember(worker.worker_id, body, worker)

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        row = self._one("SELECT body FROM workers WHERE worker_id = ?", (worker_id,))
        return None if row is None else self._workers.decode(worker_id, row[0])

    async def delete_worker(self, worker_id: str) -> None:
        self._write("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
        self._workers.forget(worker_id)

    async def list_workers(self) -> list[WorkerRecord]:
        rows = self._all("SELECT worker_id, body FROM workers ORDER BY worker_id")
        return [self._workers.decode(worker_id, body) for worker_id, body in rows]
