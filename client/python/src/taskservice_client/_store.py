"""GrpcTaskStore: the MCP SDK's TaskStore, backed by the task service."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import CallToolResult, Result, Task, TaskMetadata, TaskStatus

from taskservice_client._channel import ChannelOptions, RetryPolicy, TLSConfig
from taskservice_client._client import ServiceClient, cancellable
from taskservice_client._convert import STATUS_FROM_PROTO, model_struct, struct_to_dict, task_from_proto
from taskservice_client._errors import RETRYABLE, TaskServiceError, TaskServiceRejected
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, task_service_pb2

pb = task_service_pb2
bpb = bridge_service_pb2

_STATUS_TO_PROTO: dict[str, int] = {status: number for number, status in STATUS_FROM_PROTO.items()}


def _state(task: Task) -> tuple[object, ...]:
    return (task.status, task.statusMessage, task.lastUpdatedAt)


class GrpcTaskStore(TaskStore):
    """The SDK's `TaskStore` over the task service, so that the SDK's own `TaskContext`
    (and an SDK server's task support) keep their state in the service:

    ```python
    store = GrpcTaskStore("127.0.0.1:50051")
    task = await store.get_task(task_id)
    ctx = TaskContext(task=task, store=store)
    await ctx.update_status("Working...")
    await ctx.complete(CallToolResult(content=[...]))
    ```

    Tasks it creates belong to `owner` (`list_tasks` lists that owner's tasks).
    It plays both roles (a worker's updates, a server's listing, cancelling and waiting
    for results): against a service with a token per role, give `token` the worker's
    and `bridge_token` the bridge's.
    A result given to `store_result` is sent with the completion that follows
    it (the service stores a result and the completed status in one change).
    `notify_update` has nothing to do: the service wakes every waiter itself
    when it stores a change. Calls retry while the service is unreachable,
    for up to `retry.give_up_after` seconds (30 by default).
    """

    def __init__(
        self,
        target: str,
        *,
        owner: str = "taskservice-client",
        token: str | None = None,
        bridge_token: str | None = None,
        tls: TLSConfig | bool = False,
        retry: RetryPolicy | None = None,
        rpc_timeout: float = 30.0,
        channel_options: ChannelOptions | None = None,
    ) -> None:
        if not owner:
            raise ValueError("owner must not be empty")
        self.target = target
        self.owner = owner
        self._options: dict[str, Any] = {
            "token": token,
            "bridge_token": bridge_token,
            "tls": tls,
            "retry": retry or RetryPolicy(give_up_after=30.0),
            "rpc_timeout": rpc_timeout,
            "channel_options": channel_options,
        }
        self._client_instance: ServiceClient | None = None
        self._results: dict[str, Result] = {}

    @property
    def _client(self) -> ServiceClient:
        # Made on first use, inside the event loop that uses it.
        if self._client_instance is None:
            self._client_instance = ServiceClient(self.target, **self._options)
        return self._client_instance

    async def close(self) -> None:
        """Close the channel (the store can be used again afterwards: it reconnects)."""
        client, self._client_instance = self._client_instance, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> GrpcTaskStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- tasks

    async def create_task(self, metadata: TaskMetadata, task_id: str | None = None) -> Task:
        """Create a task (status working) for this store's owner; ValueError if `task_id` is taken."""
        client = self._client
        ttl: dict[str, Any] = {"ttl_ms": metadata.ttl} if metadata.ttl is not None else {}
        try:
            stored = await client.unary(
                client.tasks.CreateStoredTask,
                pb.CreateStoredTaskRequest(owner=self.owner, task_id=task_id or "", **ttl),
                pb.CreateStoredTaskResponse,
            )
        except TaskServiceRejected as error:
            if error.code is grpc.StatusCode.ALREADY_EXISTS:
                raise TaskServiceRejected(error.code, f"Task with ID {task_id} already exists") from None
            raise
        return task_from_proto(stored.task)

    async def get_task(self, task_id: str) -> Task | None:
        client = self._client
        try:
            response = await client.unary(
                client.tasks.GetTask, pb.GetTaskRequest(task_id=task_id), pb.GetTaskResponse
            )
        except TaskServiceRejected as error:
            if error.code is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return task_from_proto(response.task)

    async def _require(self, task_id: str) -> Task:
        task = await self.get_task(task_id)
        if task is None:
            raise TaskServiceRejected(grpc.StatusCode.NOT_FOUND, f"Task with ID {task_id} not found")
        return task

    async def update_task(
        self,
        task_id: str,
        status: TaskStatus | None = None,
        status_message: str | None = None,
    ) -> Task:
        """Change the status and/or message; ValueError for an unknown task or a terminal one."""
        client = self._client
        current = await self._require(task_id)
        if status is None or status == current.status:
            if status_message is None:
                return current
            return await self._update_status(task_id, status_message)
        if status == "completed":
            result = self._results.pop(task_id, None) or CallToolResult(content=[])
            if status_message is not None:
                await self._update_status(task_id, status_message)
            completed = await client.unary(
                client.tasks.Complete,
                pb.CompleteRequest(task_id=task_id, result=model_struct(result)),
                pb.CompleteResponse,
            )
            return task_from_proto(completed.task)
        if status == "failed":
            failed = await client.unary(
                client.tasks.Fail,
                pb.FailRequest(task_id=task_id, error=status_message or current.statusMessage or "failed"),
                pb.FailResponse,
            )
            return task_from_proto(failed.task)
        if status == "cancelled":
            cancelled = await client.unary(
                client.bridge.CancelTask,
                bpb.CancelTaskRequest(owner=self.owner, task_id=task_id, reason=status_message or ""),
                bpb.CancelTaskResponse,
            )
            return task_from_proto(cancelled.task)
        fields: dict[str, Any] = {"task_id": task_id, "status": _STATUS_TO_PROTO[status]}
        if status_message is not None:
            fields["status_message"] = status_message
        updated = await client.unary(
            client.tasks.UpdateTask, pb.UpdateTaskRequest(**fields), pb.UpdateTaskResponse
        )
        return task_from_proto(updated.task)

    async def _update_status(self, task_id: str, status_message: str) -> Task:
        client = self._client
        response = await client.unary(
            client.tasks.UpdateStatus,
            pb.UpdateStatusRequest(task_id=task_id, status_message=status_message),
            pb.UpdateStatusResponse,
        )
        return task_from_proto(response.task)

    async def store_result(self, task_id: str, result: Result) -> None:
        """Keep the result for the task's completion; ValueError for an unknown task."""
        await self._require(task_id)
        self._results[task_id] = result

    async def get_result(self, task_id: str) -> Result | None:
        """The result of a completed task (or one stored here and not sent yet); None otherwise."""
        if task_id in self._results:
            return self._results[task_id]
        client = self._client
        try:
            response = await client.unary(
                client.bridge.GetTaskResult,
                bpb.GetTaskResultRequest(owner=self.owner, task_id=task_id),
                bpb.GetTaskResultResponse,
            )
        except TaskServiceRejected:
            return None  # unknown, another owner's, or not finished
        if not response.HasField("result"):
            return None
        return CallToolResult.model_validate(struct_to_dict(response.result))

    async def list_tasks(self, cursor: str | None = None) -> tuple[list[Task], str | None]:
        client = self._client
        response = await client.unary(
            client.bridge.ListTasks,
            bpb.ListTasksRequest(owner=self.owner, page_token=cursor or ""),
            bpb.ListTasksResponse,
        )
        return [task_from_proto(t) for t in response.tasks], response.next_page_token or None

    async def delete_task(self, task_id: str) -> bool:
        self._results.pop(task_id, None)
        client = self._client
        try:
            response = await client.unary(
                client.tasks.DeleteTask, pb.DeleteTaskRequest(task_id=task_id), pb.DeleteTaskResponse
            )
        except TaskServiceRejected as error:
            if error.code is grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return response.deleted

    # ---------------------------------------------------------------- waits

    async def wait_for_update(self, task_id: str) -> None:
        """Return at the task's next change (at once for a finished task); ValueError if unknown."""
        client = self._client
        seen: tuple[object, ...] | None = None
        backoff = client.retry.backoff()
        while True:
            call = client.stream(client.tasks.WatchTask, pb.WatchTaskRequest(task_id=task_id))
            try:
                async with cancellable():
                    async for response in call:
                        backoff.reset()
                        task = task_from_proto(response.task)
                        if seen is not None and _state(task) != seen:
                            return
                        seen = _state(task)
                    return  # the watch ends after a terminal status: nothing more will change
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    raise TaskServiceRejected(error.code(), f"Task with ID {task_id} not found") from None
                if error.code() not in RETRYABLE:
                    raise TaskServiceError(error.code(), error.details() or "", method="WatchTask") from None
            finally:
                call.cancel()
            delay = backoff.next_delay()
            if delay is None:
                raise TaskServiceError(grpc.StatusCode.UNAVAILABLE, "the service is unreachable")
            await anyio.sleep(delay)

    async def notify_update(self, task_id: str) -> None:
        """Nothing to do: the service notifies waiters whenever it stores a change."""
