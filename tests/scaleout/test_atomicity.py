"""What must happen once happens once, with two store instances (two replicas) racing on one Redis.

Each race starts its contenders together (asyncio.gather over two connections), so the optimistic
writes really interleave: a read on one replica, the other's write in between, a retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from taskservice.domain.errors import AlreadyAnswered, InvalidTransition
from taskservice.domain.model import RequestState, TaskRecord, ToolSpec
from taskservice.domain.service import TaskManager
from taskservice.store.redis import RedisTaskStore

from .support import WAIT

OWNER = "racer"
CONTENDERS = 16
Managers = tuple[TaskManager, TaskManager]


@pytest.fixture
async def managers(redis_url: str) -> AsyncIterator[Managers]:
    a, b = RedisTaskStore(redis_url), RedisTaskStore(redis_url)
    try:
        await a.ping()
        await b.ping()
        yield TaskManager(a), TaskManager(b)
    finally:
        await a.close()
        await b.close()


def text(n: int) -> dict[str, object]:
    return {"content": [{"type": "text", "text": f"result {n}"}]}


async def test_a_task_is_completed_once(managers: Managers) -> None:
    a, b = managers
    task = await a.create_task(OWNER)
    outcomes = await asyncio.gather(
        *((a, b)[n % 2].complete(task.task_id, text(n)) for n in range(CONTENDERS)), return_exceptions=True
    )
    won = [o for o in outcomes if isinstance(o, TaskRecord)]
    assert len(won) == 1
    assert all(isinstance(o, InvalidTransition) for o in outcomes if o not in won)
    assert (await b.get_task(task.task_id)).result == won[0].result


async def test_an_answer_is_taken_once(managers: Managers) -> None:
    a, b = managers
    task = await a.create_task(OWNER)
    _, request = await a.ask(task.task_id, "elicitation/create", {"message": "?"})
    outcomes = await asyncio.gather(
        *(
            (a, b)[n % 2].answer(OWNER, task.task_id, request.request_id, result={"action": "accept", "n": n})
            for n in range(CONTENDERS)
        ),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, TaskRecord)]
    assert len(won) == 1
    assert all(isinstance(o, AlreadyAnswered) for o in outcomes if o not in won)
    answered = (await b.get_task(task.task_id)).requests
    assert [r.state for r in answered] == [RequestState.ANSWERED]
    assert answered == won[0].requests


async def test_no_change_is_lost_when_replicas_write_one_task_at_once(redis_url: str) -> None:
    stores = [RedisTaskStore(redis_url) for _ in range(2)]
    try:
        task = await TaskManager(stores[0]).create_task(OWNER)

        def one_more(record: TaskRecord) -> TaskRecord:
            return dataclasses.replace(record, attempts=record.attempts + 1)

        await asyncio.gather(*(stores[n % 2].update_task(task.task_id, one_more) for n in range(40)))
        stored = await stores[1].get_task(task.task_id)
        assert stored is not None
        assert stored.attempts == 40
    finally:
        for store in stores:
            await store.close()


async def test_each_task_is_leased_to_one_worker(managers: Managers) -> None:
    a, b = managers
    tool = ToolSpec(name="work")
    workers = [
        await a.register_worker([tool], max_concurrent_tasks=50),
        await b.register_worker([tool], max_concurrent_tasks=50),
    ]
    task_ids = {(await (a, b)[n % 2].create_task(OWNER, "work")).task_id for n in range(30)}
    offered: list[list[str]] = [[], []]
    everything_offered = asyncio.Event()

    async def take(n: int) -> None:
        async for task in (a, b)[n].assignments(workers[n].worker_id):
            offered[n].append(task.task_id)
            if len(offered[0]) + len(offered[1]) >= len(task_ids):
                everything_offered.set()

    takers = [asyncio.create_task(take(n)) for n in (0, 1)]
    try:
        await asyncio.wait_for(everything_offered.wait(), WAIT)
    finally:
        for taker in takers:
            taker.cancel()
        await asyncio.gather(*takers, return_exceptions=True)
    assert not set(offered[0]) & set(offered[1]), "a task was leased to both workers"
    assert sorted(offered[0] + offered[1]) == sorted(task_ids), "a task was lost or offered twice"
    for n in (0, 1):
        for task_id in offered[n]:
            assert (await a.get_task(task_id)).worker_id == workers[n].worker_id
