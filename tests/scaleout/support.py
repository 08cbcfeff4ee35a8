"""Helpers of the scale-out tests: a bridge's calls against one replica, workers run in-process,
and reading what Redis holds (to check that nothing was lost or done twice)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mcp import types
from taskservice_client import RemoteTaskContext, RetryPolicy, Worker
from taskservice_client._client import bearer_metadata
from taskservice_client._convert import dict_to_struct, struct_to_dict
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2
from taskservice_client.testing import running_worker

from taskservice.bridge.server import WithMetadata
from taskservice.domain.model import RequestState, TaskRecord
from taskservice.store.redis import RedisTaskStore

from ..processes import clean_env

WAIT = 20.0
"""Bound of every wait, in seconds: a failure, never a duration the tests rely on."""
OWNER = "scale-out-session"
FAST_RETRY = RetryPolicy(initial_backoff=0.05, max_backoff=0.3)
NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}

bpb = bridge_service_pb2


class BridgeCalls:
    """What an MCP bridge asks of the service, against one replica (any gRPC target); over
    `channel` when given (a TLS one: the caller closes it), with the bridge `token` if any."""

    def __init__(
        self, target: str, *, channel: grpc.aio.Channel | None = None, token: str | None = None
    ) -> None:
        self._owned = channel is None
        self.channel = channel if channel is not None else grpc.aio.insecure_channel(target)
        stub: Any = bridge_service_pb2_grpc.BridgeServiceStub(self.channel)
        if token:
            stub = WithMetadata(stub, bearer_metadata(token))
        self.stub = cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", stub)

    async def close(self) -> None:
        if self._owned:
            await self.channel.close(None)

    async def wait_for_tools(self, *names: str) -> None:
        """Return once workers (on any replica) serve every one of these tools."""
        with anyio.fail_after(WAIT):
            call = self.stub.WatchTools(bpb.WatchToolsRequest())
            try:
                async for listed in call:
                    if set(names) <= {t.name for t in listed.tools}:
                        return
            finally:
                call.cancel()

    async def create(self, tool: str, arguments: dict[str, Any] | None = None) -> str:
        """Create a task of `tool`, once some worker serves it."""
        await self.wait_for_tools(tool)
        created = await self.stub.CreateTask(
            bpb.CreateTaskRequest(owner=OWNER, tool_name=tool, arguments=dict_to_struct(arguments or {})),
            timeout=WAIT,
        )
        return created.task.task_id

    async def _events(self, task_id: str) -> AsyncIterator[bpb.StreamTaskEventsResponse]:
        call = self.stub.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=OWNER, task_id=task_id))
        try:
            async for event in call:
                yield event
        finally:
            call.cancel()

    async def pending(self, task_id: str) -> task_pb2.PendingRequest:
        """The task's first unanswered request, once the worker asked it."""
        with anyio.fail_after(WAIT):
            async for event in self._events(task_id):
                if event.WhichOneof("event") == "request":
                    return event.request
                assert event.WhichOneof("event") != "outcome", f"the task ended first: {event.outcome.task}"
        raise AssertionError("the event stream ended")

    async def answer(self, task_id: str, request_id: str, content: dict[str, Any]) -> None:
        result = {"action": "accept", "content": content}
        await self.stub.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=OWNER, task_id=task_id, request_id=request_id, result=dict_to_struct(result)
            ),
            timeout=WAIT,
        )

    async def cancel(self, task_id: str) -> None:
        await self.stub.CancelTask(bpb.CancelTaskRequest(owner=OWNER, task_id=task_id), timeout=WAIT)

    async def outcome(self, task_id: str) -> tuple[task_pb2.Task, dict[str, Any] | None]:
        """The task's final state and its result (None unless completed), once it ended."""
        with anyio.fail_after(WAIT):
            async for event in self._events(task_id):
                if event.WhichOneof("event") == "outcome":
                    done = event.outcome
                    return done.task, struct_to_dict(done.result) if done.HasField("result") else None
        raise AssertionError("the event stream ended without an outcome")


def make_worker(target: str, **options: Any) -> Worker:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("shutdown_timeout", 2.0)
    return Worker(target, **options)


def add_asking_tool(worker: Worker, runs: list[str]) -> None:
    """Tool `ask`: asks the client a name (elicitation), answers "hello <name>"; logs each run."""

    @worker.tool(description="asks for a name")
    async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
        runs.append(ctx.task_id)
        answer = await ctx.elicit("Your name?", NAME_SCHEMA)
        name = (answer.content or {}).get("name", "?")
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"hello {name}")])


def running(worker: Worker) -> contextlib.AbstractAsyncContextManager[Worker]:
    """Run a worker for the body of the block; then shut it down (bounded)."""
    return running_worker(worker, stop_timeout=WAIT)


def text_of(result: dict[str, Any] | None) -> str:
    assert result is not None, "no result"
    parsed = types.CallToolResult.model_validate(result)
    content = parsed.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


async def stored(redis_url: str, task_id: str) -> TaskRecord:
    """The task as Redis holds it, read through a store of its own."""
    store = RedisTaskStore(redis_url)
    try:
        task = await store.get_task(task_id)
    finally:
        await store.close()
    assert task is not None, f"task {task_id} is not stored"
    return task


def assert_asked_and_answered_once(task: TaskRecord) -> None:
    """One request, answered once; the task ran on one worker (one attempt)."""
    assert [r.state for r in task.requests] == [RequestState.ANSWERED], task.requests
    assert task.attempts == 1, f"the task was dispatched {task.attempts} times"


class ServiceProcess:
    """A `taskservice serve --no-mcp` subprocess on 127.0.0.1:`port`, its log in `log`."""

    def __init__(self, port: int, store_url: str, log: Path) -> None:
        self.port = port
        self.target = f"127.0.0.1:{port}"
        self.log = log
        env = clean_env()
        command = [sys.executable, "-m", "taskservice", "serve", "--no-mcp"]
        command += ["--grpc-listen", self.target, "--store", store_url, "--log-level", "warning"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    async def serving(self) -> None:
        """Return once its health check says SERVING (the call waits for the port to open)."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=WAIT, wait_for_ready=True)
            except grpc.aio.AioRpcError as exc:
                raise AssertionError(f"{self.target} did not start: {exc}\n{self.output()}") from None
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """kill -9, by pid."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.kill()


async def health_becomes(target: str, status: int) -> None:
    """Return once a replica's serving status (grpc.health.v1 Watch) is `status`."""
    with anyio.fail_after(WAIT):
        async with grpc.aio.insecure_channel(target) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            try:
                async for reply in call:
                    if reply.status == status:
                        return
            finally:
                call.cancel()
        raise AssertionError("the health stream ended")
