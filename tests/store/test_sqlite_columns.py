"""SQLite: an update writes only the indexed columns that changed, and they stay equal to the body;
the store owns its file (no other connection reads or writes it while the store is open), so a
task or worker it read or wrote before is read again with no statement, and a change is one."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskservice.domain.errors import StoreUnavailable, TaskNotFound
from taskservice.domain.model import Dispatch, TaskRecord, TaskStatus, ToolSpec, WorkerRecord
from taskservice.store.base import encode_json
from taskservice.store.sqlite import SqliteTaskStore

COLUMNS = "owner, created_at, expires_at, dispatch, tool_name, worker_id, lease_expires_at"


def record(**changes: object) -> TaskRecord:
    task = TaskRecord(
        task_id="t1",
        owner="alice",
        status=TaskStatus.WORKING,
        created_at=1_000,
        last_updated_at=1_000,
        ttl_ms=60_000,
        poll_interval_ms=500,
        tool_name="echo",
        dispatch=Dispatch.QUEUED,
    )
    return dataclasses.replace(task, **changes)  # type: ignore[arg-type]


def stored(store: SqliteTaskStore, task_id: str) -> tuple[tuple[object, ...], TaskRecord]:
    """The row's indexed columns, and the record its body holds, decoded here: what the file holds
    once the store has applied its updates log, whatever the store keeps in memory (read on its
    connection, the only one the file admits)."""
    store._apply_pending()
    row = store._db.execute(f"SELECT {COLUMNS}, body FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return tuple(row[:-1]), TaskRecord.from_json(json.loads(row[-1]))


@contextlib.asynccontextmanager
async def keeping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> AsyncIterator[SqliteTaskStore]:
    """A store at `tmp_path` that keeps the records of at most `limit` tasks (the limit is read when
    the store opens, so the `store` fixtures cannot lower it)."""
    monkeypatch.setattr("taskservice.store.sqlite.KNOWN_TASKS", limit)
    store = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        yield store
    finally:
        await store.close()


def columns_of(task: TaskRecord) -> tuple[object, ...]:
    return (
        task.owner,
        task.created_at,
        task.expires_at,
        task.dispatch.value,
        task.tool_name,
        task.worker_id,
        task.lease_expires_at,
    )


async def test_every_kind_of_update_keeps_the_columns_equal_to_the_body(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        steps = [
            {"status_message": "body only", "last_updated_at": 2_000},
            {"dispatch": Dispatch.OFFERED, "worker_id": "w1", "lease_id": "l1", "lease_expires_at": 9_000},
            {"dispatch": Dispatch.RUNNING, "lease_expires_at": 12_000},
            {"ttl_ms": 120_000},  # expires_at is derived: created_at + ttl_ms
            {
                "status": TaskStatus.COMPLETED,
                "dispatch": Dispatch.DONE,
                "worker_id": "",
                "lease_expires_at": 0,
            },
        ]
        for step in steps:
            updated = await store.update_task("t1", lambda t, step=step: dataclasses.replace(t, **step))  # type: ignore[misc]
            row, body = stored(store, "t1")
            assert body == updated
            assert row == columns_of(updated), step
            assert await store.get_task("t1") == updated
    finally:
        await store.close()


async def test_index_queries_follow_column_updates(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        await store.insert_task(record())
        assert [t.task_id for t in await store.queued_tasks(["echo"], 10)] == ["t1"]
        await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="still queued"))
        assert [t.status_message for t in await store.queued_tasks(["echo"], 10)] == ["still queued"]
        await store.update_task(
            "t1",
            lambda t: dataclasses.replace(t, dispatch=Dispatch.OFFERED, worker_id="w1", lease_expires_at=5),
        )
        assert await store.queued_tasks(["echo"], 10) == []
        assert [t.task_id for t in await store.tasks_of_worker("w1")] == ["t1"]
        assert [t.task_id for t in await store.stale_offers(10)] == ["t1"]
        assert await store.delete_expired_tasks(60_999) == []
        assert await store.delete_expired_tasks(61_000) == ["t1"]
    finally:
        await store.close()


def statements_of(store: SqliteTaskStore) -> list[str]:
    """The statements the store's connection runs from now on."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    return statements


