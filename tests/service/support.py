"""Helpers of the gRPC-level service tests (fixtures live in conftest.py).

Everything here talks to a real server through grpc.aio channels and the
generated stubs, as a worker or a bridge in another process would. Every wait
is bounded by WAIT; no test asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from taskservice_client._convert import struct_to_dict
from taskservice_client._proto.mcptasks.v1 import (
    bridge_service_pb2,
    bridge_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)

from ..processes import clean_env

pb = task_service_pb2
bpb = bridge_service_pb2

# Something that must happen happens at once; this bound only stops a broken test hanging.
WAIT = 10.0
OWNER = "alice"
TOOL = "echo"

TASK_SERVICE = "mcptasks.v1.TaskService"
BRIDGE_SERVICE = "mcptasks.v1.BridgeService"
RELATED_TASK = "io.modelcontextprotocol/related-task"

ELICIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}
ELICIT_ANSWER: dict[str, Any] = {"action": "accept", "content": {"name": "Ada", "age": 36}}
USER_MESSAGE: dict[str, Any] = {"role": "user", "content": {"type": "text", "text": "Say hi"}}
SAMPLING_ANSWER: dict[str, Any] = {
    "role": "assistant",
    "content": {"type": "text", "text": "hi"},
    "model": "test-model",
    "stopReason": "endTurn",
}
TOOL_RESULT: dict[str, Any] = {"content": [{"type": "text", "text": "done"}], "isError": False}

S = TypeVar("S")
T = TypeVar("T")


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(data, message)
    return message


def to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON, integral numbers as ints (Struct numbers are doubles)."""
    return struct_to_dict(message)


def tool(name: str = TOOL, *, retry_safe: bool = False, **fields: Any) -> task_pb2.ToolDefinition:
    return task_pb2.ToolDefinition(
        name=name,
        description=f"the {name} tool",
        input_schema=to_struct({"type": "object", "properties": {"text": {"type": "string"}}}),
        retry_safe=retry_safe,
        **fields,
    )


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT)


