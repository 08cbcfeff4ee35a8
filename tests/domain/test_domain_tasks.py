"""TaskManager: task lifecycle, ids, ttl and expiry, listing, watch."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from taskservice.domain.errors import (
    DomainError,
    InvalidArgument,
    InvalidTransition,
    TaskCancelled,
    TaskExists,
    TaskNotFound,
)
from taskservice.domain.model import (
    LEGAL_TRANSITIONS,
    TERMINAL_STATUSES,
    TaskRecord,
    TaskStatus,
    can_transition,
)
from taskservice.domain.service import ServiceLimits, TaskManager, new_id
from taskservice.store import TaskStore

from .support import FakeClock, drain, next_of, settle

OWNER = "session-a"
ELICIT = "elicitation/create"


async def stored(store: TaskStore, task_id: str) -> TaskRecord:
    task = await store.get_task(task_id)
    assert task is not None
    return task


async def task_in(manager: TaskManager, status: TaskStatus) -> TaskRecord:
    """A fresh task driven into `status` through the manager."""
    task = await manager.create_task(OWNER)
    if status is TaskStatus.WORKING:
        return task
    if status is TaskStatus.INPUT_REQUIRED:
        task, _ = await manager.ask(task.task_id, ELICIT, {"message": "?"})
    elif status is TaskStatus.COMPLETED:
        task = await manager.complete(task.task_id, {"content": []})
    elif status is TaskStatus.FAILED:
        task = await manager.fail(task.task_id, "broken")
    else:
        task = await manager.cancel(OWNER, task.task_id)
    assert task.status is status
    return task


Action = Callable[[TaskManager, str], Awaitable[TaskRecord]]


async def do_update_status(manager: TaskManager, task_id: str) -> TaskRecord:
    return await manager.update_status(task_id, "still going")


async def do_ask(manager: TaskManager, task_id: str) -> TaskRecord:
    task, _ = await manager.ask(task_id, ELICIT, {"message": "again?"})
    return task


async def do_complete(manager: TaskManager, task_id: str) -> TaskRecord:
    return await manager.complete(task_id, {"content": [{"type": "text", "text": "done"}]})


async def do_fail(manager: TaskManager, task_id: str) -> TaskRecord:
    return await manager.fail(task_id, "it broke")


async def do_cancel(manager: TaskManager, task_id: str) -> TaskRecord:
    return await manager.cancel(OWNER, task_id)


# Each action and the status it moves a task to (None: the status it already has).
ACTIONS: dict[str, tuple[Action, TaskStatus | None]] = {
    "update_status": (do_update_status, None),
    "ask": (do_ask, TaskStatus.INPUT_REQUIRED),
    "complete": (do_complete, TaskStatus.COMPLETED),
    "fail": (do_fail, TaskStatus.FAILED),
    "cancel": (do_cancel, TaskStatus.CANCELLED),
}


# ------------------------------------------------------------------------ transitions


def test_legal_transitions_table() -> None:
    non_terminal = {TaskStatus.WORKING, TaskStatus.INPUT_REQUIRED}
    assert set(LEGAL_TRANSITIONS) == set(TaskStatus)
    assert frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}) == TERMINAL_STATUSES
    for current in TaskStatus:
        for new in TaskStatus:
            assert can_transition(current, new) is (current in non_terminal), (current, new)
        assert current.is_terminal is (current not in non_terminal)


@pytest.mark.parametrize("start", list(TaskStatus), ids=lambda s: s.value)
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_every_transition_is_allowed_or_refused_as_the_table_says(
    manager: TaskManager, store: TaskStore, clock: FakeClock, start: TaskStatus, action: str
) -> None:
    task = await task_in(manager, start)
    run, target = ACTIONS[action]
    wanted = target or start
    before = await stored(store, task.task_id)
    clock.advance(1_000)

    if can_transition(start, wanted):
        after = await run(manager, task.task_id)
        assert after.status is wanted
        assert after.last_updated_at == clock.now_ms
        assert await stored(store, task.task_id) == after
    else:
        expected: type[DomainError] = (
            TaskCancelled if (action == "ask" and start is TaskStatus.CANCELLED) else InvalidTransition
        )
        with pytest.raises(expected) as caught:
            await run(manager, task.task_id)
        assert task.task_id in caught.value.message
        # Nothing was written.
        assert await stored(store, task.task_id) == before


async def test_working_input_required_working_completed(manager: TaskManager, clock: FakeClock) -> None:
    task = await manager.create_task(OWNER)
    assert task.status is TaskStatus.WORKING

    clock.advance(10)
    task, request = await manager.ask(task.task_id, ELICIT, {"message": "name?"})
    assert task.status is TaskStatus.INPUT_REQUIRED

    clock.advance(10)
    task = await manager.answer(OWNER, task.task_id, request.request_id, result={"action": "accept"})
    assert task.status is TaskStatus.WORKING

    clock.advance(10)
    task = await manager.update_status(task.task_id, "almost there", notify=False)
    assert (task.status, task.status_message, task.notify) == (TaskStatus.WORKING, "almost there", False)

    clock.advance(10)
    result = {"content": [{"type": "text", "text": "hi"}], "isError": False}
    task = await manager.complete(task.task_id, result)
    assert task.status is TaskStatus.COMPLETED
    assert task.result == result
    assert task.last_updated_at == clock.now_ms
    assert await manager.task_result(OWNER, task.task_id) == task


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES), ids=lambda s: s.value)
async def test_a_terminal_task_never_changes(
    manager: TaskManager, store: TaskStore, clock: FakeClock, terminal: TaskStatus
) -> None:
    task = await task_in(manager, terminal)
    before = await stored(store, task.task_id)
    clock.advance(1_000)
    for run, _ in ACTIONS.values():
        with pytest.raises((InvalidTransition, TaskCancelled)):
            await run(manager, task.task_id)
    assert await stored(store, task.task_id) == before


@pytest.mark.parametrize("late", ["complete", "fail"])
async def test_complete_or_fail_on_a_cancelled_task_raises_and_changes_nothing(
    manager: TaskManager, store: TaskStore, clock: FakeClock, late: str
) -> None:
    task = await task_in(manager, TaskStatus.CANCELLED)
    before = await stored(store, task.task_id)
    clock.advance(5_000)
    with pytest.raises(InvalidTransition) as caught:
        await ACTIONS[late][0](manager, task.task_id)
    assert caught.value.current == "cancelled"
    assert "cancelled task ignores late results" in caught.value.message
    after = await stored(store, task.task_id)
    assert after == before
    assert after.status is TaskStatus.CANCELLED
    assert after.result is None


async def test_update_status_on_a_terminal_task_raises(manager: TaskManager, store: TaskStore) -> None:
    task = await task_in(manager, TaskStatus.COMPLETED)
    before = await stored(store, task.task_id)
    with pytest.raises(InvalidTransition, match="status is final"):
        await manager.update_status(task.task_id, "one more thing")
    assert await stored(store, task.task_id) == before


async def test_changes_to_an_unknown_task_raise_task_not_found(manager: TaskManager) -> None:
    with pytest.raises(TaskNotFound):
        await manager.update_status("ghost", "x")
    with pytest.raises(TaskNotFound):
        await manager.complete("ghost", {"content": []})
    with pytest.raises(TaskNotFound):
        await manager.fail("ghost", "x")
    with pytest.raises(TaskNotFound):
        await manager.cancel(OWNER, "ghost")


async def test_another_owner_cannot_see_or_cancel_a_task(manager: TaskManager, store: TaskStore) -> None:
    task = await manager.create_task(OWNER)
    with pytest.raises(TaskNotFound):
        await manager.lookup_task("intruder", task.task_id)
    with pytest.raises(TaskNotFound):
        await manager.cancel("intruder", task.task_id)
    assert (await stored(store, task.task_id)).status is TaskStatus.WORKING
    assert await manager.lookup_task(OWNER, task.task_id) == task


async def test_task_result_of_an_unfinished_task_is_refused(manager: TaskManager) -> None:
    task = await manager.create_task(OWNER)
    with pytest.raises(InvalidTransition, match="has not finished"):
        await manager.task_result(OWNER, task.task_id)


async def test_cancel_records_the_reason(manager: TaskManager) -> None:
    task = await manager.create_task(OWNER)
    cancelled = await manager.cancel(OWNER, task.task_id, "user pressed stop")
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.status_message == "user pressed stop"
    assert cancelled.notify is True


# -------------------------------------------------------------------------------- ids

URLSAFE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,}$")


async def test_task_ids_are_long_random_urlsafe_tokens(manager: TaskManager) -> None:
    tasks = [await manager.create_task(OWNER) for _ in range(50)]
    task_ids = [t.task_id for t in tasks]
    assert all(URLSAFE_TOKEN.match(task_id) for task_id in task_ids), task_ids
    assert len(set(task_ids)) == len(task_ids)
    # Not sequential or time-based: ids made in the same millisecond share no long prefix.
    assert len({task_id[:4] for task_id in task_ids}) > 40


def test_new_id_has_at_least_128_bits() -> None:
    made = {new_id() for _ in range(1_000)}
    assert len(made) == 1_000
    assert all(URLSAFE_TOKEN.match(i) for i in made)
    # 22 urlsafe base64 characters carry 132 bits; 16 random bytes fill 128 of them.
    assert {len(i) for i in made} == {22}
    assert len({c for i in made for c in i}) == 64


async def test_request_worker_and_lease_ids_are_unguessable_too(manager: TaskManager) -> None:
    task = await manager.create_task(OWNER)
    _, first = await manager.ask(task.task_id, ELICIT, {"message": "a"})
    _, second = await manager.ask(task.task_id, ELICIT, {"message": "b"})
    worker = await manager.register_worker([])
    for made in (first.request_id, second.request_id, worker.worker_id):
        assert URLSAFE_TOKEN.match(made)
    assert first.request_id != second.request_id


# -------------------------------------------------------------------------------- ttl


async def test_default_ttl_and_poll_interval_are_applied(manager: TaskManager, limits: ServiceLimits) -> None:
    task = await manager.create_task(OWNER)
    assert task.ttl_ms == limits.default_ttl_ms
    assert task.poll_interval_ms == limits.poll_interval_ms


async def test_requested_ttl_is_kept_when_allowed(manager: TaskManager) -> None:
    assert (await manager.create_task(OWNER, ttl_ms=1_234)).ttl_ms == 1_234


async def test_requested_ttl_is_capped_at_max_ttl(manager: TaskManager, limits: ServiceLimits) -> None:
    task = await manager.create_task(OWNER, ttl_ms=limits.max_ttl_ms * 10)
    assert task.ttl_ms == limits.max_ttl_ms


@pytest.mark.parametrize("ttl_ms", [0, -1, -60_000])
async def test_non_positive_ttl_is_invalid(manager: TaskManager, store: TaskStore, ttl_ms: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await manager.create_task(OWNER, ttl_ms=ttl_ms)
    assert caught.value.field == "ttl_ms"
    assert await store.list_tasks(OWNER, None, 10) == []


async def test_a_task_expires_and_sweep_removes_it(
    manager: TaskManager, store: TaskStore, clock: FakeClock
) -> None:
    short = await manager.create_task(OWNER, ttl_ms=10_000)
    long = await manager.create_task(OWNER, ttl_ms=100_000)

    clock.advance(9_999)
    assert await manager.get_task(short.task_id) == short
    await manager.sweep()
    assert await store.get_task(short.task_id) is not None

    clock.advance(1)  # created_at + ttl: expired
    # Expired tasks are gone for readers at once, before any sweep.
    with pytest.raises(TaskNotFound):
        await manager.get_task(short.task_id)
    with pytest.raises(TaskNotFound):
        await manager.lookup_task(OWNER, short.task_id)
    tasks, _ = await manager.list_tasks(OWNER)
    assert [t.task_id for t in tasks] == [long.task_id]
    assert await store.get_task(short.task_id) is not None

    await manager.sweep()
    assert await store.get_task(short.task_id) is None
    assert await store.get_task(long.task_id) is not None
    with pytest.raises(TaskNotFound):
        await manager.get_task(short.task_id)


async def test_an_id_of_an_expired_task_not_yet_swept_is_free_again(
    manager: TaskManager, store: TaskStore, clock: FakeClock
) -> None:
    await manager.create_task(OWNER, task_id="mine", ttl_ms=10_000)
    with pytest.raises(TaskExists):
        await manager.create_task(OWNER, task_id="mine")
    clock.advance(10_000)
    again = await manager.create_task("someone-else", task_id="mine")
    assert await manager.get_task("mine") == again
    assert await stored(store, "mine") == again


# ---------------------------------------------------------------------------- listing


async def test_list_tasks_pages_with_tokens(manager: TaskManager, clock: FakeClock) -> None:
    created: list[TaskRecord] = []
    for n in range(7):
        created.append(await manager.create_task(OWNER))
        if n % 3 == 2:  # several tasks per millisecond: the pages split ties
            clock.advance(1)
    await manager.create_task("someone-else")
    expected = [t.task_id for t in sorted(created, key=lambda t: (t.created_at, t.task_id))]

    seen: list[str] = []
    token = ""
    sizes: list[int] = []
    for _ in range(10):
        page, token = await manager.list_tasks(OWNER, token, 2)
        sizes.append(len(page))
        seen.extend(t.task_id for t in page)
        if not token:
            break
    assert seen == expected
    assert sizes == [2, 2, 2, 1]


async def test_list_tasks_default_and_maximum_page_size(manager: TaskManager, limits: ServiceLimits) -> None:
    for _ in range(limits.max_page_size + 2):
        await manager.create_task(OWNER)
    page, token = await manager.list_tasks(OWNER)
    assert len(page) == limits.default_page_size
    assert token
    page, token = await manager.list_tasks(OWNER, "", 1_000)
    assert len(page) == limits.max_page_size
    assert token


async def test_list_tasks_last_page_has_no_token(manager: TaskManager) -> None:
    for _ in range(2):
        await manager.create_task(OWNER)
    page, token = await manager.list_tasks(OWNER, "", 2)
    assert len(page) == 2
    assert token == ""
    assert await manager.list_tasks("nobody") == ([], "")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "bm90IGpzb24",
        "WzEsMiwzXQ",
        "eyJhIjoxfQ",
        "WyJ4IiwieSJd",
        "é",
        "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAsICJ4Il0",  # [10**30, "x"]: past 64 bits
        "Wy0xLCAieCJd",  # [-1, "x"]
        "W3RydWUsICJ4Il0",  # [true, "x"]
    ],
)
async def test_list_tasks_refuses_an_invalid_page_token(manager: TaskManager, token: str) -> None:
    await manager.create_task(OWNER)
    with pytest.raises(InvalidArgument) as caught:
        await manager.list_tasks(OWNER, token)
    assert caught.value.field == "page_token"


async def test_list_tasks_refuses_a_negative_page_size(manager: TaskManager) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await manager.list_tasks(OWNER, "", -1)
    assert caught.value.field == "page_size"


# ------------------------------------------------------------------------------ watch


async def test_watch_yields_current_state_then_changes_and_ends_at_terminal(
    manager: TaskManager, clock: FakeClock
) -> None:
    task = await manager.create_task(OWNER)
    stream = manager.watch(task.task_id)
    first = await next_of(stream)
    assert first == task

    pending = asyncio.ensure_future(next_of(stream))
    await settle()
    assert not pending.done()  # nothing changed yet: watch waits

    clock.advance(10)
    await manager.update_status(task.task_id, "step 1")
    second = await pending
    assert (second.status, second.status_message) == (TaskStatus.WORKING, "step 1")

    clock.advance(10)
    await manager.ask(task.task_id, ELICIT, {"message": "?"})
    assert (await next_of(stream)).status is TaskStatus.INPUT_REQUIRED

    clock.advance(10)
    await manager.cancel(OWNER, task.task_id)
    last = await next_of(stream)
    assert last.status is TaskStatus.CANCELLED
    assert await drain(stream) == []


async def test_watch_of_a_finished_task_yields_it_once_and_ends(manager: TaskManager) -> None:
    task = await task_in(manager, TaskStatus.FAILED)
    assert await drain(manager.watch(task.task_id)) == [task]


async def test_watch_of_an_unknown_task_raises(manager: TaskManager) -> None:
    with pytest.raises(TaskNotFound):
        await next_of(manager.watch("ghost"))
