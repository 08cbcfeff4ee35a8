"""The store contract: every backend behind `TaskStore` behaves the same.

The `store` fixture (tests/store/conftest.py) runs each test against every
backend; SQLite-only behaviour (durability, opening) is at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from taskservice.domain.errors import StoreUnavailable, TaskNotFound
from taskservice.domain.model import (
    ClientRequest,
    Dispatch,
    RequestState,
    TaskRecord,
    TaskStatus,
    ToolSpec,
    WorkerRecord,
)
from taskservice.store import SqliteTaskStore, TaskCursor, TaskStore, open_store
from taskservice.store.base import (
    MAX_CURSOR_TIME,
    LocalChangeFeed,
    Subscription,
    encode_json,
    task_key,
)

WAKE_TIMEOUT = 2.0  # a wake that must come comes at once; this only stops a broken test hanging
QUIET = 0.1  # how long to listen for a wake that must not come


def make_task(
    task_id: str,
    *,
    owner: str = "alice",
    created_at: int = 1_000,
    ttl_ms: int = 60_000,
    tool_name: str = "",
    dispatch: Dispatch = Dispatch.DONE,
    worker_id: str = "",
    lease_expires_at: int = 0,
    status: TaskStatus = TaskStatus.WORKING,
) -> TaskRecord:
    return TaskRecord(
        task_id=task_id,
        owner=owner,
        status=status,
        created_at=created_at,
        last_updated_at=created_at,
        ttl_ms=ttl_ms,
        poll_interval_ms=1_000,
        tool_name=tool_name,
        arguments={"x": 1, "nested": {"list": [1, "two", None, 3.5]}},
        meta={"progressToken": "p-1"},
        dispatch=dispatch,
        worker_id=worker_id,
        lease_id=f"lease-{task_id}" if worker_id else "",
        lease_expires_at=lease_expires_at,
    )


def make_worker(worker_id: str, *tools: str, lease_expires_at: int = 50_000) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        name=f"name-{worker_id}",
        tools=tuple(ToolSpec(name=t, description=f"tool {t}", retry_safe=True) for t in tools),
        max_concurrent_tasks=3,
        lease_expires_at=lease_expires_at,
    )


def with_message(message: str) -> Callable[[TaskRecord], TaskRecord]:
    def change(task: TaskRecord) -> TaskRecord:
        return dataclasses.replace(task, status_message=message, last_updated_at=task.last_updated_at + 1)

    return change


def unchanged(task: TaskRecord) -> TaskRecord:
    return task


class Boom(Exception):
    pass


def ids(tasks: list[TaskRecord]) -> list[str]:
    return [t.task_id for t in tasks]


# --------------------------------------------------------------- insert / get / update


async def test_insert_then_get_returns_an_equal_record(store: TaskStore) -> None:
    task = dataclasses.replace(
        make_task("t1"),
        result={"content": [{"type": "text", "text": "héllo ✓"}], "isError": False},
        requests=(
            ClientRequest(
                request_id="r1",
                method="elicitation/create",
                params={"message": "name?", "requestedSchema": {"type": "object"}},
                sequence=1,
                created_at=1_000,
            ),
            ClientRequest(
                request_id="r2",
                method="elicitation/create",
                params={"message": "colour?", "requestedSchema": {"type": "object"}},
                sequence=2,
                created_at=1_001,
                state=RequestState.ANSWERED,
                result={"action": "accept", "content": {"colour": "teal"}},
                answered_by="view-a",
            ),
        ),
        retry_safe=True,
        attempts=2,
    )
    await store.insert_task(task)
    assert await store.get_task("t1") == task


async def test_get_of_unknown_task_is_none(store: TaskStore) -> None:
    assert await store.get_task("nope") is None


async def test_duplicate_insert_raises_value_error_and_keeps_the_first(store: TaskStore) -> None:
    first = make_task("t1")
    await store.insert_task(first)
    with pytest.raises(ValueError, match="t1"):
        await store.insert_task(dataclasses.replace(first, status_message="second"))
    assert await store.get_task("t1") == first


async def test_update_stores_and_returns_the_changed_record(store: TaskStore) -> None:
    await store.insert_task(make_task("t1"))
    updated = await store.update_task("t1", with_message("hello"))
    assert updated.status_message == "hello"
    assert await store.get_task("t1") == updated


async def test_update_of_unknown_task_raises_task_not_found(store: TaskStore) -> None:
    with pytest.raises(TaskNotFound) as caught:
        await store.update_task("ghost", with_message("x"))
    assert caught.value.task_id == "ghost"
    assert await store.get_task("ghost") is None


async def test_update_whose_change_raises_writes_nothing_and_publishes_nothing(store: TaskStore) -> None:
    original = make_task("t1")
    await store.insert_task(original)

    def explode(task: TaskRecord) -> TaskRecord:
        dataclasses.replace(task, status_message="half-done")
        raise Boom("no")

    with store.changes.subscribe([task_key("t1")]) as subscription:
        with pytest.raises(Boom):
            await store.update_task("t1", explode)
        assert await subscription.wait(timeout=QUIET) is False
    assert await store.get_task("t1") == original
    # The store is still usable after an aborted update.
    assert (await store.update_task("t1", with_message("after"))).status_message == "after"


async def test_update_returning_the_same_record_writes_and_publishes_nothing(store: TaskStore) -> None:
    original = make_task("t1")
    await store.insert_task(original)
    with store.changes.subscribe([task_key("t1")]) as subscription:
        returned = await store.update_task("t1", unchanged)
        assert await subscription.wait(timeout=QUIET) is False
    assert returned == original
    assert await store.get_task("t1") == original


async def test_update_sees_the_latest_stored_record(store: TaskStore) -> None:
    await store.insert_task(make_task("t1"))
    for n in range(5):
        await store.update_task("t1", with_message(str(n)))
        await store.update_task("t1", lambda t: dataclasses.replace(t, attempts=t.attempts + 1))
    stored = await store.get_task("t1")
    assert stored is not None
    assert stored.attempts == 5
    assert stored.status_message == "4"


# ---------------------------------------------------------------------------- listing


async def test_list_tasks_orders_by_created_at_then_task_id(store: TaskStore) -> None:
    for task_id, created_at in [("c", 2), ("b", 1), ("a", 3), ("d", 2), ("a2", 1)]:
        await store.insert_task(make_task(task_id, created_at=created_at))
    listed = await store.list_tasks("alice", None, 10)
    assert ids(listed) == ["a2", "b", "c", "d", "a"]


async def test_list_tasks_respects_the_limit(store: TaskStore) -> None:
    for n in range(5):
        await store.insert_task(make_task(f"t{n}", created_at=n))
    assert ids(await store.list_tasks("alice", None, 3)) == ["t0", "t1", "t2"]


async def test_cursor_pages_cover_every_task_once_across_ties_in_created_at(store: TaskStore) -> None:
    # Seven tasks, five of them created in the same millisecond: pages must split the tie.
    expected: list[tuple[int, str]] = []
    for n, created_at in enumerate([5, 7, 7, 7, 7, 7, 9]):
        task_id = f"task-{(n * 37) % 11:02d}"
        expected.append((created_at, task_id))
        await store.insert_task(make_task(task_id, created_at=created_at))
    expected.sort()

    seen: list[str] = []
    after: TaskCursor | None = None
    pages = 0
    while True:
        page = await store.list_tasks("alice", after, 2)
        if not page:
            break
        pages += 1
        seen.extend(ids(page))
        # The cursor travels as an opaque token, as the service hands it out.
        after = TaskCursor.decode(TaskCursor.after_task(page[-1]).encode())
        assert pages < 10, "paging does not advance"
    assert seen == [task_id for _, task_id in expected]
    assert pages == 4


@pytest.mark.parametrize("created_at", [0, MAX_CURSOR_TIME])
async def test_every_cursor_a_page_token_decodes_to_is_one_the_store_can_list_after(
    store: TaskStore, created_at: int
) -> None:
    """The decoder is the one check on a token: what it lets through, each store can compare (an
    SQLite INTEGER is 64 bits); what no store could, it refuses."""
    await store.insert_task(make_task("t1", created_at=5))
    token = TaskCursor(created_at, "x").encode()
    listed = await store.list_tasks("alice", TaskCursor.decode(token), 10)
    assert ids(listed) == (["t1"] if created_at == 0 else [])
    for beyond in (MAX_CURSOR_TIME + 1, 10**30, -1):
        with pytest.raises(ValueError, match="not a page token"):
            TaskCursor.decode(TaskCursor(beyond, "x").encode())


async def test_list_tasks_after_the_last_task_is_empty(store: TaskStore) -> None:
    await store.insert_task(make_task("t1", created_at=1))
    last = await store.get_task("t1")
    assert last is not None
    assert await store.list_tasks("alice", TaskCursor.after_task(last), 10) == []


async def test_owners_see_only_their_own_tasks(store: TaskStore) -> None:
    await store.insert_task(make_task("a1", owner="alice", created_at=1))
    await store.insert_task(make_task("b1", owner="bob", created_at=2))
    await store.insert_task(make_task("a2", owner="alice", created_at=3))
    assert ids(await store.list_tasks("alice", None, 10)) == ["a1", "a2"]
    assert ids(await store.list_tasks("bob", None, 10)) == ["b1"]
    assert await store.list_tasks("carol", None, 10) == []
    # A cursor taken from one owner's list does not reveal another owner's tasks.
    assert ids(await store.list_tasks("bob", TaskCursor(0, ""), 10)) == ["b1"]


# -------------------------------------------------------------------------- deleting


async def test_delete_task_deletes_it_and_wakes_its_subscribers(store: TaskStore) -> None:
    await store.insert_task(make_task("t1", created_at=1))
    await store.insert_task(make_task("t2", created_at=2))
    with store.changes.subscribe([task_key("t1")]) as subscription:
        assert await store.delete_task("t1") is True
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True
    assert await store.get_task("t1") is None
    assert ids(await store.list_tasks("alice", None, 10)) == ["t2"]
    with pytest.raises(TaskNotFound):
        await store.update_task("t1", with_message("x"))
    # Deleting again finds nothing and wakes nobody; the other task is untouched.
    with store.changes.subscribe([task_key("t1")]) as subscription:
        assert await store.delete_task("t1") is False
        assert await subscription.wait(timeout=QUIET) is False
    assert await store.get_task("t2") == make_task("t2", created_at=2)


async def test_delete_task_of_an_unknown_task_is_false(store: TaskStore) -> None:
    assert await store.delete_task("ghost") is False
    assert await store.get_task("ghost") is None


async def test_a_deleted_task_leaves_the_dispatch_queries(store: TaskStore) -> None:
    await store.insert_task(make_task("queued", tool_name="echo", dispatch=Dispatch.QUEUED))
    await store.insert_task(
        make_task("offered", tool_name="echo", dispatch=Dispatch.OFFERED, worker_id="w1", lease_expires_at=10)
    )
    assert await store.delete_task("queued") is True
    assert await store.delete_task("offered") is True
    assert await store.queued_tasks(["echo"], 10) == []
    assert await store.tasks_of_worker("w1") == []
    assert await store.stale_offers(1_000_000) == []
    assert await store.delete_expired_tasks(10**15) == []


# ---------------------------------------------------------------------------- expiry


async def test_delete_expired_tasks_deletes_exactly_the_expired_ones(store: TaskStore) -> None:
    await store.insert_task(make_task("short", created_at=1_000, ttl_ms=100))  # expires at 1100
    await store.insert_task(make_task("edge", created_at=1_000, ttl_ms=500))  # expires at 1500
    await store.insert_task(make_task("long", created_at=1_000, ttl_ms=10_000))
    with store.changes.subscribe([task_key("short")]) as subscription:
        deleted = await store.delete_expired_tasks(1_500)
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True
    assert sorted(deleted) == ["edge", "short"]
    assert await store.get_task("short") is None
    assert await store.get_task("edge") is None
    assert await store.get_task("long") is not None
    assert ids(await store.list_tasks("alice", None, 10)) == ["long"]
    assert await store.delete_expired_tasks(1_500) == []


# -------------------------------------------------------------------------- dispatch


async def test_queued_tasks_filters_by_tool_orders_oldest_first_and_limits(store: TaskStore) -> None:
    await store.insert_task(make_task("q3", created_at=3, tool_name="echo", dispatch=Dispatch.QUEUED))
    await store.insert_task(make_task("q1", created_at=1, tool_name="echo", dispatch=Dispatch.QUEUED))
    await store.insert_task(make_task("q2", created_at=2, tool_name="sum", dispatch=Dispatch.QUEUED))
    await store.insert_task(make_task("q0", created_at=0, tool_name="other", dispatch=Dispatch.QUEUED))
    await store.insert_task(make_task("q1b", created_at=1, tool_name="echo", dispatch=Dispatch.QUEUED))
    await store.insert_task(
        make_task("off", created_at=0, tool_name="echo", dispatch=Dispatch.OFFERED, worker_id="w")
    )
    await store.insert_task(make_task("done", created_at=0, tool_name="echo", dispatch=Dispatch.DONE))

    assert ids(await store.queued_tasks(["echo", "sum"], 10)) == ["q1", "q1b", "q2", "q3"]
    assert ids(await store.queued_tasks(["echo"], 2)) == ["q1", "q1b"]
    assert ids(await store.queued_tasks({"sum"}, 10)) == ["q2"]
    assert await store.queued_tasks([], 10) == []
    assert await store.queued_tasks(["unknown"], 10) == []


async def test_queued_tasks_follows_updates_of_dispatch(store: TaskStore) -> None:
    await store.insert_task(make_task("q1", tool_name="echo", dispatch=Dispatch.QUEUED))
    await store.update_task(
        "q1", lambda t: dataclasses.replace(t, dispatch=Dispatch.OFFERED, worker_id="w1", lease_id="l")
    )
    assert await store.queued_tasks(["echo"], 10) == []
    await store.update_task(
        "q1", lambda t: dataclasses.replace(t, dispatch=Dispatch.QUEUED, worker_id="", lease_id="")
    )
    assert ids(await store.queued_tasks(["echo"], 10)) == ["q1"]


async def test_tasks_of_worker_are_its_offered_and_running_tasks(store: TaskStore) -> None:
    await store.insert_task(make_task("o", tool_name="e", dispatch=Dispatch.OFFERED, worker_id="w1"))
    await store.insert_task(make_task("r", tool_name="e", dispatch=Dispatch.RUNNING, worker_id="w1"))
    await store.insert_task(make_task("d", tool_name="e", dispatch=Dispatch.DONE, worker_id="w1"))
    await store.insert_task(make_task("x", tool_name="e", dispatch=Dispatch.RUNNING, worker_id="w2"))
    await store.insert_task(make_task("q", tool_name="e", dispatch=Dispatch.QUEUED))
    assert sorted(ids(await store.tasks_of_worker("w1"))) == ["o", "r"]
    assert ids(await store.tasks_of_worker("w2")) == ["x"]
    assert await store.tasks_of_worker("w3") == []


async def test_stale_offers_are_offered_tasks_whose_lease_ran_out(store: TaskStore) -> None:
    for task_id, lease_expires_at in [("old", 100), ("edge", 200), ("fresh", 300)]:
        await store.insert_task(
            make_task(
                task_id,
                tool_name="e",
                dispatch=Dispatch.OFFERED,
                worker_id="w1",
                lease_expires_at=lease_expires_at,
            )
        )
    await store.insert_task(
        make_task("running", lease_expires_at=100, dispatch=Dispatch.RUNNING, worker_id="w1")
    )
    await store.insert_task(make_task("queued", dispatch=Dispatch.QUEUED, tool_name="e"))
    assert sorted(ids(await store.stale_offers(200))) == ["edge", "old"]
    assert await store.stale_offers(99) == []


# --------------------------------------------------------------------------- workers


async def test_workers_put_get_list_delete(store: TaskStore) -> None:
    w1 = make_worker("w1", "echo", "sum")
    w2 = make_worker("w2", "other")
    assert await store.get_worker("w1") is None
    await store.put_worker(w1)
    await store.put_worker(w2)
    assert await store.get_worker("w1") == w1
    assert sorted(await store.list_workers(), key=lambda w: w.worker_id) == [w1, w2]

    renewed = dataclasses.replace(w1, lease_expires_at=99_000)
    await store.put_worker(renewed)
    assert await store.get_worker("w1") == renewed
    assert len(await store.list_workers()) == 2

    await store.delete_worker("w1")
    assert await store.get_worker("w1") is None
    assert await store.list_workers() == [w2]
    await store.delete_worker("w1")  # deleting twice is harmless
    assert await store.list_workers() == [w2]


# ----------------------------------------------------------------------- change feed


async def test_insert_wakes_a_subscriber_of_the_task(store: TaskStore) -> None:
    with store.changes.subscribe([task_key("t1")]) as subscription:
        await store.insert_task(make_task("t1"))
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True


async def test_update_wakes_a_subscriber_of_the_task_and_not_of_others(store: TaskStore) -> None:
    await store.insert_task(make_task("t1"))
    await store.insert_task(make_task("t2"))
    with (
        store.changes.subscribe([task_key("t1")]) as mine,
        store.changes.subscribe([task_key("t2")]) as other,
    ):
        await store.update_task("t1", with_message("x"))
        assert await mine.wait(timeout=WAKE_TIMEOUT) is True
        assert await other.wait(timeout=QUIET) is False


async def test_every_subscriber_is_woken(store: TaskStore) -> None:
    await store.insert_task(make_task("t1"))
    with (
        store.changes.subscribe([task_key("t1")]) as first,
        store.changes.subscribe([task_key("t1"), task_key("t2")]) as second,
    ):
        waiters = [
            asyncio.create_task(first.wait(timeout=WAKE_TIMEOUT)),
            asyncio.create_task(second.wait(timeout=WAKE_TIMEOUT)),
        ]
        await asyncio.sleep(0)  # both are blocked in wait()
        await store.update_task("t1", with_message("x"))
        assert await asyncio.gather(*waiters) == [True, True]


async def test_a_first_subscription_is_woken_before_the_others(store: TaskStore) -> None:
    """The waiters a task's progress waits on (the worker's Elicit, the client's tasks/result) run
    before those that watch it (status notifications, other views), whatever the order of
    subscribing: a woken waiter runs in the order it was woken."""
    await store.insert_task(make_task("t1"))
    woken: list[str] = []

    async def wait(name: str, subscription: Subscription) -> None:
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True
        woken.append(name)

    with contextlib.ExitStack() as stack:
        subscriptions = {
            f"watcher {n}": stack.enter_context(store.changes.subscribe([task_key("t1")])) for n in range(4)
        }
        subscriptions["waiter"] = stack.enter_context(store.changes.subscribe([task_key("t1")], first=True))
        for n in range(4, 8):  # of several keys, and subscribed after the waiter
            subscriptions[f"watcher {n}"] = stack.enter_context(
                store.changes.subscribe([task_key("t0"), task_key("t1")])
            )
        waiters = [asyncio.create_task(wait(name, s)) for name, s in subscriptions.items()]
        await asyncio.sleep(0)  # all are blocked in wait()
        await store.update_task("t1", with_message("x"))
        await asyncio.gather(*waiters)
    assert woken[0] == "waiter"
    assert sorted(woken[1:]) == [f"watcher {n}" for n in range(8)]


async def test_subscribe_before_read_cannot_miss_an_update(store: TaskStore) -> None:
    """The waiters' pattern: subscribe, read, then wait. An update between read and wait still wakes."""
    await store.insert_task(make_task("t1"))
    with store.changes.subscribe([task_key("t1")]) as subscription:
        before = await store.get_task("t1")
        assert before is not None
        assert before.status_message == ""
        # The update lands after the read, before anyone waits.
        await store.update_task("t1", with_message("landed"))
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True
        after = await store.get_task("t1")
        assert after is not None
        assert after.status_message == "landed"


