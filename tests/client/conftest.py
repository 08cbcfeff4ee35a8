"""Fixtures for the worker stub's tests: a real service in-process, a bridge-side client, workers.

Every wait is bounded by `WAIT` seconds (fail_after); nothing asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import grpc
import pytest
from taskservice_client import RetryPolicy, Worker
from taskservice_client._convert import dict_to_struct, struct_to_dict
from taskservice_client._proto.mcptasks.v1 import (
    bridge_service_pb2,
    bridge_service_pb2_grpc,
    task_pb2,
)
from taskservice_client.testing import running_worker

from taskservice.testing import RunningService, running_service

WAIT = 20.0
OWNER = "test-owner"
FAST_RETRY = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)

bpb = bridge_service_pb2


class Bridge:
    """What an MCP bridge does with the service, for tests: create tasks, read requests, answer."""

    def __init__(self, target: str, owner: str = OWNER) -> None:
        self.target = target
        self.owner = owner
        self.channel = grpc.aio.insecure_channel(target)
        self.stub: Any = bridge_service_pb2_grpc.BridgeServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(None)

    async def wait_for_tool(self, name: str) -> None:
        with anyio.fail_after(WAIT):
            while True:
                response = await self.stub.ListTools(bpb.ListToolsRequest())
                if any(tool.name == name for tool in response.tools):
                    return
                await anyio.sleep(0.02)

    async def create(self, tool: str, arguments: dict[str, Any] | None = None, **extra: Any) -> str:
        await self.wait_for_tool(tool)
        response = await self.stub.CreateTask(
            bpb.CreateTaskRequest(
                owner=self.owner, tool_name=tool, arguments=dict_to_struct(arguments or {}), **extra
            )
        )
        task_id: str = response.task.task_id
        return task_id

    async def next_request(self, task_id: str) -> task_pb2.PendingRequest:
        """The first request of the task that is not answered yet."""
        with anyio.fail_after(WAIT):
            call = self.stub.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=self.owner, task_id=task_id))
            try:
                async for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "request":
                        request: task_pb2.PendingRequest = event.request
                        return request
                    if kind == "outcome":
                        raise AssertionError(f"task ended before asking: {event.outcome.task}")
            finally:
                call.cancel()
        raise AssertionError("the event stream ended")

    async def wait_for_task(self, task_id: str, check: Callable[[task_pb2.Task], bool]) -> task_pb2.Task:
        """Follow the task's states until one passes `check`."""
        with anyio.fail_after(WAIT):
            call = self.stub.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=self.owner, task_id=task_id))
            try:
                async for event in call:
                    kind = event.WhichOneof("event")
                    task: task_pb2.Task = event.outcome.task if kind == "outcome" else event.task
                    if kind in ("task", "outcome") and check(task):
                        return task
                    if kind == "outcome":
                        raise AssertionError(f"task ended first: {task}")
            finally:
                call.cancel()
        raise AssertionError("the event stream ended")

    async def answer(self, task_id: str, request_id: str, result: dict[str, Any]) -> None:
        await self.stub.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=self.owner, task_id=task_id, request_id=request_id, result=dict_to_struct(result)
            )
        )

    async def answer_error(self, task_id: str, request_id: str, code: int, message: str) -> None:
        await self.stub.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=self.owner,
                task_id=task_id,
                request_id=request_id,
                error=task_pb2.McpError(code=code, message=message),
            )
        )

    async def cancel(self, task_id: str) -> None:
        await self.stub.CancelTask(bpb.CancelTaskRequest(owner=self.owner, task_id=task_id))

    async def task(self, task_id: str) -> task_pb2.Task:
        response = await self.stub.LookupTask(bpb.LookupTaskRequest(owner=self.owner, task_id=task_id))
        task: task_pb2.Task = response.task
        return task

    async def outcome(self, task_id: str) -> tuple[task_pb2.Task, dict[str, Any] | None]:
        """Wait for the task to end: its final state and its result (None unless completed)."""
        with anyio.fail_after(WAIT):
            call = self.stub.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=self.owner, task_id=task_id))
            try:
                async for event in call:
                    if event.WhichOneof("event") == "outcome":
                        outcome = event.outcome
                        result = struct_to_dict(outcome.result) if outcome.HasField("result") else None
                        return outcome.task, result
            finally:
                call.cancel()
        raise AssertionError("the event stream ended without an outcome")


@pytest.fixture
async def service() -> AsyncIterator[RunningService]:
    async with running_service() as svc:
        yield svc


@pytest.fixture
async def bridge(service: RunningService) -> AsyncIterator[Bridge]:
    client = Bridge(service.target)
    try:
        yield client
    finally:
        await client.close()


def running(worker: Worker) -> contextlib.AbstractAsyncContextManager[Worker]:
    """Run a worker for the body of the block; then shut it down (bounded)."""
    return running_worker(worker, stop_timeout=WAIT)


def make_worker(target: str, **options: Any) -> Worker:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("shutdown_timeout", 5.0)
    return Worker(target, **options)


ELICIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}
