"""`mcptasks.v1.TaskService`: the worker-facing RPCs, mapped onto the TaskManager."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import grpc
from google.rpc import status_pb2
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

from taskservice import mcp_payloads
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.model import JsonObject, ToolSpec
from taskservice.domain.service import TaskManager, check_tool_count, check_ttl
from taskservice.grpc_api.convert import (
    STATUS_FROM_PROTO,
    SUPPORT_FROM_PROTO,
    PayloadReader,
    from_enum,
    mcp_error_message,
    request_message,
    struct,
    task_message,
    timestamp,
)
from taskservice.grpc_api.errors import grpc_errors, status_for
from taskservice.grpc_api.local import call_locally
from taskservice.grpc_api.streams import StreamRegistry

pb = task_service_pb2
Context = grpc.aio.ServicerContext[Any, Any]


# Every Elicit*/CreateMessage* response has the fields task, pending, result and error.
R = TypeVar("R")


class _Question(Protocol):
    """What every request for the client (Elicit, ElicitUrl, CreateMessage, ...AsTask) names."""

    task_id: str
    request_id: str
    lease_id: str


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    return value


def notify_flag(request: Any) -> bool:
    return bool(request.notify) if request.HasField("notify") else True


class TaskServicer(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, manager: TaskManager, streams: StreamRegistry) -> None:
        self.manager = manager
        self.streams = streams
        self.payloads = PayloadReader(manager.limits.max_payload_bytes)

    # ----------------------------------------------------------------- tasks

    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.GetTaskResponse:
        async with grpc_errors(context):
            task = await self.manager.get_task(required(request.task_id, "task_id"))
            return pb.GetTaskResponse(task=task_message(task))

    async def UpdateStatus(
        self, request: pb.UpdateStatusRequest, context: Context
    ) -> pb.UpdateStatusResponse:
        async with grpc_errors(context):
            task = await self.manager.update_status(
                required(request.task_id, "task_id"),
                request.status_message,
                notify=notify_flag(request),
                lease_id=request.lease_id,
            )
            return pb.UpdateStatusResponse(task=task_message(task))

    async def Complete(self, request: pb.CompleteRequest, context: Context) -> pb.CompleteResponse:
        async with grpc_errors(context):
            task_id = required(request.task_id, "task_id")
            result = self.payloads.object(request, "result", required=True)
            assert result is not None
            task = await self.manager.complete(
                task_id,
                mcp_payloads.call_tool_result(result),
                notify=notify_flag(request),
                lease_id=request.lease_id,
            )
            return pb.CompleteResponse(task=task_message(task))

    async def Fail(self, request: pb.FailRequest, context: Context) -> pb.FailResponse:
        async with grpc_errors(context):
            task = await self.manager.fail(
                required(request.task_id, "task_id"),
                required(request.error, "error"),
                notify=notify_flag(request),
                lease_id=request.lease_id,
            )
            return pb.FailResponse(task=task_message(task))

    async def ReportOutcomes(
        self, requests: AsyncIterator[pb.ReportOutcomesRequest], context: Context
    ) -> AsyncIterator[pb.ReportOutcomesResponse]:
        """Each outcome handled as its own Complete or Fail call, as soon as it arrives (a
        slow store does not hold back the outcomes behind it); answers go out as they finish."""
        answers: asyncio.Queue[pb.ReportOutcomesResponse | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async with asyncio.TaskGroup() as handling:

                    async def take() -> None:
                        """Read one outcome and handle it in this same task, at once (a task
                        for the handling would wait a turn of the loop), the next read left
                        to a task of its own (so the handling holds no outcome back)."""
                        try:
                            request = await anext(requests)
                        except StopAsyncIteration:
                            return
                        handling.create_task(take())
                        await self._report(request, answers)

                    handling.create_task(take())
            finally:
                answers.put_nowait(None)

        async with self.streams.open(context):
            reader = asyncio.ensure_future(read())
            try:
                while (answer := await answers.get()) is not None:
                    yield answer
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _report(
        self, request: pb.ReportOutcomesRequest, answers: asyncio.Queue[pb.ReportOutcomesResponse | None]
    ) -> None:
        answer = pb.ReportOutcomesResponse(report_id=request.report_id)
        kind = request.WhichOneof("outcome")
        got: pb.CompleteResponse | pb.FailResponse | status_pb2.Status
        if kind == "complete":
            got = await call_locally(self.Complete, request.complete)
        elif kind == "fail":
            got = await call_locally(self.Fail, request.fail)
        else:
            got = status_for(InvalidArgument("outcome", "give complete or fail"))
        if isinstance(got, pb.CompleteResponse):
            answer.complete.CopyFrom(got)
        elif isinstance(got, pb.FailResponse):
            answer.fail.CopyFrom(got)
        else:
            # OutcomeError has google.rpc.Status's fields and numbers: the same bytes.
            answer.error.ParseFromString(got.SerializeToString())
        # On the loop's next turn: the waiters the outcome woke (a client's tasks/result, its
        # status notification) go first, the worker's confirmation (a gRPC write) after them.
        asyncio.get_running_loop().call_soon(answers.put_nowait, answer)

    async def WatchTask(
        self, request: pb.WatchTaskRequest, context: Context
    ) -> AsyncIterator[pb.WatchTaskResponse]:
        async with self.streams.open(context), grpc_errors(context):
            async for task in self.manager.watch(required(request.task_id, "task_id")):
                yield pb.WatchTaskResponse(task=task_message(task))

    # ------------------------------------------------------- client requests

    async def _ask(
        self,
        context: Context,
        response: Callable[..., R],
        question: _Question,
        method: str,
        params: Callable[[], JsonObject],
    ) -> AsyncIterator[R]:
        """Store (or re-attach to) a client request, report it, then end with the answer.

        Re-attaching by a known `request_id` needs nothing else: the stored request
        is reported again, and its answer once there is one.
        """
        task_id, request_id, lease_id = question.task_id, question.request_id, question.lease_id
        async with self.streams.open(context), grpc_errors(context):
            required(task_id, "task_id")
            task = await self.manager.get_task(task_id)
            if request_id and task.find_request(request_id) is not None:
                task, pending = await self.manager.ask(task_id, method, {}, request_id, lease_id=lease_id)
            else:
                built = self.payloads.params(question, params())
                caps = task.client_capabilities
                refusal = None if caps is None else mcp_payloads.refused_by_client(method, built, caps)
                if refusal is not None:
                    yield response(task=task_message(task), error=mcp_error_message(refusal))
                    return
                task, pending = await self.manager.ask(task_id, method, built, request_id, lease_id=lease_id)
            yield response(task=task_message(task), pending=request_message(task_id, pending))
            task, answered = await self.manager.wait_for_answer(
                task_id, pending.request_id, lease_id=lease_id
            )
            if answered.error is not None:
                yield response(task=task_message(task), error=mcp_error_message(answered.error))
            else:
                yield response(task=task_message(task), result=struct(answered.result or {}))

    def _schema(self, request: Any) -> JsonObject:
        schema = self.payloads.object(request, "requested_schema", required=True)
        assert schema is not None
        return schema

    def _sampling(self, request: Any, ttl_ms: int | None) -> JsonObject:
        read = self.payloads
        return mcp_payloads.create_message_params(
            request.task_id,
            messages=read.objects(request, "messages"),
            max_tokens=request.max_tokens,
            system_prompt=request.system_prompt if request.HasField("system_prompt") else None,
            include_context=request.include_context if request.HasField("include_context") else None,
            temperature=read.number(request, "temperature"),
            stop_sequences=list(request.stop_sequences) or None,
            metadata=read.object(request, "metadata"),
            model_preferences=read.object(request, "model_preferences"),
            tools=read.objects(request, "tools") or None,
            tool_choice=read.object(request, "tool_choice"),
            ttl_ms=ttl_ms,
        )

    async def Elicit(self, request: pb.ElicitRequest, context: Context) -> AsyncIterator[pb.ElicitResponse]:
        # grpc.aio recognises a streaming handler by its being an async generator function.
        async for response in self._ask(
            context,
            pb.ElicitResponse,
            request,
            mcp_payloads.ELICIT_METHOD,
            lambda: mcp_payloads.elicit_form_params(request.task_id, request.message, self._schema(request)),
        ):
            yield response

    async def ElicitUrl(
        self, request: pb.ElicitUrlRequest, context: Context
    ) -> AsyncIterator[pb.ElicitUrlResponse]:
        # grpc.aio recognises a streaming handler by its being an async generator function.
        async for response in self._ask(
            context,
            pb.ElicitUrlResponse,
            request,
            mcp_payloads.ELICIT_METHOD,
            lambda: mcp_payloads.elicit_url_params(
                request.task_id, request.message, request.url, request.elicitation_id
            ),
        ):
            yield response

    async def CreateMessage(
        self, request: pb.CreateMessageRequest, context: Context
    ) -> AsyncIterator[pb.CreateMessageResponse]:
        # grpc.aio recognises a streaming handler by its being an async generator function.
        async for response in self._ask(
            context,
            pb.CreateMessageResponse,
            request,
            mcp_payloads.SAMPLING_METHOD,
            lambda: self._sampling(request, None),
        ):
            yield response

    async def ElicitAsTask(
        self, request: pb.ElicitAsTaskRequest, context: Context
    ) -> AsyncIterator[pb.ElicitAsTaskResponse]:
        # grpc.aio recognises a streaming handler by its being an async generator function.
        async for response in self._ask(
            context,
            pb.ElicitAsTaskResponse,
            request,
            mcp_payloads.ELICIT_METHOD,
            lambda: mcp_payloads.elicit_form_params(
                request.task_id,
                request.message,
                self._schema(request),
                ttl_ms=check_ttl(request.ttl_ms or 60_000),
            ),
        ):
            yield response

    async def CreateMessageAsTask(
        self, request: pb.CreateMessageAsTaskRequest, context: Context
    ) -> AsyncIterator[pb.CreateMessageAsTaskResponse]:
        # grpc.aio recognises a streaming handler by its being an async generator function.
        async for response in self._ask(
            context,
            pb.CreateMessageAsTaskResponse,
            request,
            mcp_payloads.SAMPLING_METHOD,
            lambda: self._sampling(request, check_ttl(request.ttl_ms or 60_000)),
        ):
            yield response

    # --------------------------------------------------------------- workers

    def _tool(self, message: task_pb2.ToolDefinition, index: int) -> ToolSpec:
        field = f"tools[{index}]"
        spec = ToolSpec(
            name=message.name,
            title=message.title,
            description=message.description,
            input_schema=self.payloads.object(message, "input_schema") or {"type": "object"},
            output_schema=self.payloads.object(message, "output_schema"),
            task_support=from_enum(
                task_pb2.TaskSupport, SUPPORT_FROM_PROTO, message.task_support, f"{field}.task_support"
            ),
            retry_safe=message.retry_safe,
            annotations=self.payloads.object(message, "annotations"),
        )
        mcp_payloads.tool_definition(
            field,
            name=spec.name,
            title=spec.title,
            description=spec.description,
            input_schema=spec.input_schema,
            output_schema=spec.output_schema,
            annotations=spec.annotations,
            task_support=spec.task_support.value,
        )
        return spec

    async def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: Context
    ) -> pb.RegisterWorkerResponse:
        async with grpc_errors(context):
            check_tool_count(len(request.tools))
            self.payloads.together(request, "tools")
            tools = [self._tool(tool, index) for index, tool in enumerate(request.tools)]
            worker = await self.manager.register_worker(
                tools,
                worker_id=request.worker_id,
                name=request.name,
                max_concurrent_tasks=request.max_concurrent_tasks,
            )
            lease = self.manager.limits.lease_ttl_ms
            return pb.RegisterWorkerResponse(
                worker_id=worker.worker_id, lease_ttl_ms=lease, heartbeat_interval_ms=max(lease // 3, 1)
            )

    async def StreamAssignments(
        self, request: pb.StreamAssignmentsRequest, context: Context
    ) -> AsyncIterator[pb.StreamAssignmentsResponse]:
        async with self.streams.open(context), grpc_errors(context):
            async for task in self.manager.assignments(required(request.worker_id, "worker_id")):
                yield pb.StreamAssignmentsResponse(
                    assignment=pb.Assignment(
                        lease_id=task.lease_id,
                        task=task_message(task),
                        tool_name=task.tool_name,
                        arguments=struct(task.arguments),
                        lease_expires_at=timestamp(task.lease_expires_at),
                        meta=struct(task.meta),
                    )
                )

    async def AckAssignment(
        self, request: pb.AckAssignmentRequest, context: Context
    ) -> pb.AckAssignmentResponse:
        async with grpc_errors(context):
            task = await self.manager.ack(
                required(request.worker_id, "worker_id"),
                required(request.task_id, "task_id"),
                required(request.lease_id, "lease_id"),
            )
            return pb.AckAssignmentResponse(task=task_message(task))

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        async with grpc_errors(context):
            worker, stop = await self.manager.heartbeat(
                required(request.worker_id, "worker_id"), request.task_ids
            )
            return pb.HeartbeatResponse(
                lease_expires_at=timestamp(worker.lease_expires_at), cancelled_task_ids=stop
            )

    async def ReleaseAssignment(
        self, request: pb.ReleaseAssignmentRequest, context: Context
    ) -> pb.ReleaseAssignmentResponse:
        async with grpc_errors(context):
            task = await self.manager.release(
                required(request.worker_id, "worker_id"),
                required(request.task_id, "task_id"),
                required(request.lease_id, "lease_id"),
            )
            return pb.ReleaseAssignmentResponse(task=task_message(task))

    async def UnregisterWorker(
        self, request: pb.UnregisterWorkerRequest, context: Context
    ) -> pb.UnregisterWorkerResponse:
        async with grpc_errors(context):
            await self.manager.unregister_worker(required(request.worker_id, "worker_id"))
            return pb.UnregisterWorkerResponse()

    # ------------------------------------------------- SDK TaskStore storage

    async def CreateStoredTask(
        self, request: pb.CreateStoredTaskRequest, context: Context
    ) -> pb.CreateStoredTaskResponse:
        async with grpc_errors(context):
            task = await self.manager.create_task(
                request.owner,
                task_id=request.task_id,
                ttl_ms=request.ttl_ms if request.HasField("ttl_ms") else None,
            )
            return pb.CreateStoredTaskResponse(task=task_message(task))

    async def UpdateTask(self, request: pb.UpdateTaskRequest, context: Context) -> pb.UpdateTaskResponse:
        async with grpc_errors(context):
            status = (
                None
                if request.status == task_pb2.TASK_STATUS_UNSPECIFIED
                else from_enum(task_pb2.TaskStatus, STATUS_FROM_PROTO, request.status, "status")
            )
            task = await self.manager.set_status(
                required(request.task_id, "task_id"),
                status,
                request.status_message if request.HasField("status_message") else None,
                notify=notify_flag(request),
            )
            return pb.UpdateTaskResponse(task=task_message(task))

    async def DeleteTask(self, request: pb.DeleteTaskRequest, context: Context) -> pb.DeleteTaskResponse:
        async with grpc_errors(context):
            deleted = await self.manager.delete_task(required(request.task_id, "task_id"))
            return pb.DeleteTaskResponse(deleted=deleted)
