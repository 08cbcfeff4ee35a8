"""A worker whose one tool is safe to run again, started and stopped by the called-off tests:
stopped while its tool waits for the client, it hands the task back to the queue."""

from __future__ import annotations

from typing import Any

from taskservice_client import RemoteTaskContext, Worker

worker = Worker("127.0.0.1:1", name="mcp-conformance-retry", shutdown_timeout=0.5)


@worker.tool(description="Asks the client once, then completes with the answer.", retry_safe=True)
async def ask_retry_safe(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    answer = await ctx.elicit("Proceed?", {"type": "object", "properties": {"ok": {"type": "boolean"}}})
    return f"{answer.action}: {answer.content}"
