"""The Python worker of tests/node/test_ts_sdk_client.py, run with
`python -m taskservice_client run ts_flow_worker:worker --target HOST:PORT`.

It appends what it sees to $TS_FLOW_EVENTS (one JSON object a line).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import anyio
from mcp import types
from taskservice_client import RemoteTaskContext, RetryPolicy, Worker

worker = Worker(
    os.environ.get("TASKSERVICE_TARGET", "127.0.0.1:50051"),
    name="ts-flow-worker",
    retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),
    shutdown_timeout=2.0,
)


def record(event: dict[str, Any]) -> None:
    path = os.environ.get("TS_FLOW_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(event) + "\n")


@worker.tool(
    description="Asks for a colour, then has the client's model comment on it",
    input_schema={"type": "object", "properties": {"topic": {"type": "string"}}},
    task_support="required",
)
async def interview(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
    await ctx.update_status(f"preparing questions about {arguments.get('topic', 'nothing')}")
    answer = await ctx.elicit(
        "What is your favourite colour?",
        {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]},
    )
    colour = str((answer.content or {}).get("colour"))
    await ctx.update_status("asking the model")
    sample = await ctx.create_message(
        [
            types.SamplingMessage(
                role="user", content=types.TextContent(type="text", text=f"Say something about {colour}.")
            )
        ],
        max_tokens=40,
    )
    said = sample.content.text if isinstance(sample.content, types.TextContent) else ""
    record({"tool": "interview", "taskId": ctx.task_id, "colour": colour, "model": sample.model})
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"{colour}: {said}")])


@worker.tool(description="Works until cancelled", task_support="required")
async def wait_forever(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    await ctx.update_status("waiting")
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        record(
            {
                "tool": "wait_forever",
                "taskId": ctx.task_id,
                "event": "cancelled",
                "isCancelled": ctx.is_cancelled,
            }
        )
        raise
    return "never"


# Gates of ask_until_gate, opened by open_gate (a call of the client's while it holds the question).
_gates: dict[str, asyncio.Event] = {}
GATE = {"type": "object", "properties": {"gate": {"type": "string"}}, "required": ["gate"]}


@worker.tool(
    description="Asks a question; stops waiting for it once open_gate opens its gate, then completes",
    input_schema=GATE,
    task_support="required",
)
async def ask_until_gate(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    gate = _gates.setdefault(arguments["gate"], asyncio.Event())
    async with anyio.create_task_group() as group:
        group.start_soon(ctx.elicit, "Still there?", {"type": "object", "properties": {}})
        await gate.wait()
        group.cancel_scope.cancel()
    return "stopped waiting"


@worker.tool(description="Opens a gate of ask_until_gate", input_schema=GATE, task_support="forbidden")
async def open_gate(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    _gates.setdefault(arguments["gate"], asyncio.Event()).set()
    return "opened"