async def test_a_wake_is_consumed_by_wait(store: TaskStore) -> None:
    await store.insert_task(make_task("t1"))
    with store.changes.subscribe([task_key("t1")]) as subscription:
        await store.update_task("t1", with_message("a"))
        await store.update_task("t1", with_message("b"))
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True
        assert await subscription.wait(timeout=QUIET) is False


async def test_closed_subscription_is_not_woken_and_others_still_are(store: TaskStore) -> None:
    await store.insert_task(make_task("t1"))
    closed = store.changes.subscribe([task_key("t1")])
    closed.close()
    with store.changes.subscribe([task_key("t1")]) as open_one:
        await store.update_task("t1", with_message("x"))
        assert await open_one.wait(timeout=WAKE_TIMEOUT) is True
    assert await closed.wait(timeout=QUIET) is False


async def test_publish_wakes_subscribers_of_any_published_key(store: TaskStore) -> None:
    with store.changes.subscribe(["tool:echo", "worker:w1"]) as subscription:
        await store.changes.publish(["unrelated"])
        assert await subscription.wait(timeout=QUIET) is False
        await store.changes.publish(["worker:w1"])
        assert await subscription.wait(timeout=WAKE_TIMEOUT) is True


async def test_local_feed_wait_with_zero_timeout_reports_a_pending_wake() -> None:
    feed = LocalChangeFeed()
    with feed.subscribe(["k"]) as subscription:
        assert await subscription.wait(timeout=0) is False
        await feed.publish(["k"])
        assert await subscription.wait(timeout=0) is True
        assert await subscription.wait(timeout=0) is False


