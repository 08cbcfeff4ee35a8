"""Issue 5, "Must show": mcp 1.30's real client calls tools served by the Node worker.

`taskservice serve` (gRPC service and MCP bridge) and `node tests/node/node_worker.mjs`
(the `taskservice-client` npm package of client/node) run as processes; the
client is the Python SDK's `ClientSession` over streamable HTTP, calling the
tools as tasks: status, two elicitations, sampling, a thrown error, and a
cancellation that the worker sees.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.context import RequestContext
from mcp.shared.experimental.tasks.helpers import RELATED_TASK_METADATA_KEY

from ..processes import LoggedProcess, clean_env
from .support import CLIENT_NODE, HERE, ROOT, WAIT, Serve, node_or_skip, running, serve

WORKER_TOOLS = {"journey", "explode", "hold"}

# mcp 1.30 marks its (experimental) client task API deprecated; it is what this test drives.
pytestmark = pytest.mark.filterwarnings("ignore:The experimental tasks API is deprecated:DeprecationWarning")


class NodeWorker:
    def __init__(self, proc: LoggedProcess, events: Path) -> None:
        self.proc = proc
        self.events_file = events

    def events(self) -> list[dict[str, Any]]:
        if not self.events_file.exists():
            return []
        return [json.loads(line) for line in self.events_file.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, NodeWorker]]:
    node = node_or_skip(CLIENT_NODE)
    tmp = tmp_path_factory.mktemp("node-e2e")
    with serve(tmp) as service:
        events = tmp / "events.jsonl"
        env = clean_env(TASKSERVICE_TARGET=service.grpc_target, NODE_WORKER_EVENTS=str(events))
        proc = LoggedProcess(
            [node, str(HERE / "node_worker.mjs")], tmp / "node-worker.log", env=env, cwd=ROOT
        )
        with running(proc):
            try:
                yield service, NodeWorker(proc, events)
            except BaseException:
                print(service.proc.output())
                raise
            assert proc.stop() == 0, f"the worker did not stop cleanly:\n{proc.output()}"


class Client:
    """A ClientSession that answers elicitations and sampling and records status notifications."""

    def __init__(self) -> None:
        self.elicitations: list[types.ElicitRequestParams] = []
        self.samplings: list[types.CreateMessageRequestParams] = []
        self.statuses: list[types.TaskStatusNotificationParams] = []
        self.session: ClientSession | None = None

    async def elicit(
        self, context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.elicitations.append(params)
        assert isinstance(params, types.ElicitRequestFormParams)
        if "nights" in params.requestedSchema["properties"]:
            return types.ElicitResult(action="accept", content={"nights": 3})
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def sample(
        self, context: RequestContext[ClientSession, Any], params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.samplings.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="the tram 28"), model="fake-model"
        )

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.TaskStatusNotification
        ):
            self.statuses.append(message.root.params)

    def messages_of(self, task_id: str) -> list[str]:
        return [f"{s.status}: {s.statusMessage or ''}" for s in self.statuses if s.taskId == task_id]


@contextlib.asynccontextmanager
async def connect(service: Serve) -> AsyncIterator[tuple[ClientSession, Client]]:
    client = Client()
    async with (
        streamable_http_client(service.mcp_url) as (read, write, _),
        ClientSession(
            read,
            write,
            elicitation_callback=client.elicit,
            sampling_callback=client.sample,
            message_handler=client.on_message,
        ) as session,
    ):
        await session.initialize()

        async def tools_listed() -> bool:
            return WORKER_TOOLS.issubset(tool.name for tool in (await session.list_tools()).tools)

        await eventually(tools_listed)
        client.session = session
        yield session, client


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` until it is true (within WAIT seconds)."""
    with anyio.fail_after(WAIT):
        while True:
            if await check():
                return
            await anyio.sleep(0.05)


async def test_tools_are_listed_with_their_task_support(stack: tuple[Serve, NodeWorker]) -> None:
    service, _ = stack
    async with connect(service) as (session, _):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        journey = tools["journey"]
        assert journey.title == "Journey"
        assert journey.inputSchema["required"] == ["city"]
        assert journey.execution is not None
        assert journey.execution.taskSupport == "required"


async def test_status_two_elicitations_and_sampling(stack: tuple[Serve, NodeWorker]) -> None:
    service, worker = stack
    async with connect(service) as (session, client):
        created = await session.experimental.call_tool_as_task("journey", {"city": "Lisbon"})
        task_id = created.task.taskId
        with anyio.fail_after(WAIT):
            result = await session.experimental.get_task_result(task_id, types.CallToolResult)

        assert not result.isError
        assert result.content == [
            types.TextContent(type="text", text="Ada: 3 nights in Lisbon; see the tram 28")
        ]
        # The client was asked twice, then sampled, each request tied to the task.
        questions = [e.message for e in client.elicitations]
        assert questions == ["Who is travelling?", "How many nights in Lisbon?"]
        assert len(client.samplings) == 1
        sampling = client.samplings[0]
        assert sampling.maxTokens == 60
        assert sampling.systemPrompt == "Answer in five words."
        for params in [*client.elicitations, *client.samplings]:
            assert params.meta is not None
            related = params.meta.model_dump(by_alias=True)[RELATED_TASK_METADATA_KEY]
            assert related == {"taskId": task_id}

        final = await session.experimental.get_task(task_id)
        assert final.status == "completed"
        statuses = client.messages_of(task_id)
        assert "working: planning a trip to Lisbon" in statuses
        assert any(s.startswith("input_required") for s in statuses)
        assert "working: asking the model" in statuses

    (seen,) = [e for e in worker.events() if e.get("taskId") == task_id]
    assert seen["who"] == {"action": "accept", "content": {"name": "Ada"}}
    assert seen["nights"] == {"action": "accept", "content": {"nights": 3}}
    assert seen["sample"]["model"] == "fake-model"


async def test_a_thrown_error_fails_the_task(stack: tuple[Serve, NodeWorker]) -> None:
    service, _ = stack
    async with connect(service) as (session, client):
        created = await session.experimental.call_tool_as_task("explode", {})
        task_id = created.task.taskId
        with anyio.fail_after(WAIT):
            result = await session.experimental.get_task_result(task_id, types.CallToolResult)
        assert result.isError
        assert result.content == [types.TextContent(type="text", text="the flux capacitor is out of flux")]
        task = await session.experimental.get_task(task_id)
        assert task.status == "failed"
        assert task.statusMessage == "the flux capacitor is out of flux"
        assert "working: about to fail" in client.messages_of(task_id)


async def test_cancellation_is_seen_by_the_worker(stack: tuple[Serve, NodeWorker]) -> None:
    service, worker = stack
    async with connect(service) as (session, _):
        created = await session.experimental.call_tool_as_task("hold", {})
        task_id = created.task.taskId

        async def holding() -> bool:
            return (await session.experimental.get_task(task_id)).statusMessage == "holding"

        await eventually(holding)

        cancelled = await session.experimental.cancel_task(task_id)
        assert cancelled.status == "cancelled"

        def stops() -> list[dict[str, Any]]:
            return [e for e in worker.events() if e.get("taskId") == task_id and e.get("event") == "stopped"]

        async def worker_stopped() -> bool:
            return bool(stops())

        await eventually(worker_stopped)
        (stopped,) = stops()
        assert stopped == {
            "tool": "hold",
            "taskId": task_id,
            "event": "stopped",
            "isCancelled": True,
            "error": "TaskCancelledError",
        }
        assert (await session.experimental.get_task(task_id)).status == "cancelled"
