"""The two tools of the whole-task benchmark, as a remote worker serves them.

`python -m taskservice_client run bench.worker_tools:worker --target HOST:PORT`.
bench.servers builds the same tools into the SDK's in-process tasks server.
"""

from __future__ import annotations

from typing import Any

from mcp import types
from taskservice_client import RemoteTaskContext, Worker

ONE_STEP_TEXT = "done"
ASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"go_on": {"type": "boolean"}},
    "required": ["go_on"],
}


def answer_text(answer: types.ElicitResult) -> str:
    return f"{answer.action}: {answer.content}"


worker = Worker("127.0.0.1:50051", name="bench-worker", max_concurrent_tasks=32)


@worker.tool(description="Completes at once with a short text.", task_support="required")
async def one_step(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=ONE_STEP_TEXT)])


@worker.tool(
    description="Asks the user one question, then completes with the answer.", task_support="required"
)
async def ask_once(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
    answer = await ctx.elicit("Go on?", ASK_SCHEMA)
    return types.CallToolResult(content=[types.TextContent(type="text", text=answer_text(answer))])