# ------------------------------------------------------------------------ SQLite only


async def test_sqlite_data_survives_close_and_reopen(sqlite_path: Path) -> None:
    first = SqliteTaskStore(sqlite_path)
    task = make_task("t1", tool_name="echo", dispatch=Dispatch.QUEUED)
    worker = make_worker("w1", "echo")
    await first.insert_task(task)
    updated = await first.update_task("t1", with_message("stored"))
    await first.insert_task(make_task("t2", created_at=2_000))
    await first.put_worker(worker)
    await first.close()

    second = open_store(f"sqlite:///{sqlite_path}")
    try:
        assert await second.get_task("t1") == updated
        assert ids(await second.list_tasks("alice", None, 10)) == ["t1", "t2"]
        assert ids(await second.queued_tasks(["echo"], 10)) == ["t1"]
        assert await second.get_worker("w1") == worker
    finally:
        await second.close()


async def test_sqlite_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tasks.db"
    store = SqliteTaskStore(path)
    try:
        await store.ping()
        assert path.exists()
    finally:
        await store.close()


async def test_sqlite_on_a_directory_raises_store_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(StoreUnavailable) as caught:
        open_store(f"sqlite:///{directory}")
    assert str(directory) in caught.value.message
    assert "cannot open SQLite store" in caught.value.message


