"""The baselines, each run as a server process of its own.

`python -m bench.servers echo --listen 127.0.0.1:0`: a bare grpc.aio server with
the TaskService's method paths and message types, and no logic: `UpdateStatus`
and `CreateStoredTask` answer a Task built from the request (the same message
sizes as the service's answers), `Elicit` sends the pending request the service
would send, then holds the stream idle until the client leaves.

`python -m bench.servers sdk --listen 127.0.0.1:0`: the MCP SDK's in-process
tasks server (mcp 1.30 low-level `Server`, `enable_tasks()`, `run_task`) with
the tools of bench.worker_tools, over streamable HTTP at /mcp. With
`--notify-every-status` it also sends `notifications/tasks/status` when a task
goes `input_required` and back to `working`, as the bridge does (the SDK's own
`elicit` changes the status without a notification; it notifies the terminal
status only): the same messages reach the client from both servers.

Each prints `listening on ADDRESS` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import socket
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2, timestamp_pb2
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2

from bench.worker_tools import ASK_SCHEMA, ONE_STEP_TEXT, answer_text

pb = task_service_pb2
SERVICE = "mcptasks.v1.TaskService"


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(time.time_ns() // 1_000_000)
    return ts


def _task(
    task_id: str, status_message: str = "", status: int = task_pb2.TASK_STATUS_WORKING
) -> task_pb2.Task:
    now = _now()
    return task_pb2.Task(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        status_message=status_message,
        created_at=now,
        last_updated_at=now,
        ttl_ms=3_600_000,
        poll_interval_ms=1_000,
    )


class Echo:
    """The handlers of the bare server."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()  # never set: idle streams wait on it until cancelled

    async def update_status(self, request: pb.UpdateStatusRequest, context: Any) -> pb.UpdateStatusResponse:
        return pb.UpdateStatusResponse(task=_task(request.task_id, request.status_message))

    async def create_stored_task(
        self, request: pb.CreateStoredTaskRequest, context: Any
    ) -> pb.CreateStoredTaskResponse:
        return pb.CreateStoredTaskResponse(task=_task(request.task_id or secrets.token_urlsafe(16)))

    async def elicit(self, request: pb.ElicitRequest, context: Any) -> AsyncIterator[pb.ElicitResponse]:
        params = struct_pb2.Struct()
        params.update(
            {
                "mode": "form",
                "message": request.message,
                "requestedSchema": dict(request.requested_schema.items()),
                "_meta": {"io.modelcontextprotocol/related-task": {"taskId": request.task_id}},
            }
        )
        pending = task_pb2.PendingRequest(
            request_id=request.request_id or secrets.token_urlsafe(16),
            task_id=request.task_id,
            method="elicitation/create",
            params=params,
            sequence=1,
            created_at=_now(),
        )
        yield pb.ElicitResponse(
            task=_task(request.task_id, status=task_pb2.TASK_STATUS_INPUT_REQUIRED), pending=pending
        )
        await self.idle.wait()


