"""TaskManager: requests to the client (elicitation, sampling), answers, waits and the bridge's events."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from taskservice.domain.errors import (
    AlreadyAnswered,
    InvalidArgument,
    InvalidTransition,
    RequestNotFound,
    TaskCancelled,
    TaskNotFound,
)
from taskservice.domain.model import RequestState, TaskStatus
from taskservice.domain.service import (
    RequestQueued,
    TaskChanged,
    TaskEvent,
    TaskFinished,
    TaskManager,
)
from taskservice.store import TaskStore

from .support import TIMEOUT, FakeClock, closing, drain, next_of, settle

OWNER = "session-a"
ELICIT = "elicitation/create"
SAMPLE = "sampling/createMessage"
ACCEPT = {"action": "accept", "content": {"name": "Ada"}}


async def new_task_id(manager: TaskManager) -> str:
    return (await manager.create_task(OWNER)).task_id


# -------------------------------------------------------------------------- ask / answer


async def test_ask_stores_the_request_and_sets_input_required(
    manager: TaskManager, store: TaskStore, clock: FakeClock
) -> None:
    task_id = await new_task_id(manager)
    clock.advance(5)
    params = {"message": "Your name?", "requestedSchema": {"type": "object"}}
    task, request = await manager.ask(task_id, ELICIT, params)

    assert task.status is TaskStatus.INPUT_REQUIRED
    assert task.last_updated_at == clock.now_ms
    assert (request.method, request.params, request.state) == (ELICIT, params, RequestState.PENDING)
    assert request.sequence == 1
    assert request.created_at == clock.now_ms
    assert await store.get_task(task_id) == task
    assert task.pending_requests == (request,)


async def test_wait_for_answer_returns_after_answer(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})

    waiter = asyncio.create_task(manager.wait_for_answer(task_id, request.request_id))
    await settle()
    assert not waiter.done()  # no answer yet

    await manager.answer(OWNER, task_id, request.request_id, result=ACCEPT)
    task, answered = await asyncio.wait_for(waiter, TIMEOUT)
    assert answered.state is RequestState.ANSWERED
    assert answered.result == ACCEPT
    assert answered.error is None
    assert task.status is TaskStatus.WORKING


# Memory and SQLite only: with Redis each woken waiter reads the task again over the network,
# so they finish in the order Redis answers them. The wake order itself, which is the feed's,
# is checked for all three stores by the store contract.
@pytest.mark.parametrize("store", ["memory", "sqlite"], indirect=True)
async def test_an_answer_reaches_its_waiter_before_the_tasks_watchers(manager: TaskManager) -> None:
    """The worker's tool waits for the answer; the bridge's status follower and other views only
    watch the task: the waiter is woken first, whichever subscribed first."""
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    order: list[str] = []

    async def watch(name: str) -> None:
        async with closing(manager.follow(OWNER, task_id)) as changes:
            async for task in changes:
                if task.status is TaskStatus.WORKING:
                    order.append(name)
                    return

    async def wait() -> None:
        await manager.wait_for_answer(task_id, request.request_id)
        order.append("waiter")

    tasks = [asyncio.create_task(watch(f"watcher {n}")) for n in range(3)]
    tasks.append(asyncio.create_task(wait()))
    tasks += [asyncio.create_task(watch(f"watcher {n}")) for n in range(3, 6)]
    await settle()
    assert order == []
    await manager.answer(OWNER, task_id, request.request_id, result=ACCEPT)
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert order[0] == "waiter"
    assert sorted(order[1:]) == [f"watcher {n}" for n in range(6)]


async def test_an_error_answer_is_stored(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, SAMPLE, {"messages": [], "maxTokens": 10})
    error = {"code": -32600, "message": "sampling not supported", "data": None}
    await manager.answer(OWNER, task_id, request.request_id, error=error)
    _, answered = await asyncio.wait_for(manager.wait_for_answer(task_id, request.request_id), TIMEOUT)
    assert (answered.result, answered.error) == (None, error)


@pytest.mark.parametrize("both", [True, False])
async def test_answer_needs_exactly_one_of_result_and_error(manager: TaskManager, both: bool) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    error = {"code": 1, "message": "no"} if both else None
    result = ACCEPT if both else None
    with pytest.raises(InvalidArgument) as caught:
        await manager.answer(OWNER, task_id, request.request_id, result=result, error=error)
    assert caught.value.field == "answer"


async def test_status_goes_back_to_working_only_when_no_request_is_pending(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, first = await manager.ask(task_id, ELICIT, {"message": "one"})
    task, second = await manager.ask(task_id, SAMPLE, {"messages": [], "maxTokens": 5})
    assert task.status is TaskStatus.INPUT_REQUIRED
    assert [r.sequence for r in task.pending_requests] == [1, 2]

    task = await manager.answer(OWNER, task_id, second.request_id, result={"role": "assistant"})
    assert task.status is TaskStatus.INPUT_REQUIRED
    assert task.pending_requests == (first,)

    task = await manager.answer(OWNER, task_id, first.request_id, result=ACCEPT)
    assert task.status is TaskStatus.WORKING
    assert task.pending_requests == ()


async def test_reattach_by_request_id_returns_the_same_request_and_adds_none(
    manager: TaskManager, store: TaskStore, clock: FakeClock
) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    before = await store.get_task(task_id)

    clock.advance(1_000)
    task, again = await manager.ask(task_id, ELICIT, {"message": "?"}, request.request_id)
    assert again == request
    assert len(task.requests) == 1
    assert await store.get_task(task_id) == before  # nothing written


async def test_reattach_after_the_answer_returns_the_answer_at_once(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    await manager.answer(OWNER, task_id, request.request_id, result=ACCEPT)

    task, again = await manager.ask(task_id, ELICIT, {"message": "?"}, request.request_id)
    assert again.state is RequestState.ANSWERED
    assert again.result == ACCEPT
    assert len(task.requests) == 1
    assert task.status is TaskStatus.WORKING  # not asked again
    _, waited = await asyncio.wait_for(manager.wait_for_answer(task_id, request.request_id), TIMEOUT)
    assert waited.result == ACCEPT


async def test_a_worker_chosen_request_id_creates_the_request(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    task, request = await manager.ask(task_id, ELICIT, {"message": "?"}, "worker-req:1")
    assert request.request_id == "worker-req:1"
    assert task.status is TaskStatus.INPUT_REQUIRED
    assert task.find_request("worker-req:1") == request
    task, again = await manager.ask(task_id, ELICIT, {"message": "?"}, "worker-req:1")
    assert again == request
    assert len(task.requests) == 1


async def test_reattach_with_another_method_is_refused(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    await manager.ask(task_id, ELICIT, {"message": "?"}, "r1")
    with pytest.raises(InvalidArgument, match="elicitation/create"):
        await manager.ask(task_id, SAMPLE, {"messages": []}, "r1")


@pytest.mark.parametrize("request_id", ["has space", "x" * 129, "slash/no", "ü"])
async def test_a_malformed_request_id_is_refused(manager: TaskManager, request_id: str) -> None:
    task_id = await new_task_id(manager)
    with pytest.raises(InvalidArgument) as caught:
        await manager.ask(task_id, ELICIT, {"message": "?"}, request_id)
    assert caught.value.field == "request_id"


async def test_answering_twice_raises_already_answered(manager: TaskManager, store: TaskStore) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    await manager.answer(OWNER, task_id, request.request_id, result=ACCEPT)
    before = await store.get_task(task_id)
    with pytest.raises(AlreadyAnswered):
        await manager.answer(OWNER, task_id, request.request_id, result={"action": "decline"})
    assert await store.get_task(task_id) == before  # the first answer wins


async def test_answer_for_another_owner_raises_task_not_found(manager: TaskManager, store: TaskStore) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    before = await store.get_task(task_id)
    with pytest.raises(TaskNotFound):
        await manager.answer("intruder", task_id, request.request_id, result=ACCEPT)
    assert await store.get_task(task_id) == before


async def test_answer_to_an_unknown_request_raises_request_not_found(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    with pytest.raises(RequestNotFound):
        await manager.answer(OWNER, task_id, "nope", result=ACCEPT)
    with pytest.raises(RequestNotFound):
        await asyncio.wait_for(manager.wait_for_answer(task_id, "nope"), TIMEOUT)


async def test_answer_after_the_task_ended_is_refused(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    await manager.cancel(OWNER, task_id)
    with pytest.raises(InvalidTransition):
        await manager.answer(OWNER, task_id, request.request_id, result=ACCEPT)


async def test_ask_on_a_cancelled_task_raises_task_cancelled(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    await manager.cancel(OWNER, task_id)
    with pytest.raises(TaskCancelled):
        await manager.ask(task_id, ELICIT, {"message": "?"})


# -------------------------------------------------------------------------------- waits


async def test_cancel_during_wait_for_answer_raises_task_cancelled_in_the_waiter(
    manager: TaskManager,
) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    waiter = asyncio.create_task(manager.wait_for_answer(task_id, request.request_id))
    await settle()
    assert not waiter.done()

    await manager.cancel(OWNER, task_id)
    with pytest.raises(TaskCancelled) as caught:
        await asyncio.wait_for(waiter, TIMEOUT)
    assert caught.value.task_id == task_id


async def test_a_task_failing_during_wait_for_answer_ends_the_wait(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    waiter = asyncio.create_task(manager.wait_for_answer(task_id, request.request_id))
    await settle()
    await manager.fail(task_id, "gave up")
    with pytest.raises(InvalidTransition, match="ended first"):
        await asyncio.wait_for(waiter, TIMEOUT)


async def test_wait_for_answer_and_wait_finished_are_both_woken_by_cancel(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    answer_waiter = asyncio.create_task(manager.wait_for_answer(task_id, request.request_id))
    finish_waiter = asyncio.create_task(manager.wait_finished(OWNER, task_id))
    await settle()
    assert not answer_waiter.done()
    assert not finish_waiter.done()

    await manager.cancel(OWNER, task_id)
    finished = await asyncio.wait_for(finish_waiter, TIMEOUT)
    assert finished.status is TaskStatus.CANCELLED
    with pytest.raises(TaskCancelled):
        await asyncio.wait_for(answer_waiter, TIMEOUT)


async def test_every_waiter_of_a_task_is_woken(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, request = await manager.ask(task_id, ELICIT, {"message": "?"})
    answer_waiters = [
        asyncio.create_task(manager.wait_for_answer(task_id, request.request_id)) for _ in range(2)
    ]
    finish_waiters = [asyncio.create_task(manager.wait_finished(OWNER, task_id)) for _ in range(2)]
    await settle()
    assert not any(w.done() for w in answer_waiters + finish_waiters)

    await manager.answer(OWNER, task_id, request.request_id, result=ACCEPT)
    for _, answered in await asyncio.wait_for(asyncio.gather(*answer_waiters), TIMEOUT):
        assert answered.result == ACCEPT
    await settle()
    assert not any(w.done() for w in finish_waiters)  # answered, but not finished

    await manager.complete(task_id, {"content": []})
    for finished in await asyncio.wait_for(asyncio.gather(*finish_waiters), TIMEOUT):
        assert finished.status is TaskStatus.COMPLETED


async def test_wait_finished_of_a_finished_task_returns_at_once(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    done = await manager.complete(task_id, {"content": []})
    assert await asyncio.wait_for(manager.wait_finished(OWNER, task_id), TIMEOUT) == done


async def test_wait_finished_for_another_owner_raises_task_not_found(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    with pytest.raises(TaskNotFound):
        await asyncio.wait_for(manager.wait_finished("intruder", task_id), TIMEOUT)


# ------------------------------------------------------------------------------- events


async def test_events_yield_the_task_then_pending_requests_in_order_then_finish(
    manager: TaskManager, clock: FakeClock
) -> None:
    task_id = await new_task_id(manager)
    await manager.update_status(task_id, "starting")
    _, first = await manager.ask(task_id, ELICIT, {"message": "one"})
    _, second = await manager.ask(task_id, SAMPLE, {"messages": [], "maxTokens": 5})

    async with closing(manager.events(OWNER, task_id)) as events:
        event = await next_of(events)
        assert isinstance(event, TaskChanged)
        assert event.task.status is TaskStatus.INPUT_REQUIRED
        assert event.task.status_message == "starting"

        queued: list[TaskEvent] = [await next_of(events), await next_of(events)]
        assert [e.request.request_id for e in queued if isinstance(e, RequestQueued)] == [
            first.request_id,
            second.request_id,
        ]

        # Nothing new: the view waits.
        pending = asyncio.ensure_future(next_of(events))
        await settle()
        assert not pending.done()

        # The clock stands still: answering one of two requests changes no public state.
        await manager.answer(OWNER, task_id, first.request_id, result=ACCEPT)
        await manager.answer(OWNER, task_id, second.request_id, result={"role": "assistant"})
        event = await pending
        assert isinstance(event, TaskChanged)
        assert event.task.status is TaskStatus.WORKING

        clock.advance(10)
        _, third = await manager.ask(task_id, ELICIT, {"message": "three"})
        changed, asked = await next_of(events), await next_of(events)
        assert isinstance(changed, TaskChanged)
        assert changed.task.status is TaskStatus.INPUT_REQUIRED
        assert isinstance(asked, RequestQueued)
        assert asked.request == third

        clock.advance(10)
        await manager.complete(task_id, {"content": []})
        rest = await drain(events)
    assert [type(e) for e in rest] == [TaskChanged, TaskFinished]
    assert isinstance(rest[-1], TaskFinished)
    assert rest[-1].task.status is TaskStatus.COMPLETED


async def test_events_without_changes_yield_only_requests_and_the_end(
    manager: TaskManager, clock: FakeClock
) -> None:
    task_id = await new_task_id(manager)
    _, first = await manager.ask(task_id, ELICIT, {"message": "one"})

    async with closing(manager.events(OWNER, task_id, changes=False)) as events:
        asked = await next_of(events)  # no TaskChanged first
        assert isinstance(asked, RequestQueued)
        assert asked.request == first

        # Answered: the task is working again, a change of state only, which is not an event here.
        clock.advance(10)
        await manager.answer(OWNER, task_id, first.request_id, result=ACCEPT)
        pending = asyncio.ensure_future(next_of(events))
        await settle()
        assert not pending.done()

        clock.advance(10)
        _, second = await manager.ask(task_id, ELICIT, {"message": "two"})
        asked = await pending
        assert isinstance(asked, RequestQueued)
        assert asked.request == second

        clock.advance(10)
        await manager.complete(task_id, {"content": []})
        rest = await drain(events)
    assert [type(e) for e in rest] == [TaskFinished]
    assert rest[0].task.status is TaskStatus.COMPLETED


async def test_a_fresh_events_call_delivers_still_pending_requests_again(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    _, first = await manager.ask(task_id, ELICIT, {"message": "one"})
    _, second = await manager.ask(task_id, ELICIT, {"message": "two"})

    async with closing(manager.events(OWNER, task_id)) as events:
        assert isinstance(await next_of(events), TaskChanged)
        delivered = [await next_of(events), await next_of(events)]
    assert [e.request for e in delivered if isinstance(e, RequestQueued)] == [first, second]

    # The client dropped out, answered one request, and came back.
    await manager.answer(OWNER, task_id, first.request_id, result=ACCEPT)
    async with closing(manager.events(OWNER, task_id)) as events:
        assert isinstance(await next_of(events), TaskChanged)
        again = await next_of(events)
        assert isinstance(again, RequestQueued)
        assert again.request == second
        pending = asyncio.ensure_future(next_of(events))
        await settle()
        assert not pending.done()  # the answered request does not come back
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending


async def test_events_of_a_finished_task_end_at_once(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    await manager.fail(task_id, "nope")
    events = await drain(manager.events(OWNER, task_id))
    assert [type(e) for e in events] == [TaskChanged, TaskFinished]


async def test_events_for_another_owner_raise_task_not_found(manager: TaskManager) -> None:
    task_id = await new_task_id(manager)
    with pytest.raises(TaskNotFound):
        await next_of(manager.events("intruder", task_id))
