"""GrpcTaskStore: the SDK's TaskStore over the service, and the seeds' TaskContext example on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from mcp.shared.experimental.tasks.context import TaskContext
from mcp.shared.experimental.tasks.helpers import task_execution
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import CallToolResult, TaskMetadata, TextContent
from taskservice_client import GrpcTaskStore

from taskservice.domain.service import ServiceLimits
from taskservice.testing import RunningService, running_service

from .conftest import WAIT


@pytest.fixture
async def store(service: RunningService) -> AsyncIterator[GrpcTaskStore]:
    grpc_store = GrpcTaskStore(service.target, owner="store-owner")
    await grpc_store.create_task(TaskMetadata(ttl=60_000))
    try:
        yield grpc_store
    finally:
        await grpc_store.close()


def text_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)])


async def test_is_the_sdk_task_store() -> None:
    assert issubclass(GrpcTaskStore, TaskStore)
    GrpcTaskStore("127.0.0.1:1")  # every abstract method is implemented


async def test_the_seeds_task_context_example(store: GrpcTaskStore) -> None:
    """The seeds' standalone example, unchanged, with GrpcTaskStore as the store."""
    created = await store.create_task(TaskMetadata(ttl=60_000))

    async def do_work() -> CallToolResult:
        return text_result("the answer")

    async def worker_job(task_id: str) -> None:
        task = await store.get_task(task_id)
        assert task is not None
        ctx = TaskContext(task=task, store=store)

        await ctx.update_status("Working...")
        result = await do_work()
        await ctx.complete(result)

    await worker_job(created.taskId)
    task = await store.get_task(created.taskId)
    assert task is not None
    assert task.status == "completed"
    assert task.statusMessage == "Working..."
    assert await store.get_result(created.taskId) == text_result("the answer")


async def test_task_execution_fails_the_task_on_an_exception(store: GrpcTaskStore) -> None:
    created = await store.create_task(TaskMetadata(ttl=60_000))
    async with task_execution(created.taskId, store) as ctx:
        await ctx.update_status("about to fail")
        raise RuntimeError("it broke")
    task = await store.get_task(created.taskId)
    assert task is not None
    assert (task.status, task.statusMessage) == ("failed", "it broke")
    assert await store.get_result(created.taskId) is None


async def test_create_get_update_delete(store: GrpcTaskStore) -> None:
    assert await store.get_task("no-such-task") is None
    created = await store.create_task(TaskMetadata(ttl=60_000), task_id="0123abcd:chosen-id")
    assert created.taskId == "0123abcd:chosen-id"
    assert (created.status, created.ttl) == ("working", 60_000)
    with pytest.raises(ValueError, match="already exists"):
        await store.create_task(TaskMetadata(ttl=60_000), task_id="0123abcd:chosen-id")

    asked = await store.update_task(created.taskId, status="input_required", status_message="waiting")
    assert (asked.status, asked.statusMessage) == ("input_required", "waiting")
    back = await store.update_task(created.taskId, status="working")
    assert back.status == "working"
    cancelled = await store.update_task(created.taskId, status="cancelled", status_message="stop")
    assert cancelled.status == "cancelled"
    with pytest.raises(ValueError, match="cancelled"):
        await store.update_task(created.taskId, status="working")
    with pytest.raises(ValueError, match="not found"):
        await store.update_task("no-such-task", status_message="x")
    with pytest.raises(ValueError, match="not found"):
        await store.store_result("no-such-task", text_result("x"))

    assert await store.delete_task(created.taskId) is True
    assert await store.get_task(created.taskId) is None
    assert await store.delete_task(created.taskId) is False


async def test_store_result_before_completion(store: GrpcTaskStore) -> None:
    created = await store.create_task(TaskMetadata(ttl=60_000))
    await store.store_result(created.taskId, text_result("kept"))
    assert await store.get_result(created.taskId) == text_result("kept")
    done = await store.update_task(created.taskId, status="completed")
    assert done.status == "completed"
    again = await store.update_task(created.taskId, status="completed")  # same terminal status: allowed
    assert again.status == "completed"
    other = GrpcTaskStore(store.target, owner=store.owner)  # another process reads it from the service
    try:
        assert await other.get_result(created.taskId) == text_result("kept")
    finally:
        await other.close()


async def test_list_tasks_pages_with_a_cursor() -> None:
    async with running_service(limits=ServiceLimits(default_page_size=2)) as svc:
        store = GrpcTaskStore(svc.target, owner="lister")
        try:
            created = [(await store.create_task(TaskMetadata(ttl=60_000))).taskId for _ in range(5)]
            listed: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                page, cursor = await store.list_tasks(cursor)
                listed.extend(task.taskId for task in page)
                pages += 1
                if cursor is None:
                    break
            # Oldest first; tasks made within the same millisecond come in id order.
            assert sorted(listed) == sorted(created)
            assert len(set(listed)) == len(listed)
            assert pages == 3
            with pytest.raises(ValueError, match="page_token"):
                await store.list_tasks("not-a-cursor")
        finally:
            await store.close()


async def test_wait_for_update(store: GrpcTaskStore) -> None:
    created = await store.create_task(TaskMetadata(ttl=60_000))
    woke = anyio.Event()

    async def wait() -> None:
        await store.wait_for_update(created.taskId)
        woke.set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not woke.is_set()  # it waits for a change
            await store.notify_update(created.taskId)  # nothing to do: the service notifies by itself
            await anyio.wait_all_tasks_blocked()
            assert not woke.is_set()
            await store.update_task(created.taskId, status_message="changed")
            await woke.wait()
    with pytest.raises(ValueError, match="not found"):
        await store.wait_for_update("no-such-task")