async def rpc_error(awaitable: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bounded(awaitable)
    return caught.value


@dataclasses.dataclass
class RichError:
    """An RPC error with its `google.rpc.Status` details unpacked."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    violations: list[tuple[str, str]]
    resource: error_details_pb2.ResourceInfo | None

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.violations]


def rich(error: grpc.aio.AioRpcError) -> RichError:
    status = rpc_status.from_call(cast("grpc.Call", error))  # an AioRpcError has the Call methods it reads
    assert status is not None, f"no google.rpc.Status details in {error.code()}: {error.details()}"
    assert status.code == error.code().value[0]
    info: error_details_pb2.ErrorInfo | None = None
    violations: list[tuple[str, str]] = []
    resource: error_details_pb2.ResourceInfo | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            detail.Unpack(resource)
    assert info is not None, "every error carries an ErrorInfo"
    return RichError(
        code=error.code(),
        message=status.message,
        reason=info.reason,
        domain=info.domain,
        violations=violations,
        resource=resource,
    )


async def rich_error(awaitable: Awaitable[Any]) -> RichError:
    return rich(await rpc_error(awaitable))


class Stream(Generic[S]):
    """A server stream read one bounded step at a time."""

    def __init__(self, call: grpc.aio.UnaryStreamCall[Any, S]) -> None:
        self.call = call
        self._events = aiter(call)

    async def next(self) -> S:
        return await bounded(anext(self._events))

    async def rest(self) -> list[S]:
        """Every remaining event of a stream that must end by itself (with OK)."""

        async def collect() -> list[S]:
            return [event async for event in self._events]

        return await bounded(collect())

    async def error(self) -> grpc.aio.AioRpcError:
        """The error the stream must end with (events before it are dropped)."""
        return await rpc_error(self.rest())

    def cancel(self) -> None:
        self.call.cancel()


class Clients:
    """One channel to a service: the worker-facing and bridge-facing stubs, and health."""

    def __init__(self, target: str, owner: str = OWNER) -> None:
        self.target = target
        self.owner = owner
        self.channel = grpc.aio.insecure_channel(target)
        self.tasks = cast(
            "task_service_pb2_grpc.TaskServiceAsyncStub", task_service_pb2_grpc.TaskServiceStub(self.channel)
        )
        self.bridge = cast(
            "bridge_service_pb2_grpc.BridgeServiceAsyncStub",
            bridge_service_pb2_grpc.BridgeServiceStub(self.channel),
        )
        self.health: Any = health_pb2_grpc.HealthStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(None)

    async def health_status(self, service: str = "") -> int:
        response = await bounded(self.health.Check(health_pb2.HealthCheckRequest(service=service)))
        status: int = response.status
        return status

    # ------------------------------------------------------------- worker side

    async def register(self, *tools: task_pb2.ToolDefinition, name: str = "worker-1", **fields: Any) -> str:
        response = await bounded(
            self.tasks.RegisterWorker(pb.RegisterWorkerRequest(name=name, tools=tools or [tool()], **fields))
        )
        return response.worker_id

    async def get(self, task_id: str) -> task_pb2.Task:
        return (await bounded(self.tasks.GetTask(pb.GetTaskRequest(task_id=task_id)))).task

    async def complete(self, task_id: str, result: dict[str, Any] | None = None) -> task_pb2.Task:
        request = pb.CompleteRequest(task_id=task_id, result=to_struct(result or TOOL_RESULT))
        return (await bounded(self.tasks.Complete(request))).task

    async def fail(self, task_id: str, error: str = "it broke") -> task_pb2.Task:
        return (await bounded(self.tasks.Fail(pb.FailRequest(task_id=task_id, error=error)))).task

    def elicit(self, task_id: str, *, request_id: str = "", timeout: float | None = None) -> Stream[Any]:
        request = pb.ElicitRequest(
            task_id=task_id,
            message="Who are you?",
            requested_schema=to_struct(ELICIT_SCHEMA),
            request_id=request_id,
        )
        return Stream(self.tasks.Elicit(request, timeout=timeout))

    # ------------------------------------------------------------- bridge side

    async def create(
        self, tool_name: str = TOOL, arguments: dict[str, Any] | None = None, *, owner: str | None = None
    ) -> task_pb2.Task:
        request = bpb.CreateTaskRequest(
            owner=self.owner if owner is None else owner,
            tool_name=tool_name,
            arguments=to_struct(arguments or {}),
        )
        return (await bounded(self.bridge.CreateTask(request))).task

    async def lookup(self, task_id: str) -> task_pb2.Task:
        request = bpb.LookupTaskRequest(owner=self.owner, task_id=task_id)
        return (await bounded(self.bridge.LookupTask(request))).task

    async def cancel(self, task_id: str, reason: str = "") -> task_pb2.Task:
        request = bpb.CancelTaskRequest(owner=self.owner, task_id=task_id, reason=reason)
        return (await bounded(self.bridge.CancelTask(request))).task

    def events(self, task_id: str) -> Stream[bridge_service_pb2.StreamTaskEventsResponse]:
        request = bpb.StreamTaskEventsRequest(owner=self.owner, task_id=task_id)
        return Stream(self.bridge.StreamTaskEvents(request))

    async def next_request(self, task_id: str) -> task_pb2.PendingRequest:
        """The first request of the task not answered yet, as the bridge takes it."""
        events = self.events(task_id)
        try:
            while True:
                event = await events.next()
                kind = event.WhichOneof("event")
                if kind == "request":
                    return event.request
                assert kind != "outcome", f"the task ended before asking: {event.outcome.task}"
        finally:
            events.cancel()

    async def answer(
        self,
        task_id: str,
        request_id: str,
        result: dict[str, Any] | None = None,
        *,
        error: task_pb2.McpError | None = None,
    ) -> task_pb2.Task:
        request = bpb.AnswerRequestRequest(owner=self.owner, task_id=task_id, request_id=request_id)
        if error is not None:
            request.error.CopyFrom(error)
        else:
            request.result.CopyFrom(to_struct(result if result is not None else ELICIT_ANSWER))
        return (await bounded(self.bridge.AnswerRequest(request))).task


# ------------------------------------------------------------------ `taskservice serve`


class ServeProcess:
    """`python -m taskservice serve ...` as a subprocess, its stderr kept in a file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, log: Path, *args: str, env: dict[str, str] | None = None) -> ServeProcess:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "taskservice",
                "serve",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                env=env if env is not None else clean_env(),
            )
        return cls(process, log)

    async def wait_until_serving(self, target: str) -> None:
        """Poll the health Check (bounded) until the server answers SERVING.

        A fresh channel each try: a channel that failed to connect waits out a
        reconnect backoff of a second or more before it tries again.
        """

        async def serving() -> None:
            while True:
                assert self.process.returncode is None, f"serve exited early:\n{self.log.read_text()}"
                clients = Clients(target)
                try:
                    request = health_pb2.HealthCheckRequest(service="")
                    response = await clients.health.Check(request, timeout=0.5)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                finally:
                    await clients.close()
                await asyncio.sleep(0.05)

        await asyncio.wait_for(serving(), 30)

    async def signal(self, signum: int) -> int:
        """Send a signal; the exit status once the process ended (bounded)."""
        self.process.send_signal(signum)
        return await bounded(self.process.wait())

    async def ensure_stopped(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await bounded(self.process.wait())
