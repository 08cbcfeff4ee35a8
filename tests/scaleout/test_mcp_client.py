"""End to end across replicas: an MCP client on replica B's bridge, the worker on replica A.

Every main flow of MCP tasks: tools/list, a task-augmented tools/call, tasks/get, tasks/list,
tasks/result carrying the tool's elicitation to the client and its answer back, and tasks/cancel
reaching the running tool.
"""

from __future__ import annotations

import anyio
from mcp import types
from taskservice_client import RemoteTaskContext

from taskservice.domain.model import TaskStatus
from taskservice.testing import RunningService

from ..mcp_http import http_bridge, mcp_client
from .support import (
    WAIT,
    BridgeCalls,
    add_asking_tool,
    assert_asked_and_answered_once,
    make_worker,
    running,
    stored,
)

Replicas = tuple[RunningService, RunningService]


async def bridge_calls_wait_for_tools(replica: RunningService, *names: str) -> None:
    calls = BridgeCalls(replica.target)
    try:
        await calls.wait_for_tools(*names)
    finally:
        await calls.close()


async def test_every_task_flow_with_the_client_on_b_and_the_worker_on_a(
    replicas: Replicas, redis_url: str
) -> None:
    a, b = replicas
    runs: list[str] = []
    started = anyio.Event()
    stopped = anyio.Event()
    worker = make_worker(a.target)
    add_asking_tool(worker, runs)

    @worker.tool(description="works until cancelled")
    async def forever(ctx: RemoteTaskContext, arguments: dict[str, object]) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async with (
        running(worker),
        http_bridge(b.target, wait=WAIT) as url,
        mcp_client(url, wait=WAIT) as session,
    ):
        await bridge_calls_wait_for_tools(b, "ask", "forever")  # the worker registers on A
        with anyio.fail_after(WAIT):
            assert {"ask", "forever"} <= {t.name for t in (await session.list_tools()).tools}
            tasks = session.experimental

            # Elicitation: tasks/result carries the question to this client and its answer back.
            asked = (await tasks.call_tool_as_task("ask", {})).task
            assert asked.status == "working"
            result = await tasks.get_task_result(asked.taskId, types.CallToolResult)
            assert result.content == [types.TextContent(type="text", text="hello Grace")]
            assert (await tasks.get_task(asked.taskId)).status == "completed"

            # Cancellation: tasks/cancel on B stops the tool running on A.
            slow = (await tasks.call_tool_as_task("forever", {})).task
            await started.wait()
            cancelled = await tasks.cancel_task(slow.taskId)
            assert cancelled.status == "cancelled"
            await stopped.wait()
            assert (await tasks.get_task(slow.taskId)).status == "cancelled"

            listed = await tasks.list_tasks()
            assert {t.taskId: t.status for t in listed.tasks} == {
                asked.taskId: "completed",
                slow.taskId: "cancelled",
            }

    assert runs == [asked.taskId]
    assert_asked_and_answered_once(await stored(redis_url, asked.taskId))
    cancelled_record = await stored(redis_url, slow.taskId)
    assert cancelled_record.status is TaskStatus.CANCELLED
    assert cancelled_record.attempts == 1
