"""TaskManager: workers, assignments with leases, acks, heartbeats, and losing a worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import pytest

from taskservice.domain.errors import (
    InvalidArgument,
    InvalidTransition,
    LeaseNotHeld,
    RequestWithdrawn,
    TaskNotFound,
    ToolNotServed,
    WorkerNotFound,
)
from taskservice.domain.model import (
    ClientRequest,
    Dispatch,
    RequestState,
    TaskRecord,
    TaskStatus,
    ToolSpec,
    WorkerRecord,
)
from taskservice.domain.service import (
    RequestQueued,
    RequestWithdrawal,
    ServiceLimits,
    TaskEvent,
    TaskFinished,
    TaskManager,
)
from taskservice.store import TaskStore

from .support import TIMEOUT, FakeClock, closing, next_of, settle

OWNER = "session-a"
WORK = ToolSpec(name="work", description="not safe to run twice")
SAFE = ToolSpec(name="safe", description="idempotent", retry_safe=True)


async def stored(store: TaskStore, task_id: str) -> TaskRecord:
    task = await store.get_task(task_id)
    assert task is not None
    return task


async def take(stream: AsyncIterator[TaskRecord], count: int) -> list[TaskRecord]:
    return [await next_of(stream) for _ in range(count)]


async def stays_quiet(stream: AsyncIterator[TaskRecord]) -> asyncio.Future[TaskRecord]:
    """Ask the stream for its next item and check it does not come yet; the caller awaits it later."""
    pending = asyncio.ensure_future(next_of(stream))
    await settle()
    assert not pending.done(), "the stream offered a task it should not have"
    return pending


async def cancel(pending: asyncio.Future[TaskRecord]) -> None:
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending


# ----------------------------------------------------------------------------- registry


async def test_register_worker_publishes_its_tools(
    manager: TaskManager, clock: FakeClock, limits: ServiceLimits
) -> None:
    worker = await manager.register_worker([WORK, SAFE], name="alpha", max_concurrent_tasks=4)
    assert worker.lease_expires_at == clock.now_ms + limits.lease_ttl_ms
    assert worker.max_concurrent_tasks == 4
    assert await manager.tools() == {"work": WORK, "safe": SAFE}


async def test_register_worker_with_its_own_id_and_default_concurrency(manager: TaskManager) -> None:
    worker = await manager.register_worker([WORK], worker_id="worker-1", max_concurrent_tasks=0)
    assert worker.worker_id == "worker-1"
    assert worker.max_concurrent_tasks == 1


@pytest.mark.parametrize(
    ("tools", "kwargs", "field"),
    [
        ([ToolSpec(name="")], {}, "tools[0].name"),
        ([WORK, WORK], {}, "tools[0].name"),
        ([WORK], {"worker_id": "bad id"}, "worker_id"),
        ([WORK], {"max_concurrent_tasks": -1}, "max_concurrent_tasks"),
    ],
)
async def test_register_worker_refuses_bad_declarations(
    manager: TaskManager, tools: list[ToolSpec], kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await manager.register_worker(tools, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert await manager.tools() == {}


async def test_create_task_with_an_unknown_tool_raises_tool_not_served(
    manager: TaskManager, store: TaskStore
) -> None:
    await manager.register_worker([WORK])
    with pytest.raises(ToolNotServed) as caught:
        await manager.create_task(OWNER, "nobody-serves-this", {})
    assert caught.value.tool_name == "nobody-serves-this"
    assert await store.list_tasks(OWNER, None, 10) == []


async def test_a_tool_of_a_worker_whose_lease_ran_out_is_not_served(
    manager: TaskManager, clock: FakeClock, limits: ServiceLimits
) -> None:
    await manager.register_worker([WORK])
    clock.advance(limits.lease_ttl_ms)
    assert await manager.tools() == {}
    with pytest.raises(ToolNotServed):
        await manager.create_task(OWNER, "work", {})


async def test_create_task_for_a_served_tool_queues_it(manager: TaskManager) -> None:
    await manager.register_worker([WORK, SAFE])
    task = await manager.create_task(OWNER, "work", {"n": 1})
    assert (task.dispatch, task.tool_name, task.arguments, task.retry_safe) == (
        Dispatch.QUEUED,
        "work",
        {"n": 1},
        False,
    )
    assert (await manager.create_task(OWNER, "safe")).retry_safe is True
    assert (await manager.create_task(OWNER)).dispatch is Dispatch.DONE


# -------------------------------------------------------------------------- assignments


async def test_assignments_offer_queued_tasks_within_max_concurrent_tasks(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    worker = await manager.register_worker([WORK], max_concurrent_tasks=2)
    tasks = []
    for _ in range(3):
        tasks.append(await manager.create_task(OWNER, "work"))
        clock.advance(1)

    async with closing(manager.assignments(worker.worker_id)) as stream:
        offered = await take(stream, 2)
        assert [t.task_id for t in offered] == [t.task_id for t in tasks[:2]]  # oldest first
        for task in offered:
            assert task.dispatch is Dispatch.OFFERED
            assert task.worker_id == worker.worker_id
            assert task.lease_id
            assert task.lease_expires_at == clock.now_ms + limits.lease_ttl_ms
            assert task.attempts == 1
            assert await stored(store, task.task_id) == task
        assert (await stored(store, tasks[2].task_id)).dispatch is Dispatch.QUEUED

        pending = await stays_quiet(stream)  # no room for the third task
        await manager.ack(worker.worker_id, offered[0].task_id, offered[0].lease_id)
        await settle()
        assert not pending.done()  # acknowledging does not free room

        await manager.complete(offered[0].task_id, {"content": []})
        third = await asyncio.wait_for(pending, TIMEOUT)
        assert third.task_id == tasks[2].task_id


async def test_assignments_wake_when_a_task_is_created(manager: TaskManager) -> None:
    worker = await manager.register_worker([WORK])
    async with closing(manager.assignments(worker.worker_id)) as stream:
        pending = await stays_quiet(stream)
        task = await manager.create_task(OWNER, "work")
        assert (await asyncio.wait_for(pending, TIMEOUT)).task_id == task.task_id


async def test_assignments_only_offer_the_workers_tools(manager: TaskManager, store: TaskStore) -> None:
    await manager.register_worker([SAFE])
    worker = await manager.register_worker([WORK], max_concurrent_tasks=5)
    safe_task = await manager.create_task(OWNER, "safe")
    work_task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        assert (await next_of(stream)).task_id == work_task.task_id
        await cancel(await stays_quiet(stream))
    assert (await stored(store, safe_task.task_id)).dispatch is Dispatch.QUEUED


async def test_assignments_follow_a_worker_registered_again_with_other_tools(manager: TaskManager) -> None:
    """The stream listens for the worker's tools as they are now, not as they were when it opened:
    a task of a tool the worker took on later wakes it."""
    worker = await manager.register_worker([WORK], worker_id="w1")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        pending = await stays_quiet(stream)
        await manager.register_worker([WORK, SAFE], worker_id="w1")
        await settle()  # the stream has seen the new tools and waits again
        assert not pending.done()
        task = await manager.create_task(OWNER, "safe")
        assert (await asyncio.wait_for(pending, TIMEOUT)).task_id == task.task_id


def count_offer_reads(manager: TaskManager, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times an assignment stream read the worker and the queue: `[count]`."""
    reads = [0]
    offers = manager._offers

    async def counted(worker_id: str, sent: set[str]) -> tuple[WorkerRecord, list[TaskRecord], bool]:
        reads[0] += 1
        return await offers(worker_id, sent)

    monkeypatch.setattr(manager, "_offers", counted)
    return reads


