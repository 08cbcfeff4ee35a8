"""SIGTERM of `taskservice serve` and of `taskservice bridge` while MCP clients are connected, and a
standalone bridge's open `tasks/result` across a restart of its service: real processes (a service
on a SQLite file, the suite's worker, bridges) and mcp 1.30's real client.

A stop answers each request that waits with a JSON-RPC error that says to call again, ends the
sessions (an idle one holds its GET stream open) and exits 0; the task goes on, and a later
`tasks/result` (after a restart, with the same client token) gets its question and its result.
Every wait is bounded; nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import grpc
import grpc.aio
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.shared.context import RequestContext
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2 as bpb
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2_grpc, task_pb2

from taskservice.bridge.auth import owner_of, plain_call_owner

from ..processes import LoggedProcess, clean_env, free_port
from .conftest import (
    HERE,
    WAIT,
    Capabilities,
    Client,
    Stack,
    http_client,
    json_of,
    raises_mcp_error,
    stdio_bridge_client,
    taskservice_command,
)
from .requirements import requirement

TOKEN = "shutdown-test-token-0123456789"
ANSWER: dict[str, Any] = {"action": "accept", "content": {"ok": True}}
SHUTTING_DOWN = r"the server is shutting down; call tasks/result again"


@dataclasses.dataclass
class Setup:
    """Where the processes of one test live: the store, the ports, the client tokens, the logs."""

    root: Path
    grpc_port: int = dataclasses.field(default_factory=free_port)
    mcp_port: int = dataclasses.field(default_factory=free_port)
    started: list[LoggedProcess] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "gates").mkdir()
        (self.root / "clients.tokens").write_text(f"alice {TOKEN}\n")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def tokens_flag(self) -> str:
        return f"--mcp-tokens-file={self.root / 'clients.tokens'}"

    def start(self, name: str, *args: str, cwd: Path | None = None) -> LoggedProcess:
        command = [*taskservice_command(), *args] if args[0] in ("serve", "bridge") else list(args)
        env = clean_env(MCP_TEST_GATES=str(self.root / "gates"))
        process = LoggedProcess(command, self.root / f"{name}.log", env=env, cwd=cwd, name=name)
        self.started.append(process)
        return process

    async def serve(self, name: str, *, mcp: bool) -> LoggedProcess:
        """`taskservice serve` on the test's SQLite file: with its HTTP bridge, or gRPC alone."""
        process = self.start(
            name,
            "serve",
            f"--grpc-listen={self.target}",
            f"--store=sqlite:///{self.root / 'tasks.db'}",
            # The worker's lease must outlast the restarts.
            "--lease-ttl-ms=600000",
            "--log-level=info",
            *([f"--mcp-listen=127.0.0.1:{self.mcp_port}", self.tokens_flag] if mcp else ["--no-mcp"]),
        )
        await output(process, r"gRPC service listening")
        if mcp:
            await output(process, r"MCP bridge listening")
        return process

    async def bridge(self, name: str) -> LoggedProcess:
        """`taskservice bridge` over HTTP in front of the test's service."""
        process = self.start(
            name,
            "bridge",
            f"--service={self.target}",
            f"--mcp-listen=127.0.0.1:{self.mcp_port}",
            self.tokens_flag,
            "--log-level=info",
        )
        await output(process, r"MCP bridge listening")
        return process

    def worker(self) -> Stack:
        """The suite's worker (tests/mcp/worker_tools.py) against the service, once it serves its tools."""
        worker = self.start(
            "worker",
            sys.executable,
            "-m",
            "taskservice_client",
            "run",
            "worker_tools:worker",
            "--target",
            self.target,
            cwd=HERE,
        )
        url = f"http://127.0.0.1:{self.mcp_port}/mcp"
        stack = Stack(self.target, url, self.root / "gates", self.root, worker)
        stack.wait_for_tools({"ask_once"})
        return stack


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    processes = Setup(tmp_path)
    try:
        yield processes
    finally:
        for process in reversed(processes.started):
            process.stop()


async def output(process: LoggedProcess, pattern: str) -> None:
    """Wait (bounded) until the process printed `pattern`."""
    with anyio.fail_after(WAIT):
        while re.search(pattern, process.output()) is None:
            assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()[-4000:]}"
            await anyio.sleep(0.02)


async def exit_status(process: LoggedProcess) -> int:
    """The process's exit status, once it ended (bounded: a process that hangs fails the test)."""
    return await asyncio.to_thread(process.popen.wait, WAIT)


