"""`sqlite:///path`: the embedded default, durable for one service process.

The store owns its file: from open to close it holds SQLite's exclusive lock
(`locking_mode=EXCLUSIVE`), so no other process or connection reads or writes
the file meanwhile, and a second service started on the same file fails at
start instead of splitting the tasks with the first one (its waiters would never
hear of the first one's changes). Nothing changes a row behind the store's
back, so the records it last read or wrote are the stored ones: a read of a
task it knows is a dictionary lookup, and a change is one UPDATE of the record
it knows, with no BEGIN, SELECT or COMMIT around it.

Statements run synchronously on the event loop: each is a few microseconds on
a local file, there is no await between reading a record and writing its change
(so a read-modify-write is atomic in this process without locks), and it avoids
a thread hop per call. WAL with synchronous=NORMAL: a commit survives the process
being killed; the WAL is fsynced at checkpoints.

The usual change, a new body with the same indexed columns (a status message, a
request, a result), is not an UPDATE at once: it is one line appended to the
file's updates log (`<file>-updates`, one `write`, which a killed process keeps as
it keeps a commit), and the store applies the logged changes to the file in one
transaction before any other statement, after `PENDING_CHANGES` of them or
`PENDING_BYTES` of log, and at close. Opening the file applies what a killed
process left in its log. Under gRPC load an UPDATE and its commit cost the service
several times what they cost alone (`bench/`, README "Not met"); a line of log and
a batch of UPDATEs cost a fraction of that.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from taskservice.domain.errors import StoreUnavailable, TaskNotFound
from taskservice.domain.model import TaskRecord, WorkerRecord
from taskservice.store.base import (
    KNOWN_BODY_MAX,
    KNOWN_TASKS,
    KnownRecords,
    LocalChangeFeed,
    R,
    TaskChange,
    TaskCursor,
    encode_json,
    task_key,
)

SCHEMA_VERSION = 1

# How long opening waits for a file another process holds, before it says so.
OPEN_TIMEOUT = 2.0

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
-- Only the tasks a worker holds: a finished task keeps its worker_id, and an index of them
-- all made every read of a worker's tasks (three per task) read its whole history.
DROP INDEX IF EXISTS tasks_by_worker;
CREATE INDEX IF NOT EXISTS tasks_held ON tasks (worker_id) WHERE dispatch IN ('offered', 'running');
CREATE INDEX IF NOT EXISTS tasks_offered ON tasks (lease_expires_at) WHERE dispatch = 'offered';
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"""


# The columns besides the body, which the indexes use; in the order of `_indexed`.
_INDEXED = ("owner", "created_at", "expires_at", "dispatch", "tool_name", "worker_id", "lease_expires_at")


def _indexed(task: TaskRecord) -> tuple[object, ...]:
    # dispatch is a StrEnum, which SQLite binds as its text; expires_at is the property's sum.
    return (
        task.owner,
        task.created_at,
        task.created_at + task.ttl_ms,
        task.dispatch,
        task.tool_name,
        task.worker_id,
        task.lease_expires_at,
    )