async def test_a_task_that_ends_wakes_the_stream_only_of_a_full_worker(
    manager: TaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker with room took the whole queue: its task's end (the usual case) gives it nothing
    more to take, so the stream does not read the store for it."""
    reads = count_offer_reads(manager, monkeypatch)
    worker = await manager.register_worker([WORK], max_concurrent_tasks=2)
    task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        assert (await next_of(stream)).task_id == task.task_id
        pending = await stays_quiet(stream)
        before = reads[0]
        await manager.complete(task.task_id, {"content": []})
        await settle()
        assert reads[0] == before
        created = await manager.create_task(OWNER, "work")  # a task queued still wakes it
        assert (await asyncio.wait_for(pending, TIMEOUT)).task_id == created.task_id


async def test_a_worker_full_then_with_room_again_takes_what_comes(
    manager: TaskManager, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full, the stream listens for room made; with room again (the queue drained), for tasks
    queued; each change of mind reads the store once more, so nothing slips between."""
    reads = count_offer_reads(manager, monkeypatch)
    worker = await manager.register_worker([WORK], max_concurrent_tasks=1)
    first = await manager.create_task(OWNER, "work")
    clock.advance(1)
    second = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        assert (await next_of(stream)).task_id == first.task_id  # full now
        pending = await stays_quiet(stream)
        await manager.complete(first.task_id, {"content": []})  # room made: the second comes
        assert (await asyncio.wait_for(pending, TIMEOUT)).task_id == second.task_id
        pending = await stays_quiet(stream)
        await manager.fail(second.task_id, "no")  # room made, and nothing queued: room again
        await settle()
        assert not pending.done()
        before = reads[0]
        third = await manager.create_task(OWNER, "work")
        assert (await asyncio.wait_for(pending, TIMEOUT)).task_id == third.task_id
        assert reads[0] == before + 1


async def test_assignments_of_an_unknown_worker_raise_worker_not_found(manager: TaskManager) -> None:
    with pytest.raises(WorkerNotFound):
        await next_of(manager.assignments("ghost"))


async def test_ack_runs_the_task_and_checks_the_lease(manager: TaskManager, store: TaskStore) -> None:
    worker = await manager.register_worker([WORK])
    other = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        offered = await next_of(stream)

    with pytest.raises(LeaseNotHeld):
        await manager.ack(worker.worker_id, task.task_id, "not-the-lease")
    with pytest.raises(LeaseNotHeld):
        await manager.ack(other.worker_id, task.task_id, offered.lease_id)
    assert (await stored(store, task.task_id)).dispatch is Dispatch.OFFERED

    running = await manager.ack(worker.worker_id, task.task_id, offered.lease_id)
    assert running.dispatch is Dispatch.RUNNING
    assert await manager.ack(worker.worker_id, task.task_id, offered.lease_id) == running  # idempotent
    assert await stored(store, task.task_id) == running


async def test_ack_of_a_cancelled_task_is_refused(manager: TaskManager) -> None:
    worker = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        offered = await next_of(stream)
    await manager.cancel(OWNER, task.task_id)
    with pytest.raises(InvalidTransition):
        await manager.ack(worker.worker_id, task.task_id, offered.lease_id)


async def test_release_requeues_the_task_for_another_worker(manager: TaskManager, store: TaskStore) -> None:
    first = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(first.worker_id)) as stream:
        offered = await next_of(stream)
    await manager.ack(first.worker_id, task.task_id, offered.lease_id)

    released = await manager.release(first.worker_id, task.task_id, offered.lease_id)
    assert (released.dispatch, released.worker_id, released.lease_id) == (Dispatch.QUEUED, "", "")
    assert await stored(store, task.task_id) == released
    with pytest.raises(LeaseNotHeld):  # the old lease is gone
        await manager.ack(first.worker_id, task.task_id, offered.lease_id)

    second = await manager.register_worker([WORK])
    async with closing(manager.assignments(second.worker_id)) as stream:
        again = await next_of(stream)
    assert again.task_id == task.task_id
    assert again.worker_id == second.worker_id
    assert again.lease_id != offered.lease_id
    assert again.attempts == 2


