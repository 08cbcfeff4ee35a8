"""Capabilities, tools/list and tools/call: what a client sees before and when it calls a tool."""

from __future__ import annotations

import functools

import anyio
from mcp import types

from taskservice.grpc_api.convert import MAX_PAYLOAD_DEPTH

from .conftest import (
    WAIT,
    Client,
    Connector,
    Stack,
    all_task_ids,
    gate_name,
    nested,
    raises_mcp_error,
    text_of,
)
from .requirements import TASKS, requirement


@requirement(
    f"{TASKS}#server-capabilities",
    "spec:2025-11-25/basic/transports#streamable-http",
    "spec:2025-11-25/basic/transports#stdio",
)
async def test_capabilities_advertise_tasks(mcp: Connector) -> None:
    async with mcp.connect() as client:
        caps = client.session.get_server_capabilities()
        assert caps is not None
        assert caps.tasks is not None
        assert caps.tasks.list is not None
        assert caps.tasks.cancel is not None
        assert caps.tasks.requests is not None
        assert caps.tasks.requests.tools is not None
        assert caps.tasks.requests.tools.call is not None
        assert caps.tools is not None
        assert caps.tools.listChanged is True


@requirement(f"{TASKS}#tool-level-negotiation")
async def test_tools_list_shows_task_support(mcp: Connector) -> None:
    async with mcp.connect() as client:
        tools = {tool.name: tool for tool in (await client.session.list_tools()).tools}
    support = {name: tool.execution.taskSupport if tool.execution else None for name, tool in tools.items()}
    assert support["echo"] == "optional"
    assert support["only_as_task"] == "required"
    assert support["never_as_task"] == "forbidden"
    echo = tools["echo"]
    assert echo.description == "Answers with the text it was given."
    assert echo.inputSchema["required"] == ["text"]


@requirement(f"{TASKS}#tool-level-negotiation/optional")
async def test_optional_tool_without_task_returns_its_result(mcp: Connector) -> None:
    async with mcp.connect() as client:
        before = await all_task_ids(client)
        result = await client.session.call_tool("echo", {"text": "hi"})
        assert not result.isError
        assert text_of(result) == "echo: hi"
        # A tool whose taskSupport is forbidden runs the same way.
        result = await client.session.call_tool("never_as_task", {"text": "hi"})
        assert text_of(result) == "direct: hi"
        # The client asked for no task, so it has none.
        assert await all_task_ids(client) == before


@requirement(f"{TASKS}#tool-level-negotiation/required")
async def test_required_tool_without_task_is_method_not_found(mcp: Connector) -> None:
    async with mcp.connect() as client:
        with raises_mcp_error(types.METHOD_NOT_FOUND, match="only_as_task"):
            await client.session.call_tool("only_as_task", {"text": "hi"})
        # The session is fine, and the same tool works as a task.
        created = await client.call_as_task("only_as_task", {"text": "hi"})
        assert text_of(await client.result(created.task.taskId)) == "task: hi"


@requirement(f"{TASKS}#tool-level-negotiation/forbidden")
async def test_forbidden_tool_with_task_is_method_not_found(mcp: Connector) -> None:
    async with mcp.connect() as client:
        before = await all_task_ids(client)
        with raises_mcp_error(types.METHOD_NOT_FOUND, match="never_as_task"):
            await client.call_as_task("never_as_task", {"text": "hi"})
        assert await all_task_ids(client) == before


@requirement("design:tool-without-worker-is-a-clear-error")
async def test_tool_without_worker_is_a_clear_error(mcp: Connector) -> None:
    async with mcp.connect() as client:
        with raises_mcp_error(types.INVALID_PARAMS, match=r"'no_such_tool'.*no connected worker"):
            await client.session.call_tool("no_such_tool", {})
        with raises_mcp_error(types.INVALID_PARAMS, match=r"'no_such_tool'.*no connected worker"):
            await client.call_as_task("no_such_tool", {})


@requirement("design:payloads-nest-a-bounded-depth")
async def test_arguments_nested_too_deep_are_invalid_params(mcp: Connector) -> None:
    # The path to the first level too many: arguments.deep, then "a" for each level below it.
    path = r"arguments\.deep" + r"\.a" * (MAX_PAYLOAD_DEPTH - 1)
    too_deep = rf"^tools/call: {path} nests deeper than {MAX_PAYLOAD_DEPTH} levels of objects and arrays$"
    async with mcp.connect() as client:
        before = await all_task_ids(client)
        # One level over the limit; and past protobuf's own decoding limit (about 33 levels).
        for levels in (MAX_PAYLOAD_DEPTH, 40):
            arguments = {"text": "hi", "deep": nested(levels)}
            with raises_mcp_error(types.INVALID_PARAMS, match=too_deep):
                await client.session.call_tool("echo", arguments)
            with raises_mcp_error(types.INVALID_PARAMS, match=too_deep):
                await client.call_as_task("echo", arguments)
        assert await all_task_ids(client) == before
        deepest = {"text": "hi", "deep": nested(MAX_PAYLOAD_DEPTH - 1)}
        assert text_of(await client.session.call_tool("echo", deepest)) == "echo: hi"


@requirement("spec:2025-11-25/server/tools#list-changed-notification")
async def test_tools_list_changed_when_a_worker_comes_and_goes(mcp: Connector, stack: Stack) -> None:
    async with mcp.connect() as client:
        assert "extra_tool" not in await client.tool_names()
        extra = stack.start_worker("extra_worker", f"extra-worker-{mcp.transport}")
        try:
            await client.wait_until(lambda: client.tools_changed() or None)
            await until_listed(client, "extra_tool", present=True)
            seen = client.tools_changed()
        finally:
            extra.stop()
        await client.wait_until(lambda: client.tools_changed() > seen or None)
        await until_listed(client, "extra_tool", present=False)


async def until_listed(client: Client, name: str, *, present: bool) -> None:
    """Poll tools/list (bounded) until it agrees: a list_changed may come before the last of several
    changes is visible."""
    with anyio.fail_after(WAIT):
        while True:
            if (name in await client.tool_names()) == present:
                return
            await anyio.sleep(0.02)


@requirement("spec:2025-11-25/basic/utilities/cancellation#behavior-requirements")
async def test_cancelling_a_call_without_task_stops_the_work(mcp: Connector, stack: Stack) -> None:
    report = gate_name()
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message == "waiting to be cancelled":
            started.set()

    async with mcp.connect() as client:
        async with anyio.create_task_group() as group:
            group.start_soon(
                functools.partial(client.session.call_tool, progress_callback=on_progress),
                "until_cancelled",
                {"gate": report},
            )
            with anyio.fail_after(WAIT):
                await started.wait()
            await client.cancel_request(client.sent_requests["tools/call"][-1])
            group.cancel_scope.cancel()
        assert await stack.report(report) == {"coroutine_cancelled": True, "is_cancelled": True}
        assert text_of(await client.session.call_tool("echo", {"text": "after"})) == "echo: after"