async def serve_echo(listen: str) -> None:
    from taskservice.grpc_api.server import server_options  # the same gRPC options as the service

    echo = Echo()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "UpdateStatus": grpc.unary_unary_rpc_method_handler(
                echo.update_status,
                request_deserializer=pb.UpdateStatusRequest.FromString,
                response_serializer=pb.UpdateStatusResponse.SerializeToString,
            ),
            "CreateStoredTask": grpc.unary_unary_rpc_method_handler(
                echo.create_stored_task,
                request_deserializer=pb.CreateStoredTaskRequest.FromString,
                response_serializer=pb.CreateStoredTaskResponse.SerializeToString,
            ),
            "Elicit": grpc.unary_stream_rpc_method_handler(
                echo.elicit,
                request_deserializer=pb.ElicitRequest.FromString,
                response_serializer=pb.ElicitResponse.SerializeToString,
            ),
        },
    )
    server = grpc.aio.server(options=server_options(1_048_576))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def _notifying_store() -> Any:
    """An SDK InMemoryTaskStore that sends notifications/tasks/status for each change of a
    task to a status that is not terminal, to the session the task was created in."""
    from mcp import types
    from mcp.server.session import ServerSession
    from mcp.shared.experimental.tasks.helpers import is_terminal
    from mcp.shared.experimental.tasks.in_memory_task_store import InMemoryTaskStore

    class NotifyingTaskStore(InMemoryTaskStore):
        def __init__(self) -> None:
            super().__init__()
            self.sessions: dict[str, ServerSession] = {}

        async def update_task(
            self, task_id: str, status: types.TaskStatus | None = None, status_message: str | None = None
        ) -> types.Task:
            # The stored task, not get_task: that one scans every task for expiry and copies
            # the task, work the SDK's own update does not do and the baseline must not pay.
            stored = self._tasks.get(task_id)
            was = stored.task.status if stored is not None else None
            task = await super().update_task(task_id, status, status_message)
            session = self.sessions.get(task_id)
            if session is not None and task.status != was and not is_terminal(task.status):
                params = types.TaskStatusNotificationParams(**task.model_dump())
                await session.send_notification(
                    types.ServerNotification(types.TaskStatusNotification(params=params))
                )
            return task

    return NotifyingTaskStore()


def build_sdk_server(*, notify_every_status: bool = False) -> Any:
    """The SDK's own tasks server with the benchmark's two tools."""
    from mcp import types
    from mcp.server.experimental.task_context import ServerTaskContext
    from mcp.server.lowlevel import Server

    server: Server[Any, Any] = Server("bench-sdk-tasks")
    store = _notifying_store() if notify_every_status else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.experimental.enable_tasks(store=store)

    tools = [
        types.Tool(
            name="one_step",
            description="Completes at once with a short text.",
            inputSchema={"type": "object"},
            execution=types.ToolExecution(taskSupport=types.TASK_REQUIRED),
        ),
        types.Tool(
            name="ask_once",
            description="Asks the user one question, then completes with the answer.",
            inputSchema={"type": "object"},
            execution=types.ToolExecution(taskSupport=types.TASK_REQUIRED),
        ),
    ]

    @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        return tools

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(
        name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult | types.CreateTaskResult:
        ctx = server.request_context
        ctx.experimental.validate_task_mode(types.TASK_REQUIRED)

        async def one_step(task: ServerTaskContext) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(type="text", text=ONE_STEP_TEXT)])

        async def ask_once(task: ServerTaskContext) -> types.CallToolResult:
            if store is not None:
                store.sessions[task.task_id] = ctx.session
            try:
                answer = await task.elicit(message="Go on?", requestedSchema=ASK_SCHEMA)
            finally:
                if store is not None:
                    store.sessions.pop(task.task_id, None)
            return types.CallToolResult(content=[types.TextContent(type="text", text=answer_text(answer))])

        created: types.CreateTaskResult = await ctx.experimental.run_task(
            one_step if name == "one_step" else ask_once
        )
        return created

    return server


async def serve_sdk(listen: str, *, notify_every_status: bool = False) -> None:
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    manager = StreamableHTTPSessionManager(
        app=build_sdk_server(notify_every_status=notify_every_status), stateless=False
    )

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    class Endpoint:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await endpoint(scope, receive, send)

    app = Starlette(routes=[Route("/mcp", endpoint=Endpoint())], lifespan=lifespan)
    host, _, port = listen.rpartition(":")
    sock = socket.create_server((host, int(port)))
    # What uvicorn does with a host and port: its connections send without Nagle's delay (asyncio
    # sets TCP_NODELAY only on sockets made with IPPROTO_TCP, which create_server's are not).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    print(f"listening on http://{host}:{sock.getsockname()[1]}/mcp", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=("echo", "sdk"))
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument(
        "--notify-every-status",
        action="store_true",
        help="sdk: notify input_required and working too, as the bridge does",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_echo(args.listen)
            if args.kind == "echo"
            else serve_sdk(args.listen, notify_every_status=args.notify_every_status)
        )


if __name__ == "__main__":
    main()