async def test_unacknowledged_offers_come_again_on_a_new_stream(manager: TaskManager) -> None:
    worker = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        offered = await next_of(stream)
    async with closing(manager.assignments(worker.worker_id)) as stream:
        again = await next_of(stream)
        assert again == offered
        await cancel(await stays_quiet(stream))  # and only once per stream
    assert again.task_id == task.task_id


async def test_two_workers_never_get_the_same_task(
    manager: TaskManager, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both workers read the same queued tasks before either claims one: the claim decides."""
    read_queue = store.queued_tasks

    async def read_then_yield(tool_names: Iterable[str], limit: int) -> list[TaskRecord]:
        found = await read_queue(tool_names, limit)
        await asyncio.sleep(0)  # let the other worker read the same candidates
        return found

    monkeypatch.setattr(store, "queued_tasks", read_then_yield)
    workers = [await manager.register_worker([WORK], max_concurrent_tasks=3) for _ in range(2)]
    created = {(await manager.create_task(OWNER, "work")).task_id for _ in range(6)}

    async with (
        closing(manager.assignments(workers[0].worker_id)) as one,
        closing(manager.assignments(workers[1].worker_id)) as two,
    ):
        got = await asyncio.wait_for(asyncio.gather(take(one, 3), take(two, 3)), TIMEOUT)
    first, second = ({t.task_id for t in tasks} for tasks in got)
    assert first.isdisjoint(second)
    assert first | second == created
    for worker, tasks in zip(workers, got, strict=True):
        for task in tasks:
            assert (await stored(store, task.task_id)).worker_id == worker.worker_id


# ------------------------------------------------------------------ leases and heartbeats


async def run_on(manager: TaskManager, worker_id: str, count: int) -> list[TaskRecord]:
    """Take `count` offers on a short-lived stream and acknowledge them."""
    async with closing(manager.assignments(worker_id)) as stream:
        offered = await take(stream, count)
    return [await manager.ack(worker_id, t.task_id, t.lease_id) for t in offered]


async def test_a_lost_worker_fails_its_unsafe_task_and_requeues_its_safe_one(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    lost = await manager.register_worker([WORK, SAFE], name="alpha", max_concurrent_tasks=2)
    unsafe = await manager.create_task(OWNER, "work")
    safe = await manager.create_task(OWNER, "safe")
    assert {t.dispatch for t in await run_on(manager, lost.worker_id, 2)} == {Dispatch.RUNNING}

    clock.advance(limits.lease_ttl_ms + 1)
    await manager.sweep()

    failed = await stored(store, unsafe.task_id)
    assert failed.status is TaskStatus.FAILED
    assert failed.dispatch is Dispatch.DONE
    assert failed.notify is True
    assert "'alpha'" in failed.status_message
    assert "lost" in failed.status_message
    assert "heartbeat" in failed.status_message

    requeued = await stored(store, safe.task_id)
    assert requeued.status is TaskStatus.WORKING
    assert (requeued.dispatch, requeued.worker_id, requeued.lease_id) == (Dispatch.QUEUED, "", "")

    assert await store.get_worker(lost.worker_id) is None
    with pytest.raises(WorkerNotFound):
        await manager.heartbeat(lost.worker_id)

    rescuer = await manager.register_worker([SAFE], name="beta")
    [rerun] = await run_on(manager, rescuer.worker_id, 1)
    assert rerun.task_id == safe.task_id
    assert rerun.worker_id == rescuer.worker_id
    assert rerun.attempts == 2


async def test_an_unacknowledged_offer_is_requeued_after_its_lease(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    worker = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        await next_of(stream)

    clock.advance(limits.lease_ttl_ms // 2)
    await manager.heartbeat(worker.worker_id)  # the worker lives on, it just never acks
    clock.advance(limits.lease_ttl_ms // 2 - 1)
    await manager.sweep()
    assert (await stored(store, task.task_id)).dispatch is Dispatch.OFFERED  # lease not over yet

    clock.advance(1)
    await manager.sweep()
    requeued = await stored(store, task.task_id)
    # Never acknowledged means never started: queued again, not failed, even though not retry-safe.
    assert requeued.status is TaskStatus.WORKING
    assert (requeued.dispatch, requeued.worker_id) == (Dispatch.QUEUED, "")
    assert await store.get_worker(worker.worker_id) is not None

    other = await manager.register_worker([WORK])
    [rerun] = await run_on(manager, other.worker_id, 1)
    assert rerun.task_id == task.task_id


async def test_heartbeat_renews_the_workers_lease(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    worker = await manager.register_worker([WORK])
    await manager.create_task(OWNER, "work", ttl_ms=limits.max_ttl_ms)
    [running] = await run_on(manager, worker.worker_id, 1)

    for _ in range(3):
        clock.advance(limits.lease_ttl_ms - 1)
        renewed, stop = await manager.heartbeat(worker.worker_id, [running.task_id])
        assert renewed.lease_expires_at == clock.now_ms + limits.lease_ttl_ms
        assert stop == []
        await manager.sweep()
    assert await store.get_worker(worker.worker_id) == renewed
    still = await stored(store, running.task_id)
    assert (still.status, still.dispatch) == (TaskStatus.WORKING, Dispatch.RUNNING)


async def test_heartbeat_says_which_passed_tasks_to_stop(manager: TaskManager) -> None:
    worker = await manager.register_worker([WORK], max_concurrent_tasks=3)
    other = await manager.register_worker([WORK])
    for _ in range(3):
        await manager.create_task(OWNER, "work")
    keep, cancelled, completed = await run_on(manager, worker.worker_id, 3)
    await manager.create_task(OWNER, "work")
    [not_mine] = await run_on(manager, other.worker_id, 1)
    await manager.cancel(OWNER, cancelled.task_id)
    await manager.complete(completed.task_id, {"content": []})

    passed = [keep.task_id, cancelled.task_id, completed.task_id, not_mine.task_id, "unknown"]
    _, stop = await manager.heartbeat(worker.worker_id, passed)
    assert stop == passed[1:]


async def test_heartbeat_of_an_unknown_worker_raises(manager: TaskManager) -> None:
    with pytest.raises(WorkerNotFound):
        await manager.heartbeat("ghost")


async def test_cancelling_a_running_task_frees_room_for_the_next(
    manager: TaskManager, clock: FakeClock
) -> None:
    worker = await manager.register_worker([WORK])
    first = await manager.create_task(OWNER, "work")
    clock.advance(1)
    second = await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        offered = await next_of(stream)
        assert offered.task_id == first.task_id
        await manager.ack(worker.worker_id, offered.task_id, offered.lease_id)
        pending = await stays_quiet(stream)
        await manager.cancel(OWNER, first.task_id)
        assert (await asyncio.wait_for(pending, TIMEOUT)).task_id == second.task_id


async def test_unregister_worker_hands_back_its_tasks(manager: TaskManager, store: TaskStore) -> None:
    worker = await manager.register_worker([WORK, SAFE], name="alpha", max_concurrent_tasks=2)
    unsafe = await manager.create_task(OWNER, "work")
    safe = await manager.create_task(OWNER, "safe")
    await run_on(manager, worker.worker_id, 2)

    await manager.unregister_worker(worker.worker_id)
    assert await store.get_worker(worker.worker_id) is None
    assert await manager.tools() == {}
    with pytest.raises(ToolNotServed):
        await manager.create_task(OWNER, "work")

    failed = await stored(store, unsafe.task_id)
    assert failed.status is TaskStatus.FAILED
    assert "'alpha'" in failed.status_message
    assert "withdrew" in failed.status_message
    assert (await stored(store, safe.task_id)).dispatch is Dispatch.QUEUED

    with pytest.raises(WorkerNotFound):
        await manager.unregister_worker(worker.worker_id)


async def test_the_assignment_stream_of_a_worker_that_withdrew_ends(manager: TaskManager) -> None:
    worker = await manager.register_worker([WORK])
    await manager.create_task(OWNER, "work")
    async with closing(manager.assignments(worker.worker_id)) as stream:
        await next_of(stream)  # the stream is past its start: now it waits for room
        pending = await stays_quiet(stream)
        await manager.unregister_worker(worker.worker_id)
        # The stream ends cleanly; a reconnect would be told NOT_FOUND.
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, TIMEOUT)


async def test_the_assignment_stream_of_a_lost_worker_ends(
    manager: TaskManager, clock: FakeClock, limits: ServiceLimits
) -> None:
    worker = await manager.register_worker([WORK])
    await manager.create_task(OWNER, "work", ttl_ms=limits.max_ttl_ms)
    async with closing(manager.assignments(worker.worker_id)) as stream:
        await next_of(stream)  # the stream is past its start: now it waits for room
        pending = await stays_quiet(stream)
        clock.advance(limits.lease_ttl_ms)
        await manager.sweep()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, TIMEOUT)
    with pytest.raises(WorkerNotFound):
        await anext(aiter(manager.assignments(worker.worker_id)))


async def test_a_task_that_expires_while_queued_is_never_offered(
    manager: TaskManager, store: TaskStore, clock: FakeClock
) -> None:
    worker = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work", ttl_ms=1_000)
    clock.advance(1_000)
    await manager.heartbeat(worker.worker_id)
    await manager.sweep()
    assert await store.get_task(task.task_id) is None
    with pytest.raises(TaskNotFound):
        await manager.get_task(task.task_id)
    async with closing(manager.assignments(worker.worker_id)) as stream:
        await cancel(await stays_quiet(stream))


async def test_a_restart_does_not_count_its_downtime_against_leases(
    store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    before = TaskManager(store, limits, clock=clock)
    worker = await before.register_worker([WORK])
    task = await before.create_task(OWNER, "work", ttl_ms=limits.max_ttl_ms)
    async with closing(before.assignments(worker.worker_id)) as stream:
        offered = await next_of(stream)
    await before.ack(worker.worker_id, offered.task_id, offered.lease_id)

    clock.advance(3 * limits.lease_ttl_ms)  # the service was down longer than a lease
    after = TaskManager(store, limits, clock=clock)
    await after.sweep()
    assert (await stored(store, task.task_id)).status is TaskStatus.WORKING
    await after.heartbeat(worker.worker_id)  # the worker reconnects within a lease of the restart

    clock.advance(limits.lease_ttl_ms)  # ...and then goes silent for a whole lease
    await after.sweep()
    assert (await stored(store, task.task_id)).status is TaskStatus.FAILED


async def test_a_lost_workers_late_changes_under_its_lease_are_refused(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    """The lost worker's tool was still running: its status changes and its outcome name its
    lease, which the re-queued task no longer has; the new holder's go through."""
    lost = await manager.register_worker([SAFE], name="alpha")
    task = await manager.create_task(OWNER, "safe")
    [old] = await run_on(manager, lost.worker_id, 1)
    await manager.update_status(task.task_id, "under the first lease", lease_id=old.lease_id)

    clock.advance(limits.lease_ttl_ms + 1)
    await manager.sweep()
    with pytest.raises(LeaseNotHeld, match="went back to the queue"):
        await manager.complete(task.task_id, {"content": []}, lease_id=old.lease_id)

    rescuer = await manager.register_worker([SAFE], name="beta")
    [new] = await run_on(manager, rescuer.worker_id, 1)
    for late in (
        manager.update_status(task.task_id, "late", lease_id=old.lease_id),
        manager.complete(
            task.task_id, {"content": [{"type": "text", "text": "late"}]}, lease_id=old.lease_id
        ),
        manager.fail(task.task_id, "late", lease_id=old.lease_id),
    ):
        with pytest.raises(LeaseNotHeld, match="went to another worker"):
            await late
    held = await stored(store, task.task_id)
    assert (held.status, held.status_message, held.lease_id) == (
        TaskStatus.WORKING,
        "under the first lease",
        new.lease_id,
    )

    await manager.update_status(task.task_id, "under the second lease", lease_id=new.lease_id)
    done = await manager.complete(
        task.task_id, {"content": [{"type": "text", "text": "ok"}]}, lease_id=new.lease_id
    )
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"content": [{"type": "text", "text": "ok"}]}
    with pytest.raises(InvalidTransition):  # its own retried Complete: the status is final
        await manager.complete(task.task_id, {"content": []}, lease_id=new.lease_id)


