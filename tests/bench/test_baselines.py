"""The whole-task baselines send the client what they claim to: the SDK's server notifies a
task's terminal status only; with --notify-every-status it notifies what the bridge notifies."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import types
from mcp.client.experimental.tasks import ExperimentalClientFeatures
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.context import RequestContext
from mcp.shared.session import RequestResponder

from bench import procs, suites

pytestmark = pytest.mark.timeout(180)

MessageIn = RequestResponder[types.ServerRequest, types.ClientResult] | types.ServerNotification | Exception


async def statuses_notified(url: str, tool: str) -> list[str]:
    """Run `tool` as a task (accepting its elicitation): the statuses notified for it, in order."""
    notified: list[str] = []
    completed = asyncio.Event()

    async def accept(
        context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"go_on": True})

    async def on_message(message: MessageIn) -> None:
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.TaskStatusNotification
        ):
            notified.append(message.root.params.status)
            if message.root.params.status == "completed":
                completed.set()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        async with (
            streamable_http_client(url) as (read, write, _),
            ClientSession(read, write, elicitation_callback=accept, message_handler=on_message) as session,
        ):
            await session.initialize()
            api = ExperimentalClientFeatures(session)
            created = await api.call_tool_as_task(tool, {})
            result = await api.get_task_result(created.task.taskId, types.CallToolResult)
            assert not result.isError, result
            await asyncio.wait_for(completed.wait(), 10)
    return notified


@contextlib.contextmanager
def sdk_server(logs: Path, *options: str) -> Iterator[str]:
    proc = procs.spawn_bench_server(logs, "sdk", *options, name=f"sdk{len(options)}")
    try:
        yield procs.bench_server_address(proc)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = suites.Env(suites.SMOKE, tmp_path_factory.mktemp("baselines"))
    with contextlib.ExitStack() as stack:
        _, target, url = stack.enter_context(
            procs.service(env.logs, env.store_url("sqlite", "baselines"), mcp=True)
        )
        stack.enter_context(procs.worker(env.logs, target))
        suites._wait_for_tools(target, {"one_step", "ask_once"})  # pyright: ignore[reportPrivateUsage]
        yield url


async def test_the_notifying_sdk_baseline_notifies_what_the_bridge_does(ours: str, tmp_path: Path) -> None:
    with sdk_server(tmp_path, "--notify-every-status") as notifying:
        for tool in ("ask_once", "one_step"):
            expected = await statuses_notified(ours, tool)
            assert await statuses_notified(notifying, tool) == expected
    assert expected == ["completed"]  # one_step's
    assert await statuses_notified(ours, "ask_once") == ["input_required", "working", "completed"]


async def test_the_plain_sdk_baseline_notifies_the_terminal_status_only(tmp_path: Path) -> None:
    with sdk_server(tmp_path) as sdk:
        assert await statuses_notified(sdk, "ask_once") == ["completed"]
