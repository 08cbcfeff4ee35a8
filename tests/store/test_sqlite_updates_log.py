"""SQLite: a change of a task's body alone is a line of the updates log beside the file, applied to
the file before any other statement, in batches, at close, and at the next open after a kill."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskservice.domain.errors import StoreUnavailable
from taskservice.domain.model import Dispatch, TaskRecord
from taskservice.store.base import task_key
from taskservice.store.sqlite import SqliteTaskStore

from .test_sqlite_columns import keeping, record, statements_of, stored


def in_file(path: Path, task_id: str) -> str | None:
    """The status message of `task_id` in the file itself, read by a plain connection."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT body FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    db.close()
    if row is None:
        return None
    return TaskRecord.from_json(json.loads(row[0])).status_message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteTaskStore]:
    opened = SqliteTaskStore(tmp_path / "tasks.db")
    try:
        yield opened
    finally:
        await opened.close()


def log_of(path: Path) -> bytes:
    return Path(f"{path}-updates").read_bytes()


def write_log(path: Path, data: bytes) -> None:
    Path(f"{path}-updates").write_bytes(data)


def killed(store: SqliteTaskStore) -> None:
    """Leave `store` as a killed process would: its connection and log closed, nothing applied."""
    store._db.close()
    os.close(store._log)


async def message(store: SqliteTaskStore, task_id: str, text: str) -> TaskRecord:
    return await store.update_task(task_id, lambda t: t.replace(status_message=text))


def changed_then_killed(path: Path) -> subprocess.CompletedProcess[str]:
    """A process that opens the store at `path`, changes a task five times, says so and is killed."""
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from taskservice.domain.model import TaskRecord, TaskStatus
        from taskservice.store.sqlite import SqliteTaskStore

        async def main():
            store = SqliteTaskStore({str(path)!r})
            task = TaskRecord(task_id="t1", owner="alice", status=TaskStatus.WORKING, created_at=1,
                              last_updated_at=1, ttl_ms=60_000, poll_interval_ms=500)
            await store.insert_task(task)
            for n in range(5):
                await store.update_task("t1", lambda t, n=n: t.replace(status_message=f"step {{n}}"))
            print("answered", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    return subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)