async def test_sqlite_under_a_file_raises_store_unavailable(tmp_path: Path) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("not a directory")
    path = a_file / "tasks.db"
    with pytest.raises(StoreUnavailable) as caught:
        SqliteTaskStore(path)
    assert str(path) in caught.value.message
    assert "cannot open SQLite store" in caught.value.message
    assert "Traceback" not in caught.value.message
    assert "\n" not in caught.value.message


async def test_sqlite_on_a_file_that_is_not_a_database_raises_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database, just some text " * 100)
    with pytest.raises(StoreUnavailable) as caught:
        SqliteTaskStore(path)
    assert str(path) in caught.value.message


async def test_sqlite_written_by_a_newer_schema_raises_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=999")
    db.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteTaskStore(path)


async def test_sqlite_closed_store_raises_store_unavailable_everywhere(sqlite_path: Path) -> None:
    store = SqliteTaskStore(sqlite_path)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.insert_task(make_task("t1"))
    with pytest.raises(StoreUnavailable):
        await store.get_task("t1")
    with pytest.raises(StoreUnavailable):
        await store.update_task("t1", unchanged)
    with pytest.raises(StoreUnavailable):
        await store.list_tasks("alice", None, 10)
    with pytest.raises(StoreUnavailable):
        await store.delete_expired_tasks(0)
    with pytest.raises(StoreUnavailable):
        await store.queued_tasks(["echo"], 10)
    with pytest.raises(StoreUnavailable):
        await store.tasks_of_worker("w1")
    with pytest.raises(StoreUnavailable):
        await store.stale_offers(0)
    with pytest.raises(StoreUnavailable):
        await store.put_worker(make_worker("w1", "echo"))
    with pytest.raises(StoreUnavailable):
        await store.get_worker("w1")
    with pytest.raises(StoreUnavailable):
        await store.delete_worker("w1")
    with pytest.raises(StoreUnavailable):
        await store.list_workers()