INSERT_TASK = (
    "INSERT INTO tasks (owner, created_at, expires_at, dispatch, tool_name, worker_id,"
    " lease_expires_at, body, task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_row(task: TaskRecord) -> tuple[object, ...]:
    """The parameters of INSERT_TASK for `task`."""
    return (*_indexed(task), encode_json(task.to_json()), task.task_id)


# A change of the body alone: the usual one, which the updates log holds until it is applied.
BODY_UPDATE = "UPDATE tasks SET body = ? WHERE task_id = ?"
_UPDATES: dict[tuple[int, ...], str] = {(): BODY_UPDATE}  # the UPDATE for each set of changed columns


def _update(current: TaskRecord, updated: TaskRecord, body: str) -> tuple[str, tuple[object, ...]]:
    """The UPDATE of a task's row from `current` to `updated`: the body and the indexed columns that
    changed. Only those: SQLite rewrites the entries of every index on a column the SET names,
    changed or not (a new status message would touch four indexes)."""
    old, new = _indexed(current), _indexed(updated)
    if old == new:  # the usual change: a status message, a request, a result
        changed: tuple[int, ...] = ()
    else:
        changed = tuple(index for index in range(len(_INDEXED)) if old[index] != new[index])
    sql = _UPDATES.get(changed)
    if sql is None:
        assignments = "".join(f"{_INDEXED[index]} = ?, " for index in changed)
        sql = _UPDATES[changed] = f"UPDATE tasks SET {assignments}body = ? WHERE task_id = ?"
    return sql, (*(new[index] for index in changed), body, updated.task_id)


# The updates log beside the file, and how much of it the store holds before applying it.
UPDATES_SUFFIX = "-updates"
PENDING_CHANGES = 256
PENDING_BYTES = 1 << 20


class _Known(KnownRecords[R]):
    """The stored records by id, of the ones most recently written or read from the file.

    Every change is read back by each of its waiters (a task's: a worker's Elicit, the
    bridge's event and status streams; a worker's: its assignment stream, each Ack), and
    the store is the file's only writer: a record it knows needs no query and no decoding.
    """

    def __init__(self, from_json: Callable[[Any], R], limit: int) -> None:
        super().__init__(limit)
        self._from_json = from_json

    def decode(self, key: str, body: str, *, keep: bool = True) -> R:
        """The record stored as `body`: the one kept, or decoded (and kept, unless `keep=False`)."""
        known = self.get(key)
        if known is not None:
            return known
        record = self._from_json(json.loads(body))
        if keep:
            self.remember(key, body, record)
        return record


class SqliteTaskStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.changes = LocalChangeFeed()
        self.updates_path = Path(f"{self.path}{UPDATES_SUFFIX}")
        self._known = _Known(TaskRecord.from_json, KNOWN_TASKS)
        self._workers = _Known(WorkerRecord.from_json, KNOWN_TASKS)
        # The changes in the updates log, not yet in the file: the body and record by task id.
        self._pending: dict[str, tuple[str, TaskRecord]] = {}
        self._log_size = 0  # bytes in the updates log
        self._log = -1  # its descriptor, once open
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=OPEN_TIMEOUT
            )
            # Before the first access: held from the first write below until close, and WAL
            # then keeps its index in this process (no shared-memory file, no lock calls per
            # transaction).
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"{self.path} was written by a newer taskservice (schema {version})"
                )
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # a write: takes the lock now
            # Only now, holding the file: no other store reads or writes its log. A database in
            # memory has nothing to keep across a kill, and no log.
            if str(self.path) != ":memory:":
                self._log = os.open(self.updates_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                _replay(db, self._log, self.updates_path)
        except (sqlite3.Error, OSError, StoreUnavailable) as exc:
            if self._log >= 0:
                os.close(self._log)
            if db is not None:
                db.close()
            if isinstance(exc, StoreUnavailable):
                raise
            why = str(exc)
            if isinstance(exc, sqlite3.OperationalError) and "locked" in why:
                why = "another process has it open (is a taskservice already running on it?)"
            raise StoreUnavailable(f"cannot open SQLite store {str(self.path)!r}: {why}") from exc
        assert db is not None
        self._db = db

    async def close(self) -> None:
        """Apply the logged changes and close. If they cannot be applied, the log keeps them for
        the next open (StoreUnavailable says so); a closed store's calls are StoreUnavailable."""
        try:
            if self._log >= 0:
                self._apply_pending()
                self.updates_path.unlink(missing_ok=True)
        finally:
            self._known.clear()
            self._workers.clear()
            self._pending.clear()
            if self._log >= 0:
                os.close(self._log)
                self._log = -1
            self._db.close()

    def _apply_pending(self) -> None:
        """Write the logged changes to the file in one transaction, then empty the log. If the
        transaction fails, nothing is lost: the changes stay logged and pending."""
        if not self._pending:
            return
        rows = [(body, task_id) for task_id, (body, _) in self._pending.items()]
        try:
            changed = _apply(self._db, rows)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc
        if changed != len(rows):  # a row gone, which only this store does: keep no record unstored
            for task_id in self._pending:
                self._known.forget(task_id)
        self._pending.clear()
        # Applied twice is the same: a process killed before this leaves a log the next applies.
        self._truncate_log(0)

    def _truncate_log(self, size: int) -> None:
        try:
            os.ftruncate(self._log, size)
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store: updates log {str(self.updates_path)!r}: {exc}") from exc
        self._log_size = size

    def _log_change(self, task_id: str, body: str, updated: TaskRecord) -> bool:
        """Append the change of `task_id`'s body to the updates log; False if it must be an UPDATE
        now instead (a body too large to keep, an id a line cannot hold, a write that failed)."""
        if len(body) > KNOWN_BODY_MAX or "\t" in task_id or "\n" in task_id or self._log < 0:
            return False
        try:
            line = f"{task_id}\t{body}\n".encode()
        except UnicodeEncodeError:  # a lone surrogate: the UPDATE refuses it as it always did
            return False
        try:
            written = os.write(self._log, line)
        except OSError:
            written = -1
        if written != len(line):  # disk full, say: no part of the line stays
            self._truncate_log(self._log_size)
            return False
        self._log_size += written
        self._pending[task_id] = (body, updated)
        if len(self._pending) >= PENDING_CHANGES or self._log_size >= PENDING_BYTES:
            # The change is stored (logged) whatever this does: if the file refuses the batch,
            # the next statement tries again and says so.
            with contextlib.suppress(StoreUnavailable):
                self._apply_pending()
        return True

    async def ping(self) -> None:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {str(self.path)!r}: {exc}") from exc

    # One statement each; a store that fails is StoreUnavailable.
    # A point read of a row that has no logged change (`_task` looks there first), as the file has
    # it; `_all` and `_write` apply the logged changes first, and read or write the file as it stands.
    def _one(self, sql: str, params: tuple[object, ...]) -> Any:
        try:
            return self._db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        self._apply_pending()
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc

    def _write(self, sql: str, params: tuple[object, ...] = ()) -> int:
        """Run `sql`; how many rows it changed."""
        self._apply_pending()
        try:
            return self._db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc

    def _tasks(self, sql: str, params: Iterable[object] = (), *, keep: bool = True) -> list[TaskRecord]:
        """The tasks a query of `task_id, body` finds. `keep=False` for tasks read once (a list
        page): the ones not known are not kept, so that they do not push the busy tasks out."""
        rows = self._all(sql, tuple(params))
        return [self._known.decode(task_id, body, keep=keep) for task_id, body in rows]

    def _task(self, task_id: str) -> TaskRecord | None:
        pending = self._pending.get(task_id)
        if pending is not None:  # the change logged, whether the record is still known or not
            return pending[1]
        known = self._known.get(task_id)
        if known is not None:
            return known
        row = self._one("SELECT body FROM tasks WHERE task_id = ?", (task_id,))
        return None if row is None else self._known.decode(task_id, row[0])

    async def insert_task(self, task: TaskRecord) -> None:
        row = insert_row(task)
        try:  # a new row: the logged changes of others can be applied before or after it
            self._db.execute(INSERT_TASK, row)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"task {task.task_id!r} exists") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store: {exc}") from exc
        self._known.remember(task.task_id, str(row[-2]), task)
        self.changes.publish_now((task_key(task.task_id),))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        return self._task(task_id)

    async def update_task(self, task_id: str, change: TaskChange) -> TaskRecord:
        current = self._task(task_id)
        if current is None:
            raise TaskNotFound(task_id)
        updated = change(current)
        if updated is current:
            return current
        body = encode_json(updated.to_json())
        sql, params = _update(current, updated, body)
        if sql is BODY_UPDATE and self._log_change(task_id, body, updated):
            pass  # the file gets it with the next statement, batch or close
        elif self._write(sql, params) != 1:
            # The row is gone, which only this store does (it forgets what it deletes):
            # never keep a record that is not stored.
            self._known.forget(task_id)
            raise TaskNotFound(task_id)
        self._known.remember(task_id, body, updated)
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
        self._known.forget(task_id)
        if deleted:
            self.changes.publish_now((task_key(task_id),))
        return bool(deleted)

    async def delete_expired_tasks(self, now_ms: int) -> list[str]:
        rows = self._all("DELETE FROM tasks WHERE expires_at <= ? RETURNING task_id", (now_ms,))
        ids = [row[0] for row in rows]
        for task_id in ids:
            self._known.forget(task_id)
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
        # Literal dispatch values: SQLite uses a partial index only when the query names its terms.
        return self._tasks(
            "SELECT task_id, body FROM tasks WHERE worker_id = ? AND dispatch IN ('offered', 'running')",
            (worker_id,),
        )

    async def stale_offers(self, now_ms: int) -> list[TaskRecord]:
        return self._tasks(
            "SELECT task_id, body FROM tasks WHERE dispatch = 'offered' AND lease_expires_at <= ?",
            (now_ms,),
        )

    async def put_worker(self, worker: WorkerRecord) -> None:
        body = encode_json(worker.to_json())
        self._write(
            "INSERT INTO workers (worker_id, body) VALUES (?, ?)"
            " ON CONFLICT (worker_id) DO UPDATE SET body = excluded.body",
            (worker.worker_id, body),
        )
        self._workers.remember(worker.worker_id, body, worker)

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        known = self._workers.get(worker_id)
        if known is not None:
            return known
        row = self._one("SELECT body FROM workers WHERE worker_id = ?", (worker_id,))
        return None if row is None else self._workers.decode(worker_id, row[0])

    async def delete_worker(self, worker_id: str) -> None:
        self._write("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
        self._workers.forget(worker_id)

    async def list_workers(self) -> list[WorkerRecord]:
        rows = self._all("SELECT worker_id, body FROM workers ORDER BY worker_id")
        return [self._workers.decode(worker_id, body) for worker_id, body in rows]


def _replay(db: sqlite3.Connection, log: int, path: Path) -> None:
    """Apply the changes a store left in its updates log (`path`, open as `log`) when it stopped
    without closing, and empty the log. A last line without its newline is a write the system
    did not finish (the machine stopped, not only the process: a process killed after its
    `write` leaves the whole line), and is dropped."""
    data = b""
    while chunk := os.read(log, 1 << 20):
        data += chunk
    if not data:
        return
    latest: dict[str, str] = {}
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            task_id, tab, body = line.decode().partition("\t")
            if not tab or not isinstance(json.loads(body), dict):
                raise ValueError("not a task id and a body")
        except ValueError as exc:
            raise StoreUnavailable(
                f"cannot open SQLite store: line {number} of its updates log {str(path)!r}"
                f" is not a change: {exc}"
            ) from None
        latest[task_id] = body
    _apply(db, [(body, task_id) for task_id, body in latest.items()])
    os.ftruncate(log, 0)


def _apply(db: sqlite3.Connection, rows: list[tuple[str, str]]) -> int:
    """Write each `(body, task_id)` of `rows` in one transaction (none of them if it fails); how
    many rows changed."""
    db.execute("BEGIN")
    try:
        changed: int = db.executemany(BODY_UPDATE, rows).rowcount
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return changed
