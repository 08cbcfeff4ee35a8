"""Fixtures of the MCP conformance suite: a real `taskservice serve`, a real worker, real MCP clients.

One `taskservice serve` (memory store, free loopback ports) and one worker
process (tests/mcp/worker_tools.py) serve the whole suite. Tests drive them
with mcp 1.30's `ClientSession` over streamable HTTP (the served bridge at
/mcp; a new MCP session per test) and over stdio (`taskservice bridge --stdio`
against the same service). A stdio session is a process, so the stdio tests
share one unless they need a session of their own (other capabilities, or an
empty task list); the suite's tests therefore share one event loop. Tasks
belong to the session that created them: tests look only at their own tasks.

Every wait is bounded (WAIT seconds); nothing asserts on elapsed time. The
worker's tools wait on *gates* (files the test creates) where a test must see
one step before the next happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import re
import secrets
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import grpc
import httpx
import pytest
import pytest_asyncio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import types
from mcp.client.experimental.task_handlers import ExperimentalTaskHandlers
from mcp.client.experimental.tasks import ExperimentalClientFeatures
from mcp.client.session import ClientSession, ElicitationFnT, SamplingFnT
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.context import RequestContext
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage
from mcp.shared.session import RequestResponder
from pytest_asyncio import is_async_test
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc

from ..processes import LoggedProcess, clean_env
from . import worker_tools

HERE = Path(__file__).resolve().parent
WAIT = 30.0
"""Bound of every wait in the suite, in seconds."""

# The service's limits for the suite. The lease is long on purpose: a worker that learned of a
# cancellation only from its heartbeats (every lease/3 = 40 s) would miss the WAIT bound.
MAX_TTL_MS = 600_000
DEFAULT_TTL_MS = 300_000
LEASE_TTL_MS = 120_000
POLL_INTERVAL_MS = 200

RELATED_TASK = "io.modelcontextprotocol/related-task"
TRANSPORTS = ("http", "stdio")

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requirement(*ids): the requirements (tests/mcp/requirements.py) a test case covers"
    )


# ----------------------------------------------------------------------- processes


def taskservice_command() -> list[str]:
    script = Path(sys.executable).with_name("taskservice")
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskservice"]


@dataclasses.dataclass
class Stack:
    """The running service (with its HTTP bridge) and worker the suite talks to."""

    grpc_target: str
    mcp_url: str
    gates: Path
    logs: Path
    worker: LoggedProcess

    def open_gate(self, name: str, text: str = "open") -> None:
        """Let a tool waiting on gate `name` go on (see worker_tools.wait_gate)."""
        partial = self.gates / f"{name}.partial"
        partial.write_text(text)
        partial.replace(self.gates / name)

    async def report(self, name: str) -> dict[str, Any]:
        """What a tool reported under `name` (worker_tools.report), waiting (bounded) for it."""
        path = self.gates / name
        with anyio.fail_after(WAIT):
            while True:
                if path.exists():
                    data: dict[str, Any] = json.loads(path.read_text())
                    return data
                await anyio.sleep(0.01)

    def start_worker(self, module: str, name: str, *, cwd: Path = HERE) -> LoggedProcess:
        """Another worker process serving `module:worker` (a module file in `cwd`)."""
        return LoggedProcess(
            [
                sys.executable,
                "-m",
                "taskservice_client",
                "run",
                f"{module}:worker",
                "--target",
                self.grpc_target,
            ],
            self.logs / f"{name}.log",
            cwd=cwd,
            env=clean_env(MCP_TEST_GATES=str(self.gates)),
            name=name,
        )

    def served_tools(self) -> set[str]:
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = bridge_service_pb2_grpc.BridgeServiceStub(channel)
            listed = stub.ListTools(bridge_service_pb2.ListToolsRequest(), timeout=WAIT)
        return {tool.name for tool in listed.tools}

    def wait_for_tools(self, present: set[str], absent: frozenset[str] = frozenset()) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            tools = self.served_tools()
            if present <= tools and not (absent & tools):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"served tools {sorted(tools)}: want {sorted(present)}, not {sorted(absent)}"
                )
            time.sleep(0.02)


WORKER_TOOLS = frozenset(worker_tools.worker.tools)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`taskservice serve` (memory store, free loopback ports) and the suite's worker, for the session."""
    root = tmp_path_factory.mktemp("mcp")
    gates = root / "gates"
    gates.mkdir()
    serve = LoggedProcess(
        [
            *taskservice_command(),
            "serve",
            "--grpc-listen=127.0.0.1:0",
            "--mcp-listen=127.0.0.1:0",
            "--store=memory://",
            f"--max-ttl-ms={MAX_TTL_MS}",
            f"--default-ttl-ms={DEFAULT_TTL_MS}",
            f"--lease-ttl-ms={LEASE_TTL_MS}",
            f"--poll-interval-ms={POLL_INTERVAL_MS}",
            "--log-level=info",
        ],
        root / "serve.log",
        cwd=root,
        env=clean_env(),
        name="taskservice serve",
    )
    worker: LoggedProcess | None = None
    try:
        grpc_port = serve.wait_for(r"gRPC service listening on 127\.0\.0\.1:(\d+)", WAIT).group(1)
        mcp_port = serve.wait_for(r"MCP bridge listening on http://127\.0\.0\.1:(\d+)/mcp", WAIT).group(1)
        target = f"127.0.0.1:{grpc_port}"
        worker = LoggedProcess(
            [sys.executable, "-m", "taskservice_client", "run", "worker_tools:worker", "--target", target],
            root / "worker.log",
            cwd=HERE,
            env=clean_env(MCP_TEST_GATES=str(gates)),
            name="worker",
        )
        running = Stack(target, f"http://127.0.0.1:{mcp_port}/mcp", gates, root, worker)
        running.wait_for_tools(set(WORKER_TOOLS))
        yield running
    finally:
        if worker is not None:
            worker.stop()
        serve.stop()