async def test_a_process_killed_after_a_change_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    done = changed_then_killed(path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == "answered\n"
    assert log_of(path).count(b"\n") == 5  # the changes are in the log, not yet in the file
    assert in_file(path, "t1") == ""
    store = SqliteTaskStore(path)
    try:
        task = await store.get_task("t1")
        assert task is not None
        assert task.status_message == "step 4"
        assert log_of(path) == b""  # applied at open
    finally:
        await store.close()
    assert in_file(path, "t1") == "step 4"


async def test_the_next_open_applies_the_log_in_order(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    await store.insert_task(record())
    await store.insert_task(record(task_id="t2"))
    await message(store, "t1", "first")
    await message(store, "t2", "other")
    last = await message(store, "t1", "last")
    assert len(log_of(path).splitlines()) == 3
    killed(store)
    assert in_file(path, "t1") == ""  # the file has only the inserts

    store = SqliteTaskStore(path)
    try:
        assert await store.get_task("t1") == last
        assert stored(store, "t2")[1].status_message == "other"
    finally:
        await store.close()


async def test_a_line_the_system_did_not_finish_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    await store.insert_task(record())
    kept = await message(store, "t1", "kept")
    killed(store)
    write_log(path, log_of(path) + b't1\t{"taskId":"t1","sta')  # no newline: a write cut short

    store = SqliteTaskStore(path)
    try:
        assert await store.get_task("t1") == kept
    finally:
        await store.close()


@pytest.mark.parametrize(
    "line", [b"no tab here\n", b"t1\tnot json\n", b"t1\t[1, 2]\n", b't1\t{"a": "\xff"}\n']
)
async def test_a_log_that_is_not_a_log_of_changes_is_refused_and_kept(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    await store.insert_task(record())
    await message(store, "t1", "logged")
    killed(store)
    before = log_of(path) + line
    write_log(path, before)

    with pytest.raises(StoreUnavailable) as refused:
        SqliteTaskStore(path)
    assert "line 2 of its updates log" in refused.value.message
    assert f"{path}-updates" in refused.value.message
    assert "\n" not in refused.value.message
    assert log_of(path) == before  # nothing lost: the log is there to mend
    assert in_file(path, "t1") == ""  # and the file as it was

    write_log(path, before[: -len(line)])  # mended, it opens and applies the change
    store = SqliteTaskStore(path)
    try:
        task = await store.get_task("t1")
        assert task is not None
        assert task.status_message == "logged"
    finally:
        await store.close()


async def test_the_log_is_applied_after_so_many_changes(
    store: SqliteTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskservice.store.sqlite.PENDING_CHANGES", 3)
    for index in range(3):
        await store.insert_task(record(task_id=f"t{index}"))
    await message(store, "t0", "a")
    await message(store, "t0", "b")  # the same task again: still one pending change
    await message(store, "t1", "c")
    assert len(store._pending) == 2
    statements = statements_of(store)
    await message(store, "t2", "d")
    assert [s.split()[0] for s in statements] == ["BEGIN", "UPDATE", "UPDATE", "UPDATE", "COMMIT"]
    assert log_of(store.path) == b""
    assert [stored(store, f"t{i}")[1].status_message for i in range(3)] == ["b", "c", "d"]


async def test_the_log_is_applied_after_so_many_bytes(
    store: SqliteTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskservice.store.sqlite.PENDING_BYTES", 1_000)
    await store.insert_task(record())
    await message(store, "t1", "short")
    assert store._pending
    assert len(log_of(store.path)) < 1_000
    await message(store, "t1", "x" * 1_000)
    assert not store._pending
    assert log_of(store.path) == b""
    assert stored(store, "t1")[1].status_message == "x" * 1_000


async def test_a_body_too_large_to_keep_is_an_update_at_once(store: SqliteTaskStore) -> None:
    await store.insert_task(record())
    statements = statements_of(store)
    updated = await message(store, "t1", "x" * 40_000)
    assert [s.split()[0] for s in statements] == ["UPDATE"]
    assert log_of(store.path) == b""
    assert await store.get_task("t1") == updated


@pytest.mark.parametrize("failure", ["error", "short"])
async def test_a_failed_log_write_leaves_no_part_of_a_line_and_updates_instead(
    store: SqliteTaskStore, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    await store.insert_task(record())
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if failure == "error":
            raise OSError(28, "No space left on device")
        return real_write(fd, data[:10])

    monkeypatch.setattr("taskservice.store.sqlite.os.write", failing_write)
    statements = statements_of(store)
    updated = await message(store, "t1", "updated")
    monkeypatch.undo()
    assert [s.split()[0] for s in statements] == ["UPDATE"]
    assert log_of(store.path) == b""  # no part of the line left
    assert stored(store, "t1")[1] == updated
    assert await message(store, "t1", "logged again") == await store.get_task("t1")
    assert log_of(store.path).count(b"\n") == 1  # the log goes on from there


async def test_a_logged_change_is_read_after_its_record_leaves_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with keeping(tmp_path, monkeypatch, 2) as store:
        for index in range(3):
            await store.insert_task(record(task_id=f"t{index}"))
        updated = await message(store, "t0", "logged")
        await message(store, "t1", "logged")
        await message(store, "t2", "logged")  # pushes t0 out of the records kept
        assert store._known.get("t0") is None
        assert "t0" in store._pending  # nothing applied it
        statements = statements_of(store)
        assert await store.get_task("t0") is updated
        assert statements == []


async def test_concurrent_changes_of_many_tasks_all_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    ids = [f"t{index}" for index in range(40)]
    for task_id in ids:
        await store.insert_task(record(task_id=task_id))

    async def steps(task_id: str) -> None:
        for step in range(20):
            await message(store, task_id, f"{task_id} step {step}")
            await asyncio.sleep(0)

    await asyncio.gather(*(steps(task_id) for task_id in ids))
    await store.close()
    assert not store.updates_path.exists()
    for task_id in ids:
        assert in_file(path, task_id) == f"{task_id} step 19"


async def test_a_direct_write_comes_only_after_the_log_is_applied_and_emptied(store: SqliteTaskStore) -> None:
    """A process killed between a commit and the log's truncation applies the log again at its
    next open: so no write of a logged row may be committed while the log still holds its older
    body (the log is applied and emptied first, then the write runs on its own)."""
    await store.insert_task(record())
    await message(store, "t1", "logged")
    logged = len(log_of(store.path))
    seen: list[tuple[str, int]] = []
    store._db.set_trace_callback(lambda sql: seen.append((sql.split()[0], len(log_of(store.path)))))
    done = await store.update_task("t1", lambda t: t.replace(dispatch=Dispatch.DONE, status_message="done"))
    store._db.set_trace_callback(None)
    assert seen == [("BEGIN", logged), ("UPDATE", logged), ("COMMIT", logged), ("UPDATE", 0)]
    assert stored(store, "t1")[1] == done


async def test_a_batch_the_file_refuses_does_not_fail_the_change_that_was_logged(
    store: SqliteTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change that fills the log is stored once its line is written: if applying the batch
    fails then, the change still answers, is read back and is woken for; the batch stays logged."""
    monkeypatch.setattr("taskservice.store.sqlite.PENDING_CHANGES", 1)
    await store.insert_task(record())

    def refused() -> None:
        raise StoreUnavailable("SQLite store: disk I/O error")

    monkeypatch.setattr(store, "_apply_pending", refused)
    with store.changes.subscribe([task_key("t1")]) as subscription:
        updated = await message(store, "t1", "logged")
        assert await subscription.wait(timeout=0) is True
    assert await store.get_task("t1") is updated
    with pytest.raises(StoreUnavailable, match="disk I/O error"):
        await store.list_tasks("alice", None, 10)  # the next statement says so
    monkeypatch.undo()
    assert log_of(store.path).count(b"\n") == 1  # nothing lost
    assert [t.status_message for t in await store.list_tasks("alice", None, 10)] == ["logged"]
    assert log_of(store.path) == b""


async def test_a_database_in_memory_has_no_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteTaskStore(":memory:")
    try:
        await store.insert_task(record())
        assert (await message(store, "t1", "changed")) == await store.get_task("t1")
        assert stored(store, "t1")[1].status_message == "changed"
        assert os.listdir(tmp_path) == []
    finally:
        await store.close()
