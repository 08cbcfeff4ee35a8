"""SQLite: an update writes only the indexed columns that changed, and they stay equal to the body;
a read (of a task or a worker) decodes a stored body only when it is not the one the store last
read or wrote."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from taskservice.domain.errors import TaskNotFound
from taskservice.domain.model import Dispatch, TaskRecord, TaskStatus, ToolSpec, WorkerRecord
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


def stored(path: Path, task_id: str) -> tuple[tuple[object, ...], TaskRecord]:
    """The row's indexed columns, and the record its body holds (read with a connection of its own)."""
    with sqlite3.connect(path) as db:
        row = db.execute(f"SELECT {COLUMNS}, body FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return tuple(row[:-1]), TaskRecord.from_json(json.loads(row[-1]))


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
            row, body = stored(path, "t1")
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


async def test_reads_decode_each_stored_body_once_and_see_every_write(tmp_path: Path) -> None:
    """Reads skip decoding a body they decoded (or wrote) before, and never miss a newer one,
    even one written by another connection."""
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        first = await store.get_task("t1")
        assert first == record()
        assert await store.get_task("t1") is first  # the same body: the same (immutable) record
        updated = await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="one"))
        assert await store.get_task("t1") is updated
        # Another writer changes the body behind the store's back: the next read decodes it.
        other = dataclasses.replace(updated, status_message="two")
        with sqlite3.connect(path) as db:
            db.execute("UPDATE tasks SET body = ? WHERE task_id = 't1'", (json.dumps(other.to_json()),))
        assert await store.get_task("t1") == other
        changed = await store.update_task(
            "t1", lambda t: dataclasses.replace(t, status_message=t.status_message + "!")
        )
        assert changed.status_message == "two!"
        assert await store.delete_task("t1")
        assert await store.get_task("t1") is None
    finally:
        await store.close()


async def test_worker_reads_decode_each_stored_body_once_and_see_every_write(tmp_path: Path) -> None:
    """Workers go through the same cache: read again, the record decoded before; written by
    another connection, the new body; deleted, gone."""
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    worker = WorkerRecord("w1", "one", (ToolSpec("echo"),), max_concurrent_tasks=2, lease_expires_at=5)
    try:
        await store.put_worker(worker)
        first = await store.get_worker("w1")
        assert first is worker  # the body it wrote: the record it wrote
        assert await store.list_workers() == [worker]
        assert (await store.list_workers())[0] is worker
        beat = dataclasses.replace(worker, lease_expires_at=9)
        await store.put_worker(beat)
        assert await store.get_worker("w1") is beat
        behind = dataclasses.replace(beat, name="renamed", lease_expires_at=12)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE workers SET body = ? WHERE worker_id = 'w1'", (json.dumps(behind.to_json()),))
        decoded = await store.get_worker("w1")
        assert decoded == behind
        assert await store.get_worker("w1") is decoded
        assert await store.list_workers() == [behind]
        await store.delete_worker("w1")
        assert await store.get_worker("w1") is None
        assert await store.list_workers() == []
    finally:
        await store.close()


async def test_the_decoded_records_kept_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("taskservice.store.sqlite.DECODED_TASKS", 3)
    store = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        for index in range(10):
            await store.insert_task(record(task_id=f"t{index}", created_at=index))
            await store.get_task(f"t{index}")
        assert len(store._decoded) == 3
        listed = await store.list_tasks("alice", None, 20)
        assert [task.task_id for task in listed] == [f"t{i}" for i in range(10)]
        assert await store.delete_expired_tasks(10**12) != []
        assert len(store._decoded) == 0
    finally:
        await store.close()


async def test_a_list_page_leaves_the_busy_tasks_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of tasks/list is read once: its records do not push the busy ones out of the cache."""
    monkeypatch.setattr("taskservice.store.sqlite.DECODED_TASKS", 3)
    store = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        for index in range(10):
            await store.insert_task(record(task_id=f"t{index}", created_at=index))
        busy = {f"t{index}": await store.get_task(f"t{index}") for index in (7, 8, 9)}
        listed = await store.list_tasks("alice", None, 20)
        assert [task.task_id for task in listed] == [f"t{i}" for i in range(10)]
        for task_id, record_read in busy.items():
            assert await store.get_task(task_id) is record_read  # still the decoded record, not a new one
    finally:
        await store.close()


async def test_a_change_of_a_body_the_store_wrote_is_one_statement(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        updated = await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="one"))
        store._db.set_trace_callback(None)
        assert len(statements) == 1
        assert statements[0].startswith("UPDATE tasks SET body = ")
        assert stored(path, "t1")[1] == updated  # committed: another connection reads it
    finally:
        await store.close()


async def test_a_change_applies_to_what_another_writer_stored(tmp_path: Path) -> None:
    """The one-statement update succeeds only on the body it was computed from: after a write
    behind the store's back, the change runs again on the stored record."""
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.insert_task(record())
        behind = record(status_message="behind", last_updated_at=5)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE tasks SET body = ? WHERE task_id = 't1'", (json.dumps(behind.to_json()),))
        updated = await store.update_task(
            "t1", lambda t: dataclasses.replace(t, status_message=t.status_message + "+")
        )
        assert updated.status_message == "behind+"
        assert stored(path, "t1")[1] == updated

        # A change the store's own copy refuses may suit the stored record.
        finished = dataclasses.replace(updated, status=TaskStatus.COMPLETED)
        await store.update_task("t1", lambda t: finished)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE tasks SET body = ? WHERE task_id = 't1'", (json.dumps(updated.to_json()),))

        def only_if_working(task: TaskRecord) -> TaskRecord:
            if task.status is not TaskStatus.WORKING:
                raise ValueError("finished")
            return dataclasses.replace(task, status_message="again")

        assert (await store.update_task("t1", only_if_working)).status_message == "again"
        # And one that the stored record refuses is refused.
        await store.update_task("t1", lambda t: finished)
        with pytest.raises(ValueError, match="finished"):
            await store.update_task("t1", only_if_working)
        # Deleted behind the store's back: not found, whatever the store saw before.
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM tasks WHERE task_id = 't1'")
        with pytest.raises(TaskNotFound):
            await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="gone"))
    finally:
        await store.close()