# ------------------------------------------------------------------------- open_store


@pytest.mark.parametrize(
    "url",
    [
        "",
        "tasks.db",
        "/var/lib/tasks.db",
        "postgres://db/tasks",
        "sqlite://",
        "sqlite:///",
        "sqlite:tasks.db",
        "sqlite://host/tasks.db",
        "file:///tmp/tasks.db",
    ],
)
def test_open_store_refuses_bad_urls_naming_the_supported_forms(url: str) -> None:
    with pytest.raises(ValueError, match="memory://") as caught:
        open_store(url)
    message = str(caught.value)
    assert repr(url) in message
    assert "sqlite:///relative/path.db" in message
    assert "sqlite:////absolute/path.db" in message


async def test_open_store_memory_url() -> None:
    store = open_store("memory://")
    await store.ping()
    await store.insert_task(make_task("t1"))
    assert await store.get_task("t1") is not None
    await store.close()


async def test_open_store_sqlite_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel/tasks.db")
    assert isinstance(relative, SqliteTaskStore)
    await relative.close()
    assert (tmp_path / "rel" / "tasks.db").exists()

    absolute_path = tmp_path / "abs" / "tasks.db"
    absolute = open_store(f"sqlite:///{absolute_path}")
    assert isinstance(absolute, SqliteTaskStore)
    assert absolute.path == absolute_path
    await absolute.close()
    assert absolute_path.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"text": "é ü \u2028 \"quoted\" \\ back", "n": [1, -2, 3.5, 1e16, 0.1, None, True]},
        {"big": 2**70, "nested": {"list": [{"deep": ["x"]}]}},  # beyond orjson's 64 bits
        {"status": TaskStatus.WORKING, "keys": {1: "an int key"}},  # what json writes as str
        {},
    ],
)
def test_encode_json_writes_the_compact_json_that_json_dumps_writes(data: dict[str, object]) -> None:
    text = encode_json(data)
    assert text == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == json.loads(json.dumps(data))


def test_encode_json_may_spell_a_float_otherwise_but_reads_back_the_same_value() -> None:
    data = {"small": [1e-05, 1e-7, 2.5e-300], "large": 1.7976931348623157e308}
    assert json.loads(encode_json(data)) == data


def test_encode_json_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError):
        encode_json({"when": datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC)})
    with pytest.raises(TypeError):
        encode_json({"record": make_task("t1")})  # a dataclass: its to_json() is what is stored