async def test_a_task_the_store_knows_is_read_with_no_statement(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        statements = statements_of(store)
        assert await store.get_task("t1") == record()
        updated = await store.update_task("t1", lambda t: t.replace(status_message="one"))
        assert await store.get_task("t1") is updated  # the (immutable) record written, no query
        assert statements == []  # the change is a line of the updates log
        assert stored(store, "t1")[1] == updated
    finally:
        await store.close()
    # One it does not know (here: after a restart) is read once, then known.
    store = SqliteTaskStore(path)
    try:
        statements = statements_of(store)
        first = await store.get_task("t1")
        assert first == updated
        assert await store.get_task("t1") is first
        assert len(statements) == 1
        assert statements[0].startswith("SELECT body FROM tasks")
        changed = await store.update_task("t1", lambda t: t.replace(status_message=t.status_message + "!"))
        assert changed.status_message == "one!"
        assert await store.delete_task("t1")
        assert await store.get_task("t1") is None
    finally:
        await store.close()


async def test_a_worker_the_store_knows_is_read_with_no_statement(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    worker = WorkerRecord("w1", "one", (ToolSpec("echo"),), max_concurrent_tasks=2, lease_expires_at=5)
    try:
        await store.put_worker(worker)
        statements = statements_of(store)
        assert await store.get_worker("w1") is worker  # the record it wrote, no query
        assert statements == []
        assert await store.list_workers() == [worker]
        assert (await store.list_workers())[0] is worker
        beat = dataclasses.replace(worker, lease_expires_at=9)
        await store.put_worker(beat)
        assert await store.get_worker("w1") is beat
    finally:
        await store.close()
    store = SqliteTaskStore(path)
    try:
        decoded = await store.get_worker("w1")
        assert decoded == beat
        assert await store.get_worker("w1") is decoded
        assert await store.list_workers() == [beat]
        await store.delete_worker("w1")
        assert await store.get_worker("w1") is None
        assert await store.list_workers() == []
    finally:
        await store.close()


async def test_no_other_connection_reads_or_writes_the_file_while_the_store_is_open(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        with sqlite3.connect(path, timeout=0.1) as db:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                db.execute("SELECT body FROM tasks").fetchall()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                db.execute("UPDATE tasks SET body = '{}'")
        db.close()
        # A second store (a second service on the same file) is refused, with one clear line.
        with pytest.raises(StoreUnavailable) as refused:
            SqliteTaskStore(path)
        assert "another process has it open" in refused.value.message
        assert str(path) in refused.value.message
        assert "\n" not in refused.value.message
        assert await store.get_task("t1") == record()  # the refused one took nothing from the first
    finally:
        await store.close()
    # Closed, the file is anyone's again: committed, and readable by a plain connection.
    with sqlite3.connect(path) as db:
        (body,) = db.execute("SELECT body FROM tasks WHERE task_id = 't1'").fetchone()
    db.close()
    assert TaskRecord.from_json(json.loads(body)) == record()


async def test_a_row_gone_under_a_known_task_is_not_found_and_forgotten(tmp_path: Path) -> None:
    """Only the store deletes rows, and it forgets what it deletes; should a row vanish anyway, a
    change of it is TaskNotFound and the record is not kept as if it were stored."""
    store = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        await store.insert_task(record())
        store._db.execute("DELETE FROM tasks WHERE task_id = 't1'")
        with pytest.raises(TaskNotFound):
            await store.update_task("t1", lambda t: t.replace(dispatch=Dispatch.DONE))
        assert await store.get_task("t1") is None
        # A change of the body alone is logged, and found gone when the log is applied.
        await store.insert_task(record(task_id="t2"))
        store._db.execute("DELETE FROM tasks WHERE task_id = 't2'")
        await store.update_task("t2", lambda t: t.replace(status_message="gone"))
        assert await store.list_tasks("alice", None, 10) == []  # a statement: the log applied
        assert await store.get_task("t2") is None
    finally:
        await store.close()


async def test_the_records_kept_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with keeping(tmp_path, monkeypatch, 3) as store:
        for index in range(10):
            await store.insert_task(record(task_id=f"t{index}", created_at=index))
            await store.get_task(f"t{index}")
        assert len(store._known) == 3
        listed = await store.list_tasks("alice", None, 20)
        assert [task.task_id for task in listed] == [f"t{i}" for i in range(10)]
        assert await store.delete_expired_tasks(10**12) != []
        assert len(store._known) == 0


async def test_a_list_page_leaves_the_busy_tasks_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of tasks/list is read once: its records do not push the busy ones out of the cache."""
    async with keeping(tmp_path, monkeypatch, 3) as store:
        for index in range(10):
            await store.insert_task(record(task_id=f"t{index}", created_at=index))
        busy = {f"t{index}": await store.get_task(f"t{index}") for index in (7, 8, 9)}
        listed = await store.list_tasks("alice", None, 20)
        assert [task.task_id for task in listed] == [f"t{i}" for i in range(10)]
        for task_id, record_read in busy.items():
            assert await store.get_task(task_id) is record_read  # still the record kept, not a new one


async def test_a_change_of_a_body_is_a_line_of_the_log_then_one_update(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        statements = statements_of(store)
        updated = await store.update_task("t1", lambda t: t.replace(status_message="one"))
        body = encode_json(updated.to_json())
        assert statements == []
        assert store.updates_path == tmp_path / "tasks.db-updates"
        assert store.updates_path.read_bytes() == f"t1\t{body}\n".encode()
        # The next statement applies the log first, in one transaction, and empties it.
        assert await store.queued_tasks(["echo"], 10) == [updated]
        store._db.set_trace_callback(None)
        assert statements[:3] == ["BEGIN", f"UPDATE tasks SET body = '{body}' WHERE task_id = 't1'", "COMMIT"]
        assert statements[3].startswith("SELECT task_id, body FROM tasks WHERE dispatch = 'queued'")
        assert not store._db.in_transaction  # committed
        assert store.updates_path.read_bytes() == b""
        assert stored(store, "t1")[1] == updated
    finally:
        await store.close()
    assert not store.updates_path.exists()  # a closed store leaves no log


async def test_the_worker_and_queue_reads_use_indexes_of_only_the_tasks_they_want(tmp_path: Path) -> None:
    """A worker's tasks, the stale offers and the queue are read through partial indexes holding
    only such tasks: a finished task (which keeps its worker_id) is in none of them, so these
    reads (each wake of a worker's assignment stream makes two) do not grow with history."""
    store = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        for index in range(20):  # a history of finished tasks, each still naming its worker
            await store.insert_task(
                record(task_id=f"done{index}", dispatch=Dispatch.DONE, worker_id="w1", lease_expires_at=5)
            )
        await store.insert_task(record(task_id="held", dispatch=Dispatch.RUNNING, worker_id="w1"))
        await store.insert_task(record(task_id="offer", dispatch=Dispatch.OFFERED, worker_id="w1"))
        await store.insert_task(record(task_id="queued"))
        statements = statements_of(store)
        assert sorted(t.task_id for t in await store.tasks_of_worker("w1")) == ["held", "offer"]
        assert [t.task_id for t in await store.stale_offers(10)] == ["offer"]
        assert [t.task_id for t in await store.queued_tasks(["echo"], 10)] == ["queued"]
        store._db.set_trace_callback(None)
        plans = [
            " ".join(row[-1] for row in store._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
            for sql in statements
        ]
        assert "USING INDEX tasks_held" in plans[0]
        assert "USING INDEX tasks_offered" in plans[1]
        assert "USING INDEX tasks_queued" in plans[2]
    finally:
        await store.close()


async def test_opening_a_file_with_the_old_index_of_every_worker_task_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    SqliteTaskStore(path)._db.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX tasks_held")
        db.execute("CREATE INDEX tasks_by_worker ON tasks (worker_id) WHERE worker_id != ''")
    db.close()
    store = SqliteTaskStore(path)
    try:
        names = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "tasks_by_worker" not in names
        assert {"tasks_held", "tasks_offered", "tasks_queued"} <= names
    finally:
        await store.close()
