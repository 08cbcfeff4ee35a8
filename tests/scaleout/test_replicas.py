"""Two replicas on one Redis: the worker on A, the bridge (or an MCP client) on B.

Waits on one replica end on changes made through the other: an assignment created on B reaches the
worker's StreamAssignments on A, the worker's Elicit stream on A ends with the answer given on B, a
cancel on B reaches the worker's WatchTask on A. Each test also checks, in Redis, that no task and
no answer was lost or handled twice.
"""

from __future__ import annotations

import anyio
from taskservice_client import RemoteTaskContext
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain.model import Dispatch, TaskStatus
from taskservice.testing import RunningService

from .support import (
    WAIT,
    BridgeCalls,
    add_asking_tool,
    assert_asked_and_answered_once,
    make_worker,
    running,
    stored,
    text_of,
)

Replicas = tuple[RunningService, RunningService]


async def test_an_elicitation_on_a_is_answered_through_b(replicas: Replicas, redis_url: str) -> None:
    a, b = replicas
    runs: list[str] = []
    worker = make_worker(a.target)
    add_asking_tool(worker, runs)
    bridge = BridgeCalls(b.target)
    try:
        async with running(worker):
            task_id = await bridge.create("ask")  # created on B: the assignment reaches the worker on A
            request = await bridge.pending(task_id)  # asked on A, seen on B
            assert request.method == "elicitation/create"
            await bridge.answer(task_id, request.request_id, {"name": "Ada"})
            task, result = await bridge.outcome(task_id)
    finally:
        await bridge.close()
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert text_of(result) == "hello Ada"
    assert runs == [task_id]
    record = await stored(redis_url, task_id)
    assert_asked_and_answered_once(record)
    assert record.dispatch is Dispatch.DONE


async def test_a_cancel_on_b_reaches_the_worker_on_a_at_once(replicas: Replicas, redis_url: str) -> None:
    a, b = replicas
    started = anyio.Event()
    stopped = anyio.Event()
    worker = make_worker(a.target)

    @worker.tool(description="works until cancelled")
    async def forever(ctx: RemoteTaskContext, arguments: dict[str, object]) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    bridge = BridgeCalls(b.target)
    try:
        async with running(worker):
            task_id = await bridge.create("forever")
            with anyio.fail_after(WAIT):
                await started.wait()
            await bridge.cancel(task_id)
            # The lease outlives this bound by far: only WatchTask on A, woken through Redis, can tell.
            with anyio.fail_after(WAIT):
                await stopped.wait()
            task, result = await bridge.outcome(task_id)
    finally:
        await bridge.close()
    assert task.status == task_pb2.TASK_STATUS_CANCELLED
    assert result is None
    record = await stored(redis_url, task_id)
    assert record.status is TaskStatus.CANCELLED
    assert record.attempts == 1


async def test_tasks_created_through_both_replicas_run_exactly_once(
    replicas: Replicas, redis_url: str
) -> None:
    a, b = replicas
    runs: list[str] = []
    workers = [make_worker(a.target, name="on-a"), make_worker(b.target, name="on-b")]
    for worker in workers:

        @worker.tool(name="count", description="says which worker ran it", retry_safe=True)
        async def count(ctx: RemoteTaskContext, arguments: dict[str, object], name: str = worker.name) -> str:
            runs.append(ctx.task_id)
            return name

    bridges = [BridgeCalls(a.target), BridgeCalls(b.target)]
    try:
        async with running(workers[0]), running(workers[1]):
            task_ids = [await bridges[n % 2].create("count") for n in range(12)]
            outcomes = [await bridges[(n + 1) % 2].outcome(t) for n, t in enumerate(task_ids)]
    finally:
        for bridge in bridges:
            await bridge.close()
    assert all(task.status == task_pb2.TASK_STATUS_COMPLETED for task, _ in outcomes)
    assert sorted(runs) == sorted(task_ids), "a task was lost or ran twice"
    for task_id in task_ids:
        assert (await stored(redis_url, task_id)).attempts == 1
