"""`RedisTaskStore`: the MCP SDK's `TaskStore` on the service's own Redis store.

The SDK's distributed-worker example works as written, against the state the service replicas share:

    store = RedisTaskStore("redis://127.0.0.1:6379/0")
    task = await store.get_task(task_id)
    ctx = TaskContext(task=task, store=store)
    await ctx.update_status("Working...")
    await ctx.complete(CallToolResult(content=[TextContent(type="text", text="done")]))

It is not a second implementation: it drives the domain's TaskManager over the Redis backend
(`taskservice.store.redis`), so it uses the same keys, the same rules for status changes and the same
change feed as the service. A task it creates is the service's (BridgeService.LookupTask and ListTasks
see it under `owner`); a task the service created can be run with the SDK's TaskContext; a wait in one
process wakes on a change made in another. Expiry is enforced on read; the service's sweeper (when a
replica runs) deletes expired tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import cast
from urllib.parse import urlsplit

from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import CallToolResult, Result, Task, TaskMetadata, TaskStatus
from taskservice_client._convert import task_from_proto

from taskservice import mcp_payloads
from taskservice.domain import errors
from taskservice.domain.model import TaskRecord
from taskservice.domain.model import TaskStatus as RecordStatus
from taskservice.domain.service import ServiceLimits, TaskManager
from taskservice.grpc_api.convert import task_message
from taskservice.store.redis import RedisTaskStore as RedisBackend

DEFAULT_OWNER = "taskservice-client"


def _task(record: TaskRecord) -> Task:
    return task_from_proto(task_message(record))


@contextlib.contextmanager
def _as_value_errors() -> Iterator[None]:
    """The SDK's TaskStore raises ValueError for an unknown task or a refused change."""
    try:
        yield
    except (
        errors.TaskNotFound,
        errors.TaskExists,
        errors.InvalidTransition,
        errors.InvalidArgument,
        errors.PayloadTooLarge,
    ) as exc:
        raise ValueError(exc.message) from exc


class RedisTaskStore(TaskStore):
    """The SDK's TaskStore on Redis, sharing its tasks with the task service.

    Tasks it creates belong to `owner` (what `list_tasks` lists, and the owner the service's bridge
    API names them by). A Redis that cannot be reached raises StoreUnavailable.
    """

    def __init__(
        self, redis_url: str, *, owner: str = DEFAULT_OWNER, limits: ServiceLimits | None = None
    ) -> None:
        if urlsplit(redis_url).scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {redis_url!r} (use redis://host:port/db)")
        if not owner:
            raise ValueError("owner must not be empty")
        self.owner = owner
        self.manager = TaskManager(RedisBackend(redis_url), limits)

    async def close(self) -> None:
        await self.manager.store.close()

    async def __aenter__(self) -> RedisTaskStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def create_task(self, metadata: TaskMetadata, task_id: str | None = None) -> Task:
        with _as_value_errors():
            record = await self.manager.create_task(self.owner, ttl_ms=metadata.ttl, task_id=task_id or "")
        return _task(record)

    async def get_task(self, task_id: str) -> Task | None:
        try:
            return _task(await self.manager.get_task(task_id))
        except errors.TaskNotFound:
            return None

    async def update_task(
        self, task_id: str, status: TaskStatus | None = None, status_message: str | None = None
    ) -> Task:
        with _as_value_errors():
            if status != "completed":
                wanted = None if status is None else RecordStatus(status)
                return _task(await self.manager.set_status(task_id, wanted, status_message))
            # The service stores a result with its completion: the one store_result kept.
            current = await self.manager.get_task(task_id)
            if status_message is not None:
                await self.manager.update_status(task_id, status_message)
            record = await self.manager.complete(task_id, current.result or {"content": []})
        return _task(record)

    async def store_result(self, task_id: str, result: Result) -> None:
        """Keep the task's result (a CallToolResult) for its completion; ValueError when it is final."""
        with _as_value_errors():
            data = mcp_payloads.call_tool_result(result.model_dump(mode="json", by_alias=True))

            def change(task: TaskRecord) -> TaskRecord:
                if task.status.is_terminal:
                    raise errors.InvalidTransition(task_id, task.status.value, "store a result")
                return task.replace(result=data)

            await self.manager.get_task(task_id)  # an expired task is not found
            await self.manager.store.update_task(task_id, change)

    async def get_result(self, task_id: str) -> Result | None:
        try:
            record = await self.manager.get_task(task_id)
        except errors.TaskNotFound:
            return None
        return None if record.result is None else CallToolResult.model_validate(record.result)

    async def list_tasks(self, cursor: str | None = None) -> tuple[list[Task], str | None]:
        with _as_value_errors():
            records, token = await self.manager.list_tasks(self.owner, cursor or "")
        return [_task(r) for r in records], token or None

    async def delete_task(self, task_id: str) -> bool:
        return await self.manager.delete_task(task_id)

    async def wait_for_update(self, task_id: str) -> None:
        """Return at the task's next change (at once when it is final); ValueError when unknown."""
        with _as_value_errors():
            # watch() is an async generator: close it here, which ends its subscription at once.
            changes = cast("AsyncGenerator[TaskRecord, None]", self.manager.watch(task_id))
            try:
                first = await anext(changes)
                if not first.status.is_terminal:
                    await anext(changes)
            finally:
                await changes.aclose()

    async def notify_update(self, task_id: str) -> None:
        """Nothing to do: every stored change is published to all waiters, in every process."""
