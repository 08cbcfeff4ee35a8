"""A second worker, started and stopped by the tools/list_changed test."""

from __future__ import annotations

from typing import Any

from taskservice_client import RemoteTaskContext, Worker

worker = Worker("127.0.0.1:1", name="mcp-conformance-extra", shutdown_timeout=1.0)


@worker.tool(description="Served only while the extra worker runs.")
async def extra_tool(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    return "extra"