class HeldQuestion:
    """An elicitation callback that answers only once `release` is called."""

    def __init__(self) -> None:
        self.released = anyio.Event()

    def release(self) -> None:
        self.released.set()

    async def __call__(
        self, context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        await self.released.wait()
        return types.ElicitResult.model_validate(ANSWER)


async def accept(
    context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
) -> types.ElicitResult:
    return types.ElicitResult.model_validate(ANSWER)


async def asked(client: Client) -> None:
    """Wait until the client got a question (its callback may hold it)."""
    await client.wait_until(lambda: client.received_requests.get("elicitation/create"))


async def interrupted_by_sigterm(stack: Stack, stopped: LoggedProcess) -> str:
    """With an idle session open and a `tasks/result` whose question the client holds unanswered,
    SIGTERM `stopped` (the process serving MCP): it must exit 0, and the `tasks/result` must end
    with the error that says to call again. The task's id."""
    held = HeldQuestion()
    async with (
        http_client(stack, Capabilities(), token=TOKEN) as idle,
        http_client(stack, Capabilities(elicitation=True), token=TOKEN) as client,
    ):
        await idle.tool_names()  # initialized: its GET stream stays open
        client.elicitation = held
        task_id = (await client.call_as_task("ask_once")).task.taskId
        waiting = asyncio.ensure_future(client.result(task_id))
        await asked(client)
        stopped.popen.send_signal(signal.SIGTERM)
        assert await exit_status(stopped) == 0, stopped.output()[-4000:]
        # mcp 1.30's client reads what came after the question once its callback returned.
        held.release()
        with raises_mcp_error(types.INTERNAL_ERROR, match=SHUTTING_DOWN):
            await waiting
    assert "Traceback" not in stopped.output(), stopped.output()[-4000:]
    return task_id


async def finished_once(stack: Stack, task_id: str) -> None:
    """A new session of the same principal gets the task's question (once) and its result."""
    async with http_client(stack, Capabilities(elicitation=True), token=TOKEN) as client:
        client.elicitation = accept
        assert json_of(await client.result(task_id)) == ANSWER
        assert len(client.received_requests["elicitation/create"]) == 1


@requirement("design:stop-answers-waiting-requests")
async def test_sigterm_of_serve_answers_waiting_requests_ends_the_sessions_and_exits_0(setup: Setup) -> None:
    service = await setup.serve("serve-1", mcp=True)
    stack = setup.worker()
    task_id = await interrupted_by_sigterm(stack, service)
    # Nothing was lost: after a restart on the same file the question is still pending.
    await setup.serve("serve-2", mcp=True)
    await finished_once(stack, task_id)


@requirement("design:stop-answers-waiting-requests")
async def test_sigterm_of_a_bridge_answers_waiting_requests_ends_the_sessions_and_exits_0(
    setup: Setup,
) -> None:
    await setup.serve("serve", mcp=False)
    stack = setup.worker()
    task_id = await interrupted_by_sigterm(stack, await setup.bridge("bridge-1"))
    await setup.bridge("bridge-2")
    await finished_once(stack, task_id)


@requirement("design:stop-answers-waiting-requests")
async def test_sigterm_of_a_bridge_cancels_the_task_of_a_plain_tools_call_it_cuts_off(setup: Setup) -> None:
    """A plain tools/call (no `task`) runs as a task no other request can reach: cut off by the
    stop, it is cancelled rather than left to run with nobody to read it (and to run twice when
    the client calls again), and the error says so."""
    await setup.serve("serve", mcp=False)
    stack = setup.worker()
    bridge = await setup.bridge("bridge")
    held = HeldQuestion()
    async with http_client(stack, Capabilities(elicitation=True), token=TOKEN) as client:
        client.elicitation = held
        calling = asyncio.ensure_future(client.session.call_tool("ask_once", {}))
        await asked(client)
        bridge.popen.send_signal(signal.SIGTERM)
        assert await exit_status(bridge) == 0, bridge.output()[-4000:]
        held.release()
        cancelled = r"call tools/call again \(the call was cancelled\)$"
        with raises_mcp_error(types.INTERNAL_ERROR, match=cancelled):
            await calling
    async with grpc.aio.insecure_channel(setup.target) as channel:
        sync_typed = bridge_service_pb2_grpc.BridgeServiceStub(channel)
        stub = cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", sync_typed)
        listed = await stub.ListTasks(bpb.ListTasksRequest(owner=plain_call_owner(owner_of("alice"))))
    assert [task.status for task in listed.tasks] == [task_pb2.TASK_STATUS_CANCELLED]
    assert listed.tasks[0].status_message == "The server shut down during the tools/call."


@requirement("design:result-waiter-re-attaches")
async def test_an_open_tasks_result_re_attaches_through_a_restart_of_the_bridges_service(
    setup: Setup, transport: str
) -> None:
    """The service is killed while the client holds the task's question; the client answers while
    the service is down; the service restarts on the same file. The `tasks/result` open through a
    standalone bridge all along ends with the task's result, and the question was asked once."""
    service = await setup.serve("serve-1", mcp=False)
    stack = setup.worker()
    capabilities = Capabilities(elicitation=True)
    if transport == "http":
        await setup.bridge("bridge")
        connected = http_client(stack, capabilities, token=TOKEN)
    else:
        connected = stdio_bridge_client(stack, capabilities)
    held = HeldQuestion()
    async with connected as client:
        client.elicitation = held
        task_id = (await client.call_as_task("ask_once")).task.taskId
        waiting = asyncio.ensure_future(client.result(task_id))
        await asked(client)
        service.popen.kill()
        assert await exit_status(service) == -signal.SIGKILL
        held.release()
        await client.wait_until(lambda: client.sent_answers or None)
        await setup.serve("serve-2", mcp=False)
        assert json_of(await waiting) == ANSWER
        assert len(client.received_requests["elicitation/create"]) == 1