# ------------------------------------------------------------------------ clients


def tasks_api(session: ClientSession) -> ExperimentalClientFeatures:
    """`session.experimental` without its deprecation warning (the tasks API is what we test)."""
    return ExperimentalClientFeatures(session)


async def _no_elicitation(
    context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message="this test expects no elicitation")


async def _no_sampling(
    context: RequestContext[ClientSession, Any], params: types.CreateMessageRequestParams
) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message="this test expects no sampling")


Answer = types.JSONRPCResponse | types.JSONRPCError


class Client:
    """One MCP client session (mcp 1.30's ClientSession), with what it received recorded.

    `elicitation` and `sampling` answer the server's requests; they can be
    changed while the session runs (the shared stdio session serves many tests).
    `rewrite`, when set, replaces each answer the session sends (to send what
    the SDK's models would not let a callback answer).
    """

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.elicitation: ElicitationFnT = _no_elicitation
        self.sampling: SamplingFnT = _no_sampling
        self.rewrite: Callable[[Answer], Answer] | None = None
        self.notifications: list[types.ServerNotification] = []
        self.sent_requests: dict[str, list[types.RequestId]] = {}
        self.received_requests: dict[str, list[types.RequestId]] = {}
        self.sent_answers: list[types.RequestId] = []
        self.called_off: list[types.RequestId] = []
        self.session_id: str | None = None
        self._session: ClientSession | None = None
        self._changed = anyio.Event()
        self._drop: dict[str, anyio.Event] = {}

    @property
    def session(self) -> ClientSession:
        assert self._session is not None
        return self._session

    @property
    def tasks(self) -> ExperimentalClientFeatures:
        return tasks_api(self.session)

    def reset(self) -> None:
        """Forget what was received and the callbacks given (before another test uses the session)."""
        self.elicitation = _no_elicitation
        self.sampling = _no_sampling
        self.rewrite = None
        self.notifications.clear()
        self.sent_requests.clear()
        self.received_requests.clear()
        self.sent_answers.clear()
        self.called_off.clear()
        self._drop.clear()

    # The ClientSession's callbacks.

    async def _elicit(
        self, context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        return await self.elicitation(context, params)

    async def _sample(
        self, context: RequestContext[ClientSession, Any], params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        return await self.sampling(context, params)

    async def _on_message(
        self,
        message: RequestResponder[types.ServerRequest, types.ClientResult]
        | types.ServerNotification
        | Exception,
    ) -> None:
        if isinstance(message, types.ServerNotification):
            self.notifications.append(message)
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # What the transport carries, seen between it and the ClientSession.

    def _incoming(self, message: SessionMessage | Exception) -> bool:
        """Whether to pass a message on to the session (False drops it: see `drop_next`)."""
        if isinstance(message, SessionMessage) and isinstance(message.message.root, types.JSONRPCRequest):
            request = message.message.root
            dropped = self._drop.pop(request.method, None)
            if dropped is not None:
                dropped.set()
                return False
            # Seen here, as it arrives: the session reads it only once the callback it runs returned.
            self.received_requests.setdefault(request.method, []).append(request.id)
            self._wake()
        notification = message.message.root if isinstance(message, SessionMessage) else None
        if (
            isinstance(notification, types.JSONRPCNotification)
            and notification.method == "notifications/cancelled"
            and notification.params is not None
        ):
            # Seen here, as it arrives: the session reads it only once the callback it calls off
            # returned (mcp 1.30's client runs its callbacks in its receive loop).
            self.called_off.append(notification.params["requestId"])
            self._wake()
        return True

    def _outgoing(self, message: SessionMessage) -> bool:
        root = message.message.root
        if isinstance(root, types.JSONRPCRequest):
            self.sent_requests.setdefault(root.method, []).append(root.id)
            self._wake()
        elif isinstance(root, types.JSONRPCResponse | types.JSONRPCError):
            if self.rewrite is not None:
                root = message.message.root = self.rewrite(root)
            self.sent_answers.append(root.id)
            self._wake()
        return True

    async def send_answer(self, answer: Answer) -> None:
        """Send a response of our own, as if to a request of the server's."""
        await self.session._write_stream.send(SessionMessage(types.JSONRPCMessage(answer)))

    def drop_next(self, method: str) -> anyio.Event:
        """Lose the next request of `method` the server sends, as a client that went away would: it
        never reaches the ClientSession, so it is never answered. The event is set when it happened."""
        event = self._drop[method] = anyio.Event()
        return event

    # Reading what arrived.

    def status_notifications(self, task_id: str) -> list[types.TaskStatusNotificationParams]:
        return [
            n.root.params
            for n in self.notifications
            if isinstance(n.root, types.TaskStatusNotification) and n.root.params.taskId == task_id
        ]

    def progress_notifications(self, token: types.ProgressToken) -> list[types.ProgressNotificationParams]:
        return [
            n.root.params
            for n in self.notifications
            if isinstance(n.root, types.ProgressNotification) and n.root.params.progressToken == token
        ]

    def tools_changed(self) -> int:
        return sum(isinstance(n.root, types.ToolListChangedNotification) for n in self.notifications)

    async def wait_until(self, check: Callable[[], T | None]) -> T:
        """Wait (bounded) until `check()` gives a value, checking again as notifications come in and
        requests go out."""
        with anyio.fail_after(WAIT):
            while True:
                value = check()
                if value is not None:
                    return value
                await self._changed.wait()

    async def wait_for_status(
        self, task_id: str, status: types.TaskStatus, message: str | None = None
    ) -> types.TaskStatusNotificationParams:
        """The first status notification of the task with this status (and message, if given)."""

        def found() -> types.TaskStatusNotificationParams | None:
            for params in self.status_notifications(task_id):
                if params.status == status and (message is None or params.statusMessage == message):
                    return params
            return None

        return await self.wait_until(found)

    # Requests.

    async def call_as_task(
        self, tool: str, arguments: dict[str, Any] | None = None, *, ttl: int = 60_000, **meta: Any
    ) -> types.CreateTaskResult:
        with anyio.fail_after(WAIT):
            return await self.tasks.call_tool_as_task(tool, arguments or {}, ttl=ttl, meta=meta or None)

    async def result(self, task_id: str) -> types.CallToolResult:
        """tasks/result, bounded by WAIT."""
        with anyio.fail_after(WAIT):
            return await self.tasks.get_task_result(task_id, types.CallToolResult)

    async def get(self, task_id: str) -> types.GetTaskResult:
        with anyio.fail_after(WAIT):
            return await self.tasks.get_task(task_id)

    async def tool_names(self) -> set[str]:
        with anyio.fail_after(WAIT):
            return {tool.name for tool in (await self.session.list_tools()).tools}

    async def cancel_request(self, request_id: types.RequestId) -> None:
        """notifications/cancelled for one of our requests."""
        await self.session.send_notification(
            types.ClientNotification(
                types.CancelledNotification(
                    params=types.CancelledNotificationParams(
                        requestId=request_id, reason="the client dropped out"
                    )
                )
            )
        )


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a client session declares at initialize."""

    elicitation: bool = False
    sampling: bool = False
    sampling_tools: bool = False
    task_handlers: ExperimentalTaskHandlers | None = None


SHARED = Capabilities(elicitation=True, sampling=True)
"""What the shared stdio session declares."""


async def _pump(
    source: MemoryObjectReceiveStream[Any], sink: MemoryObjectSendStream[Any], keep: Callable[[Any], bool]
) -> None:
    """Pass what `keep` lets through from one stream to the other, until either side closes."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async with source, sink:
            async for item in source:
                if keep(item):
                    await sink.send(item)


@contextlib.asynccontextmanager
async def open_client(
    read: MemoryObjectReceiveStream[SessionMessage | Exception],
    write: MemoryObjectSendStream[SessionMessage],
    transport: str,
    capabilities: Capabilities,
    *,
    initialize: bool = True,
) -> AsyncIterator[Client]:
    """A ClientSession over a transport's streams, with a Client recording what passes between them."""
    client = Client(transport)
    # Unbounded towards the session, so that `Client._incoming` sees each message as it arrives,
    # also while the session's receive loop is busy in a callback.
    to_session, session_read = anyio.create_memory_object_stream[SessionMessage | Exception](math.inf)
    session_write, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    with warnings.catch_warnings():
        # ClientSession warns that its experimental tasks API goes away in mcp 2; it is what we test.
        warnings.simplefilter("ignore", DeprecationWarning)
        session = ClientSession(
            session_read,
            session_write,
            elicitation_callback=client._elicit if capabilities.elicitation else None,
            sampling_callback=client._sample if capabilities.sampling else None,
            sampling_capabilities=types.SamplingCapability(tools=types.SamplingToolsCapability())
            if capabilities.sampling_tools
            else None,
            message_handler=client._on_message,
            experimental_task_handlers=capabilities.task_handlers,
        )
    client._session = session
    async with anyio.create_task_group() as pumps:
        pumps.start_soon(_pump, read, to_session, client._incoming)
        pumps.start_soon(_pump, from_session, write, client._outgoing)
        async with session:
            if initialize:
                with anyio.fail_after(WAIT):
                    await session.initialize()
            yield client
        pumps.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def http_client(
    stack: Stack,
    capabilities: Capabilities,
    *,
    session_id: str | None = None,
    terminate: bool = True,
    token: str | None = None,
) -> AsyncIterator[Client]:
    """A client over streamable HTTP. With `session_id`: a new connection to that existing MCP session
    (no initialize). With `terminate=False`: leaving does not end the MCP session. With `token`: sent
    as `Authorization: Bearer` (a bridge with client tokens)."""
    headers = {"mcp-session-id": session_id} if session_id else {}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    finished = False
    try:
        async with (
            httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(WAIT, read=300)) as http,
            streamable_http_client(stack.mcp_url, http_client=http, terminate_on_close=terminate) as (
                read,
                write,
                get_session_id,
            ),
            open_client(read, write, "http", capabilities, initialize=session_id is None) as client,
        ):
            client.session_id = session_id or get_session_id()
            yield client
            finished = True
    except* anyio.BrokenResourceError:
        # The same closing race as over stdio (see stdio_bridge_client), in the SDK's
        # streamable HTTP reader.
        if not finished:
            raise


@contextlib.asynccontextmanager
async def stdio_bridge_client(stack: Stack, capabilities: Capabilities) -> AsyncIterator[Client]:
    """A client over stdio, its server a `taskservice bridge --stdio` process against the stack's service."""
    command, *args = taskservice_command()
    server = StdioServerParameters(
        command=command,
        args=[*args, "bridge", "--stdio", "--service", stack.grpc_target, "--log-level", "warning"],
        env=clean_env(),
    )
    with (stack.logs / "stdio-bridges.log").open("a") as errlog:
        finished = False
        try:
            async with (
                stdio_client(server, errlog=errlog) as (read, write),
                open_client(read, write, "stdio", capabilities) as client,
            ):
                yield client
                finished = True
        except* anyio.BrokenResourceError:
            # Once the session has closed its end, mcp 1.30's stdio_client raises from
            # its reader when one more message (a late status notification) arrives
            # before the bridge process is gone. Only that closing race is forgiven:
            # a test body that raised is reported as it is.
            if not finished:
                raise


class Connector:
    """Opens MCP client sessions to the stack over one transport.

    Over HTTP every `connect` is a new session. Over stdio a session is a
    bridge process, so tests share one (declaring elicitation and sampling)
    unless they need a session of their own: `own=True`, or capabilities other
    than the shared session's.
    """

    def __init__(self, stack: Stack, transport: str, shared: Client | None = None) -> None:
        self.stack = stack
        self.transport = transport
        self.shared = shared

    @contextlib.asynccontextmanager
    async def connect(
        self,
        *,
        elicitation: ElicitationFnT | None = None,
        sampling: SamplingFnT | None = None,
        sampling_tools: bool = False,
        task_handlers: ExperimentalTaskHandlers | None = None,
        own: bool = False,
    ) -> AsyncIterator[Client]:
        """A session declaring elicitation / sampling exactly when a callback for it is given (a test
        that does not care about capabilities may get the shared stdio session, which declares both)."""
        capabilities = Capabilities(
            elicitation is not None, sampling is not None, sampling_tools, task_handlers
        )
        if self.transport == "http":
            opened = http_client(self.stack, capabilities)
        elif self.shared is not None and not own and not sampling_tools and task_handlers is None:
            opened = self._shared()
        else:
            opened = stdio_bridge_client(self.stack, capabilities)
        async with opened as client:
            client.elicitation = elicitation or _no_elicitation
            client.sampling = sampling or _no_sampling
            yield client

    @contextlib.asynccontextmanager
    async def _shared(self) -> AsyncIterator[Client]:
        assert self.shared is not None
        self.shared.reset()
        try:
            yield self.shared
        finally:
            self.shared.reset()


class SharedSession:
    """A client session that outlives one test, entered and left in a task of its own (anyio's cancel
    scopes must be left in the task that entered them; pytest fixtures may run setup and teardown in
    different tasks)."""

    def __init__(self, opened: contextlib.AbstractAsyncContextManager[Client]) -> None:
        self._opened = opened
        self._client: Client | None = None
        self._ready = anyio.Event()
        self._leave = anyio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def _run(self) -> None:
        try:
            async with self._opened as client:
                self._client = client
                self._ready.set()
                await self._leave.wait()
        except BaseException as error:
            self._error = error
            self._ready.set()
            raise

    async def __aenter__(self) -> Client:
        self._runner = asyncio.get_running_loop().create_task(self._run())
        with anyio.fail_after(WAIT):
            await self._ready.wait()
        if self._client is None:
            raise RuntimeError("the shared session did not start") from self._error
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        self._leave.set()
        if self._runner is not None:
            with anyio.fail_after(WAIT), contextlib.suppress(Exception):
                await self._runner


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The suite's tests share one event loop, where the shared stdio session lives."""
    marker = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if is_async_test(item) and HERE in Path(str(item.path)).parents:
            item.add_marker(marker, append=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_stdio(stack: Stack) -> AsyncIterator[Client]:
    """One stdio bridge process and session for the tests that need no session of their own."""
    async with SharedSession(stdio_bridge_client(stack, SHARED)) as client:
        yield client


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def mcp(stack: Stack, transport: str, request: pytest.FixtureRequest) -> Connector:
    """Opens MCP sessions over the test's transport (each test runs over HTTP and over stdio)."""
    shared: Client | None = request.getfixturevalue("shared_stdio") if transport == "stdio" else None
    return Connector(stack, transport, shared)


# ------------------------------------------------------------------------ helpers


def gate_name() -> str:
    return "g-" + secrets.token_hex(6)


def new_client_task(metadata: types.TaskMetadata) -> types.Task:
    """A task of the client's own (for a task-augmented request), working, polled every 20 ms."""
    now = datetime.now(UTC)
    return types.Task(
        taskId=f"client-{secrets.token_hex(4)}",
        status="working",
        createdAt=now,
        lastUpdatedAt=now,
        ttl=metadata.ttl,
        pollInterval=20,
    )


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def json_of(result: types.CallToolResult) -> Any:
    assert not result.isError, text_of(result)
    return json.loads(text_of(result))


def nested(levels: int) -> Any:
    """A string inside `levels` objects: {"a": {"a": ... "end"}}."""
    data: Any = "end"
    for _ in range(levels):
        data = {"a": data}
    return data


@contextlib.contextmanager
def raises_mcp_error(code: int, *, match: str | None = None) -> Iterator[pytest.ExceptionInfo[McpError]]:
    """A JSON-RPC error with this code (McpError), not a result."""
    with pytest.raises(McpError) as caught:
        yield caught
    assert caught.value.error.code == code, caught.value.error
    if match is not None:
        assert re.search(match, caught.value.error.message), caught.value.error.message


async def all_task_ids(client: Client) -> list[str]:
    """The ids tasks/list gives, following every cursor."""
    ids: list[str] = []
    cursor: str | None = None
    with anyio.fail_after(WAIT):
        while True:
            page = await client.tasks.list_tasks(cursor)
            ids.extend(task.taskId for task in page.tasks)
            cursor = page.nextCursor
            if cursor is None:
                return ids
