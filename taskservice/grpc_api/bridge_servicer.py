"""`mcptasks.v1.BridgeService`: the bridge-facing RPCs, mapped onto the TaskManager."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import struct_pb2
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc

from taskservice import mcp_payloads
from taskservice.domain.errors import RequestNotFound
from taskservice.domain.model import TaskRecord, TaskStatus
from taskservice.domain.service import (
    RequestQueued,
    RequestWithdrawal,
    TaskChanged,
    TaskFinished,
    TaskManager,
)
from taskservice.grpc_api.convert import PayloadReader, request_message, struct, task_message, tool_message
from taskservice.grpc_api.errors import grpc_errors
from taskservice.grpc_api.streams import StreamRegistry
from taskservice.grpc_api.task_servicer import required

pb = bridge_service_pb2
Context = grpc.aio.ServicerContext[Any, Any]


def stored_result(task: TaskRecord) -> struct_pb2.Struct | None:
    """The result a completed task stored; None for any other task."""
    if task.status is TaskStatus.COMPLETED and task.result is not None:
        return struct(task.result)
    return None


def outcome(task: TaskRecord) -> pb.TaskOutcome:
    return pb.TaskOutcome(task=task_message(task), result=stored_result(task))


class BridgeServicer(bridge_service_pb2_grpc.BridgeServiceServicer):
    def __init__(self, manager: TaskManager, streams: StreamRegistry) -> None:
        self.manager = manager
        self.streams = streams
        self.payloads = PayloadReader(manager.limits.max_payload_bytes)

    async def CreateTask(self, request: pb.CreateTaskRequest, context: Context) -> pb.CreateTaskResponse:
        async with grpc_errors(context):
            capabilities = self.payloads.object(request, "client_capabilities")
            task = await self.manager.create_task(
                request.owner,
                required(request.tool_name, "tool_name"),
                self.payloads.object(request, "arguments"),
                ttl_ms=request.ttl_ms if request.HasField("ttl_ms") else None,
                meta=self.payloads.object(request, "meta"),
                client_capabilities=None
                if capabilities is None
                else mcp_payloads.client_capabilities(capabilities),
            )
            return pb.CreateTaskResponse(task=task_message(task))

    async def LookupTask(self, request: pb.LookupTaskRequest, context: Context) -> pb.LookupTaskResponse:
        async with grpc_errors(context):
            task = await self.manager.lookup_task(request.owner, required(request.task_id, "task_id"))
            return pb.LookupTaskResponse(task=task_message(task))

    async def ListTasks(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        async with grpc_errors(context):
            tasks, token = await self.manager.list_tasks(request.owner, request.page_token, request.page_size)
            return pb.ListTasksResponse(tasks=[task_message(t) for t in tasks], next_page_token=token)

    async def CancelTask(self, request: pb.CancelTaskRequest, context: Context) -> pb.CancelTaskResponse:
        async with grpc_errors(context):
            task = await self.manager.cancel(
                request.owner, required(request.task_id, "task_id"), request.reason
            )
            return pb.CancelTaskResponse(task=task_message(task))

    async def GetTaskResult(
        self, request: pb.GetTaskResultRequest, context: Context
    ) -> pb.GetTaskResultResponse:
        async with grpc_errors(context):
            task = await self.manager.task_result(request.owner, required(request.task_id, "task_id"))
            return pb.GetTaskResultResponse(task=task_message(task), result=stored_result(task))

    async def StreamTaskEvents(
        self, request: pb.StreamTaskEventsRequest, context: Context
    ) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        async with self.streams.open(context), grpc_errors(context):
            task_id = required(request.task_id, "task_id")
            # Closed with this stream: a caller that stops reading after the outcome (as the
            # bridge does) leaves no generator for the garbage collector to close.
            events = self.manager.events(
                request.owner,
                task_id,
                changes=not request.skip_changes,
                view=request.view_id,
                already=request.delivered_request_ids,
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    match event:
                        case TaskChanged(task=task):
                            yield pb.StreamTaskEventsResponse(task=task_message(task))
                        case RequestQueued(request=pending):
                            yield pb.StreamTaskEventsResponse(request=request_message(task_id, pending))
                        case RequestWithdrawal(request=gone):
                            yield pb.StreamTaskEventsResponse(withdrawn=request_message(task_id, gone))
                        case TaskFinished(task=task):
                            yield pb.StreamTaskEventsResponse(outcome=outcome(task))

    async def AnswerRequest(
        self, request: pb.AnswerRequestRequest, context: Context
    ) -> pb.AnswerRequestResponse:
        async with grpc_errors(context):
            task_id = required(request.task_id, "task_id")
            request_id = required(request.request_id, "request_id")
            task = await self.manager.lookup_task(request.owner, task_id)
            asked = task.find_request(request_id)
            if asked is None:
                raise RequestNotFound(task_id, request_id)
            answer = request.WhichOneof("answer")
            if answer == "result":
                data = self.payloads.object(request, "result", required=True)
                assert data is not None
                result = mcp_payloads.client_answer(asked.method, asked.params, data)
                task = await self.manager.answer(
                    request.owner, task_id, request_id, result=result, view=request.view_id
                )
            else:
                required("" if answer is None else "error", "result or error")
                error = mcp_payloads.client_error(
                    request.error.code,
                    self.payloads.text(request.error.message, "error.message"),
                    self.payloads.value(request.error.data, "error.data")
                    if request.error.HasField("data")
                    else None,
                )
                task = await self.manager.answer(
                    request.owner, task_id, request_id, error=error, view=request.view_id
                )
            return pb.AnswerRequestResponse(task=task_message(task))

    async def ListTools(self, request: pb.ListToolsRequest, context: Context) -> pb.ListToolsResponse:
        async with grpc_errors(context):
            tools = await self.manager.tools()
            return pb.ListToolsResponse(tools=[tool_message(t) for t in tools.values()])

    async def WatchTools(
        self, request: pb.WatchToolsRequest, context: Context
    ) -> AsyncIterator[pb.WatchToolsResponse]:
        async with self.streams.open(context), grpc_errors(context):
            async for tools in self.manager.watch_tools():
                yield pb.WatchToolsResponse(tools=[tool_message(t) for t in tools.values()])

    async def FollowTask(
        self, request: pb.FollowTaskRequest, context: Context
    ) -> AsyncIterator[pb.FollowTaskResponse]:
        async with self.streams.open(context), grpc_errors(context):
            async for task in self.manager.follow(request.owner, required(request.task_id, "task_id")):
                yield pb.FollowTaskResponse(task=task_message(task), notify=task.notify)