async def test_a_change_without_a_lease_goes_by_task_id_as_before(manager: TaskManager) -> None:
    """The SDK's TaskStore and a task's creator running the work itself name no lease."""
    task = await manager.create_task(OWNER)
    await manager.update_status(task.task_id, "by id")
    assert (await manager.complete(task.task_id, {"content": []})).status is TaskStatus.COMPLETED


ELICIT = "elicitation/create"


async def test_a_lost_workers_question_is_withdrawn_and_the_next_run_asks_its_own(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    """The lost worker waited for the client's answer: its wait ends with LeaseNotHeld, its
    question is withdrawn (no client is asked it again, an answer to it is refused) and the
    re-queued task is working; the new run's question is the only one the client sees."""
    lost = await manager.register_worker([SAFE], name="alpha")
    task = await manager.create_task(OWNER, "safe")
    [old] = await run_on(manager, lost.worker_id, 1)
    asked, question = await manager.ask(
        task.task_id, ELICIT, {"message": "first run?"}, lease_id=old.lease_id
    )
    assert asked.status is TaskStatus.INPUT_REQUIRED
    waiting = asyncio.create_task(
        manager.wait_for_answer(task.task_id, question.request_id, lease_id=old.lease_id)
    )
    await settle()
    assert not waiting.done()

    clock.advance(limits.lease_ttl_ms + 1)
    await manager.sweep()
    with pytest.raises(LeaseNotHeld, match="went back to the queue"):
        await asyncio.wait_for(waiting, TIMEOUT)
    queued = await stored(store, task.task_id)
    assert (queued.status, queued.dispatch, queued.pending_requests) == (
        TaskStatus.WORKING,
        Dispatch.QUEUED,
        (),
    )
    assert [r.state for r in queued.requests] == [RequestState.WITHDRAWN]
    with pytest.raises(RequestWithdrawn, match="withdrawn unanswered"):
        await manager.answer(OWNER, task.task_id, question.request_id, result={"action": "decline"})
    with pytest.raises(LeaseNotHeld):  # the lost worker asks again, under its lease
        await manager.ask(task.task_id, ELICIT, {"message": "?"}, lease_id=old.lease_id)
    with pytest.raises(RequestWithdrawn):  # or re-attaches to its question by id alone
        await manager.ask(task.task_id, ELICIT, {}, question.request_id)
    with pytest.raises(RequestWithdrawn):
        await manager.wait_for_answer(task.task_id, question.request_id)

    rescuer = await manager.register_worker([SAFE], name="beta")
    [new] = await run_on(manager, rescuer.worker_id, 1)
    _, second = await manager.ask(task.task_id, ELICIT, {"message": "second run?"}, lease_id=new.lease_id)
    async with closing(manager.events(OWNER, task.task_id, changes=False)) as events:
        event = await next_of(events)
    assert isinstance(event, RequestQueued)
    assert event.request.request_id == second.request_id
    answered = await manager.answer(OWNER, task.task_id, second.request_id, result={"action": "accept"})
    assert answered.status is TaskStatus.WORKING  # the withdrawn question keeps nothing waiting
    _, reply = await manager.wait_for_answer(task.task_id, second.request_id, lease_id=new.lease_id)
    assert reply.result == {"action": "accept"}


async def test_a_released_task_withdraws_its_questions(manager: TaskManager, store: TaskStore) -> None:
    worker = await manager.register_worker([SAFE])
    task = await manager.create_task(OWNER, "safe")
    [held] = await run_on(manager, worker.worker_id, 1)
    await manager.ask(task.task_id, ELICIT, {"message": "?"}, lease_id=held.lease_id)
    await manager.ask(task.task_id, ELICIT, {"message": "and?"}, lease_id=held.lease_id)

    released = await manager.release(worker.worker_id, task.task_id, held.lease_id)
    assert (released.status, released.dispatch) == (TaskStatus.WORKING, Dispatch.QUEUED)
    assert [r.state for r in (await stored(store, task.task_id)).requests] == [RequestState.WITHDRAWN] * 2


async def _next_about(
    events: AsyncIterator[TaskEvent], kind: type[RequestQueued | RequestWithdrawal], request: ClientRequest
) -> RequestQueued | RequestWithdrawal:
    """The view's next event: one of `kind` about `request`."""
    event = await next_of(events)
    assert isinstance(event, kind), event
    assert event.request.request_id == request.request_id
    return event


async def test_a_bridge_view_hears_of_the_withdrawal_of_what_it_delivered(manager: TaskManager) -> None:
    """The bridge put the question to a client: the view says it was withdrawn (so the bridge can
    call it off), before the re-run's question; an answered one is never reported withdrawn."""
    worker = await manager.register_worker([SAFE])
    task = await manager.create_task(OWNER, "safe")
    [held] = await run_on(manager, worker.worker_id, 1)
    _, answered = await manager.ask(task.task_id, ELICIT, {"message": "first?"}, lease_id=held.lease_id)
    async with closing(manager.events(OWNER, task.task_id, changes=False)) as events:
        await _next_about(events, RequestQueued, answered)
        await manager.answer(OWNER, task.task_id, answered.request_id, result={"action": "accept"})
        _, open_one = await manager.ask(task.task_id, ELICIT, {"message": "second?"}, lease_id=held.lease_id)
        await _next_about(events, RequestQueued, open_one)

        await manager.release(worker.worker_id, task.task_id, held.lease_id)
        gone = await _next_about(events, RequestWithdrawal, open_one)
        assert gone.request.state is RequestState.WITHDRAWN

        [again] = await run_on(manager, worker.worker_id, 1)
        _, rerun = await manager.ask(task.task_id, ELICIT, {"message": "second?"}, lease_id=again.lease_id)
        await _next_about(events, RequestQueued, rerun)
        await manager.release(worker.worker_id, task.task_id, again.lease_id)
        await _next_about(events, RequestWithdrawal, rerun)  # the re-run's, once; not the first again
        await manager.cancel(OWNER, task.task_id)
        end = await next_of(events)
    assert isinstance(end, TaskFinished)


async def test_a_question_answered_through_one_view_is_withdrawn_from_the_others(
    manager: TaskManager, store: TaskStore
) -> None:
    """Two tasks/result open at once both deliver the question. The client answers it through one
    (view "a"): the other named view reports it withdrawn, so that its bridge calls it off. An
    answer through no view reaches every named view that delivered it so. A view without a name
    cannot tell another's answer from its own, and reports neither."""
    worker = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work")
    [held] = await run_on(manager, worker.worker_id, 1)
    _, first = await manager.ask(task.task_id, ELICIT, {"message": "first?"}, lease_id=held.lease_id)
    async with (
        closing(manager.events(OWNER, task.task_id, changes=False, view="a")) as here,
        closing(manager.events(OWNER, task.task_id, changes=False, view="b")) as there,
        closing(manager.events(OWNER, task.task_id, changes=False)) as unnamed,
    ):
        for events in (here, there, unnamed):
            await _next_about(events, RequestQueued, first)
        await manager.answer(OWNER, task.task_id, first.request_id, result={"action": "accept"}, view="a")
        gone = await _next_about(there, RequestWithdrawal, first)
        assert (gone.request.state, gone.request.answered_by) == (RequestState.ANSWERED, "a")

        _, second = await manager.ask(task.task_id, ELICIT, {"message": "second?"}, lease_id=held.lease_id)
        for events in (here, there, unnamed):  # "a" heard nothing of its own answer
            await _next_about(events, RequestQueued, second)
        await manager.answer(OWNER, task.task_id, second.request_id, result={"action": "decline"})
        for events in (here, there):
            await _next_about(events, RequestWithdrawal, second)

        await manager.cancel(OWNER, task.task_id)
        for events in (here, there, unnamed):  # nothing more before the end
            end = await next_of(events)
            assert isinstance(end, TaskFinished), end
    assert [r.answered_by for r in (await stored(store, task.task_id)).requests] == ["a", ""]


async def test_a_view_opened_again_hears_of_what_it_delivered_before_the_break(manager: TaskManager) -> None:
    """A bridge's stream breaks and is opened again (`already`: the questions its client holds):
    those are not delivered again, one answered through another view during the break and one
    withdrawn after it both come as withdrawn; a question new to the view is delivered."""
    worker = await manager.register_worker([SAFE])
    task = await manager.create_task(OWNER, "safe")
    [held] = await run_on(manager, worker.worker_id, 1)
    _, kept = await manager.ask(task.task_id, ELICIT, {"message": "kept?"}, lease_id=held.lease_id)
    _, elsewhere = await manager.ask(task.task_id, ELICIT, {"message": "elsewhere?"}, lease_id=held.lease_id)
    _, new = await manager.ask(task.task_id, ELICIT, {"message": "new?"}, lease_id=held.lease_id)
    await manager.answer(OWNER, task.task_id, elsewhere.request_id, result={"action": "accept"}, view="b")
    held_by_client = [kept.request_id, elsewhere.request_id]
    again = manager.events(OWNER, task.task_id, changes=False, view="a", already=held_by_client)
    async with closing(again) as events:
        await _next_about(events, RequestWithdrawal, elsewhere)
        await _next_about(events, RequestQueued, new)
        await manager.release(worker.worker_id, task.task_id, held.lease_id)
        withdrawn: set[str] = set()
        for _ in range(2):
            event = await next_of(events)
            assert isinstance(event, RequestWithdrawal), event
            withdrawn.add(event.request.request_id)
        assert withdrawn == {kept.request_id, new.request_id}
        await manager.cancel(OWNER, task.task_id)
        assert isinstance(await next_of(events), TaskFinished)
    with pytest.raises(InvalidArgument, match="delivered_request_ids: at most 1024"):
        await anext(manager.events(OWNER, task.task_id, already=[str(n) for n in range(1025)]))


async def test_an_answered_question_is_kept_when_the_task_is_requeued(
    manager: TaskManager, store: TaskStore, clock: FakeClock, limits: ServiceLimits
) -> None:
    """Only unanswered questions are withdrawn: what the client answered stays in the task."""
    worker = await manager.register_worker([SAFE])
    task = await manager.create_task(OWNER, "safe")
    [held] = await run_on(manager, worker.worker_id, 1)
    _, question = await manager.ask(task.task_id, ELICIT, {"message": "?"}, lease_id=held.lease_id)
    await manager.answer(OWNER, task.task_id, question.request_id, result={"action": "accept"})
    clock.advance(limits.lease_ttl_ms + 1)
    await manager.sweep()
    queued = await stored(store, task.task_id)
    assert (queued.status, queued.dispatch) == (TaskStatus.WORKING, Dispatch.QUEUED)
    assert [r.state for r in queued.requests] == [RequestState.ANSWERED]


# ----------------------------------------------------------------------------- expiry


async def test_every_call_takes_an_expired_task_not_yet_swept_for_one_not_found(
    manager: TaskManager, store: TaskStore, clock: FakeClock
) -> None:
    """Reads say not found once a task's ttl has passed; so does every change, before the sweep
    deletes it, and nothing of it changes."""
    worker = await manager.register_worker([WORK])
    task = await manager.create_task(OWNER, "work", ttl_ms=10_000)
    async with closing(manager.assignments(worker.worker_id)) as stream:
        offered = await next_of(stream)
    await manager.ack(worker.worker_id, task.task_id, offered.lease_id)
    _, question = await manager.ask(task.task_id, ELICIT, {"message": "?"}, lease_id=offered.lease_id)
    clock.advance(10_000)  # created_at + ttl; the worker's lease (30 s) still runs
    before = await stored(store, task.task_id)
    task_id, lease_id = task.task_id, offered.lease_id
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get_task": lambda: manager.get_task(task_id),
        "ack": lambda: manager.ack(worker.worker_id, task_id, lease_id),
        "update_status": lambda: manager.update_status(task_id, "still here", lease_id=lease_id),
        "ask": lambda: manager.ask(task_id, ELICIT, {"message": "and?"}, lease_id=lease_id),
        "wait_for_answer": lambda: manager.wait_for_answer(task_id, question.request_id),
        "answer": lambda: manager.answer(OWNER, task_id, question.request_id, result={"action": "decline"}),
        "set_status": lambda: manager.set_status(task_id, TaskStatus.WORKING, "m"),
        "complete": lambda: manager.complete(task_id, {"content": []}, lease_id=lease_id),
        "fail": lambda: manager.fail(task_id, "broke", lease_id=lease_id),
        "cancel": lambda: manager.cancel(OWNER, task_id),
        "release": lambda: manager.release(worker.worker_id, task_id, lease_id),
    }
    for name, call in calls.items():
        with pytest.raises(TaskNotFound):
            await asyncio.wait_for(call(), TIMEOUT)
        assert await stored(store, task_id) == before, name
    _, stop = await manager.heartbeat(worker.worker_id, [task_id])
    assert stop == [task_id]
    assert await manager.delete_task(task_id) is False  # deleted, as the sweep would
    assert await store.get_task(task_id) is None
