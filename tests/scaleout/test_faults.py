"""Faults: a replica killed with kill -9, Redis restarted, Redis unreachable.

Each test ends by checking, in Redis, that no task and no answer was lost or handled twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2
from taskservice_client import RemoteTaskContext
from taskservice_client._convert import dict_to_struct
from taskservice_client._proto.mcptasks.v1 import (
    bridge_service_pb2,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)

from taskservice.domain.model import TaskStatus
from taskservice.redis_testing import RedisServer, free_port
from taskservice.testing import running_service

from .support import (
    OWNER,
    WAIT,
    BridgeCalls,
    ServiceProcess,
    add_asking_tool,
    assert_asked_and_answered_once,
    health_becomes,
    make_worker,
    running,
    stored,
    text_of,
)

RedisFactory = Callable[..., RedisServer]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
tpb = task_service_pb2


@pytest.fixture
def replica_processes(redis_url: str, tmp_path: Path) -> Iterator[Callable[[], ServiceProcess]]:
    """Start `taskservice serve --no-mcp` replicas on the test's Redis; all stopped at the end."""
    started: list[ServiceProcess] = []

    def start() -> ServiceProcess:
        replica = ServiceProcess(free_port(), redis_url, tmp_path / f"replica-{len(started)}.log")
        started.append(replica)
        return replica

    try:
        yield start
    finally:
        for replica in started:
            replica.stop()


async def test_a_worker_whose_replica_is_killed_gets_its_answer_through_another(
    replica_processes: Callable[[], ServiceProcess], redis_url: str
) -> None:
    first = replica_processes()
    await first.serving()
    second = replica_processes()  # its port is in the worker's target list; it starts later
    runs: list[str] = []
    worker = make_worker(f"ipv4:{first.target},{second.target}")
    add_asking_tool(worker, runs)
    near, far = BridgeCalls(first.target), BridgeCalls(second.target)
    try:
        async with running(worker):
            task_id = await near.create("ask")
            request = await near.pending(task_id)  # the worker's Elicit stream is open on the first
            await second.serving()
            first.kill()
            await far.answer(task_id, request.request_id, {"name": "Lin"})
            task, result = await far.outcome(task_id)
    finally:
        await near.close()
        await far.close()
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert text_of(result) == "hello Lin"
    assert runs == [task_id], "the tool ran again instead of re-attaching to its elicitation"
    assert_asked_and_answered_once(await stored(redis_url, task_id))


async def test_a_redis_restart_with_aof_loses_nothing(redis_factory: RedisFactory) -> None:
    redis = redis_factory(appendonly=True)
    url = redis.url()
    runs: list[str] = []
    async with running_service(url) as a, running_service(url) as b:
        worker = make_worker(a.target)
        add_asking_tool(worker, runs)

        @worker.tool(description="answers at once")
        async def quick(ctx: RemoteTaskContext, arguments: dict[str, object]) -> str:
            runs.append(ctx.task_id)
            return "quick"

        bridge = BridgeCalls(b.target)
        try:
            async with running(worker):
                finished = [await bridge.create("quick") for _ in range(3)]
                for task_id in finished:
                    await bridge.outcome(task_id)
                asking = await bridge.create("ask")
                request = await bridge.pending(asking)

                redis.kill()  # kill -9: only what the AOF holds survives
                redis.start()
                await health_becomes(a.target, SERVING)
                await health_becomes(b.target, SERVING)

                await bridge.answer(asking, request.request_id, {"name": "Kim"})
                task, result = await bridge.outcome(asking)
                listed = await bridge.stub.ListTasks(bridge_service_pb2.ListTasksRequest(owner=OWNER))
        finally:
            await bridge.close()
    assert text_of(result) == "hello Kim"
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert sorted(t.task_id for t in listed.tasks) == sorted([*finished, asking])
    assert all(t.status == task_pb2.TASK_STATUS_COMPLETED for t in listed.tasks)
    assert sorted(runs) == sorted([*finished, asking]), "a task was lost or ran twice"
    assert_asked_and_answered_once(await stored(url, asking))


async def test_while_redis_is_unreachable_calls_fail_fast_and_health_says_not_serving(
    redis_factory: RedisFactory,
) -> None:
    redis = redis_factory(appendonly=True)
    async with running_service(redis.url()) as svc, grpc.aio.insecure_channel(svc.target) as channel:
        tasks = cast(
            "task_service_pb2_grpc.TaskServiceAsyncStub", task_service_pb2_grpc.TaskServiceStub(channel)
        )
        created = await svc.manager.create_task(OWNER)
        result = dict_to_struct({"content": [{"type": "text", "text": "done"}]})
        complete = tpb.CompleteRequest(task_id=created.task_id, result=result)

        redis.kill()
        for call in (
            lambda: tasks.GetTask(tpb.GetTaskRequest(task_id=created.task_id), timeout=WAIT),
            lambda: tasks.Complete(complete, timeout=WAIT),
        ):
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call()
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 2.0, "a call waited for Redis instead of failing"
        await health_becomes(svc.target, NOT_SERVING)

        redis.start()
        await health_becomes(svc.target, SERVING)
        # The refused Complete wrote nothing: the task is still working, and completes once.
        assert (await svc.manager.get_task(created.task_id)).status is TaskStatus.WORKING
        await tasks.Complete(complete, timeout=WAIT)
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await tasks.Complete(complete, timeout=WAIT)
        assert again.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert (await svc.manager.get_task(created.task_id)).status is TaskStatus.COMPLETED
