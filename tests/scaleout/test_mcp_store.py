"""`taskservice.mcp_store.RedisTaskStore`: the MCP SDK's TaskStore on the service's Redis.

The SDK's own TaskContext runs tasks with it, and its tasks are the service's: the service sees
what it writes, and it sees (and waits on) what the service writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest
from mcp.shared.experimental.tasks.context import TaskContext
from mcp.types import CallToolResult, TaskMetadata, TextContent
from taskservice_client._convert import struct_to_dict
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice.domain.service import ServiceLimits
from taskservice.mcp_store import RedisTaskStore
from taskservice.testing import RunningService, running_service

from .support import WAIT

bpb = bridge_service_pb2
DONE = CallToolResult(content=[TextContent(type="text", text="done")])


@pytest.fixture
async def svc(redis_url: str) -> AsyncIterator[RunningService]:
    async with running_service(redis_url) as running:
        yield running


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisTaskStore]:
    opened = RedisTaskStore(redis_url, owner="sdk-owner", limits=ServiceLimits(default_page_size=2))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def bridge(svc: RunningService) -> AsyncIterator[bridge_service_pb2_grpc.BridgeServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(svc.target)
    try:
        yield cast(
            "bridge_service_pb2_grpc.BridgeServiceAsyncStub",
            bridge_service_pb2_grpc.BridgeServiceStub(channel),
        )
    finally:
        await channel.close(None)


async def test_the_sdks_task_context_runs_a_task_the_service_created(
    svc: RunningService, store: RedisTaskStore, bridge: bridge_service_pb2_grpc.BridgeServiceAsyncStub
) -> None:
    created = await svc.manager.create_task("sdk-owner")
    follow = bridge.FollowTask(bpb.FollowTaskRequest(owner="sdk-owner", task_id=created.task_id))

    # The seeds' distributed worker, as written.
    task = await store.get_task(created.task_id)
    assert task is not None
    ctx = TaskContext(task=task, store=store)
    await ctx.update_status("Working...")
    await ctx.complete(DONE)

    states = [update.task async for update in follow]  # ends after the terminal state
    assert states[-1].status == task_pb2.TASK_STATUS_COMPLETED
    assert any(s.status_message == "Working..." for s in states)
    outcome = await bridge.GetTaskResult(bpb.GetTaskResultRequest(owner="sdk-owner", task_id=task.taskId))
    assert CallToolResult.model_validate(struct_to_dict(outcome.result)) == DONE
    assert ctx.task.status == "completed"


async def test_tasks_it_creates_are_the_services_and_it_waits_on_their_changes(
    store: RedisTaskStore, bridge: bridge_service_pb2_grpc.BridgeServiceAsyncStub
) -> None:
    task = await store.create_task(TaskMetadata(ttl=60_000))
    assert task.status == "working"
    assert task.ttl == 60_000
    found = await bridge.LookupTask(bpb.LookupTaskRequest(owner="sdk-owner", task_id=task.taskId))
    assert found.task.task_id == task.taskId
    listed = await bridge.ListTasks(bpb.ListTasksRequest(owner="sdk-owner"))
    assert [t.task_id for t in listed.tasks] == [task.taskId]

    waiting = asyncio.create_task(store.wait_for_update(task.taskId))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await bridge.CancelTask(bpb.CancelTaskRequest(owner="sdk-owner", task_id=task.taskId))
    await asyncio.wait_for(waiting, WAIT)  # woken through Redis by the service's change
    cancelled = await store.get_task(task.taskId)
    assert cancelled is not None
    assert cancelled.status == "cancelled"


async def test_it_keeps_the_sdk_stores_contract(store: RedisTaskStore) -> None:
    assert await store.get_task("ghost") is None
    assert await store.get_result("ghost") is None
    with pytest.raises(ValueError, match="ghost"):
        await store.update_task("ghost", status_message="x")
    with pytest.raises(ValueError, match="ghost"):
        await store.wait_for_update("ghost")

    first = await store.create_task(TaskMetadata(), task_id="task-1")
    with pytest.raises(ValueError, match="task-1"):
        await store.create_task(TaskMetadata(), task_id="task-1")
    assert await store.get_result("task-1") is None
    await store.store_result("task-1", DONE)
    assert await store.get_result("task-1") == DONE  # stored, before the completion
    updated = await store.update_task("task-1", status="input_required", status_message="asking")
    assert (updated.status, updated.statusMessage) == ("input_required", "asking")
    done = await store.update_task("task-1", status="completed")
    assert done.status == "completed"
    await asyncio.wait_for(store.wait_for_update("task-1"), WAIT)  # finished: at once
    with pytest.raises(ValueError, match="completed"):
        await store.update_task("task-1", status="working")
    with pytest.raises(ValueError, match="completed"):
        await store.store_result("task-1", DONE)

    for n in (2, 3, 4):
        await store.create_task(TaskMetadata(), task_id=f"task-{n}")
    page, cursor = await store.list_tasks()
    assert [t.taskId for t in page] == [first.taskId, "task-2"]
    assert cursor is not None
    rest, last = await store.list_tasks(cursor)
    assert [t.taskId for t in rest] == ["task-3", "task-4"]
    assert last is None
    with pytest.raises(ValueError, match="page"):
        await store.list_tasks("not-a-cursor")

    assert await store.delete_task("task-2") is True
    assert await store.delete_task("task-2") is False
    assert await store.get_task("task-2") is None


def test_it_takes_only_redis_urls() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisTaskStore("sqlite:///tasks.db")
