"""The tools the MCP conformance suite calls, served by a real worker process.

Run as `python -m taskservice_client run worker_tools:worker --target HOST:PORT`
from this directory (the suite's conftest does). Gates make steps observable
without sleeps: a tool that waits on gate NAME waits until the file NAME
exists in $MCP_TEST_GATES (the test creates it once it has seen what it
waits for), bounded by GATE_WAIT seconds. Tools that ask the client report
what they got back (answers and the SDK errors they caught) as JSON, so a
test can assert on what the worker saw.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
from mcp.shared.exceptions import McpError
from mcp.types import SamplingMessage, TextContent, Tool, ToolChoice
from taskservice_client import RemoteTaskContext, Worker

GATE_WAIT = 60.0

worker = Worker("127.0.0.1:1", name="mcp-conformance", max_concurrent_tasks=200, shutdown_timeout=2.0)

TEXT_ARGUMENT: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
GATED: dict[str, Any] = {
    "type": "object",
    "properties": {"gate": {"type": "string"}},
    "required": ["gate"],
}
NAME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}}}
AGE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"age": {"type": "integer"}}}
LOOKUP_TOOL = Tool(
    name="lookup",
    description="Look a word up.",
    inputSchema={"type": "object", "properties": {"word": {"type": "string"}}},
)


def gate_path(name: str) -> Path:
    return Path(os.environ["MCP_TEST_GATES"]) / name


async def wait_gate(name: str) -> str:
    """Wait until the test opens gate `name`; give back what it wrote into it."""
    path = gate_path(name)
    with anyio.fail_after(GATE_WAIT):
        while True:
            if path.exists():
                return path.read_text()
            await anyio.sleep(0.01)


def report(name: str, data: dict[str, Any]) -> None:
    """Leave a note for the test (written whole, then renamed, so a reader never sees half)."""
    path = gate_path(name)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data))
    partial.replace(path)


def mcp_error(error: McpError) -> dict[str, Any]:
    return {"code": error.error.code, "message": error.error.message}


@worker.tool(description="Answers with the text it was given.", input_schema=TEXT_ARGUMENT)
async def echo(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    return f"echo: {arguments['text']}"


@worker.tool(description="Must be called as a task.", input_schema=TEXT_ARGUMENT, task_support="required")
async def only_as_task(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    return f"task: {arguments['text']}"


@worker.tool(
    description="Must not be called as a task.", input_schema=TEXT_ARGUMENT, task_support="forbidden"
)
async def never_as_task(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    return f"direct: {arguments['text']}"


@worker.tool(description="Waits for its gate, then answers with what the gate holds.", input_schema=GATED)
async def gated(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    return f"opened: {await wait_gate(arguments['gate'])}"


@worker.tool(
    description="Reports steps 1..N as status messages, each after gate <gate>-<step> opens.",
    input_schema={
        "type": "object",
        "properties": {"gate": {"type": "string"}, "steps": {"type": "integer"}},
        "required": ["gate", "steps"],
    },
)
async def steps(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    count = int(arguments["steps"])
    for step in range(1, count + 1):
        await ctx.update_status(f"step {step} of {count}")
        await wait_gate(f"{arguments['gate']}-{step}")
    return f"{count} steps done"


@worker.tool(
    description="A notified status update, then one with notify=False, each followed by a gate.",
    input_schema=GATED,
)
async def quiet_update(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    await ctx.update_status("loud")
    await wait_gate(f"{arguments['gate']}-1")
    await ctx.update_status("quiet", notify=False)
    await wait_gate(f"{arguments['gate']}-2")
    return "done"


@worker.tool(description="Fails: the tool raises.")
async def explode(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    raise RuntimeError("explode: the tool failed on purpose")


@worker.tool(
    description="Works until it is cancelled; reports what it saw to gate <gate>.", input_schema=GATED
)
async def until_cancelled(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    await ctx.update_status("waiting to be cancelled")
    try:
        with anyio.fail_after(GATE_WAIT):
            while True:
                if ctx.is_cancelled:
                    break
                await anyio.sleep(0.01)
            await anyio.sleep_forever()  # the flag is set: the worker cancels this coroutine too
    except anyio.get_cancelled_exc_class():
        report(arguments["gate"], {"coroutine_cancelled": True, "is_cancelled": ctx.is_cancelled})
        raise
    except TimeoutError:
        report(arguments["gate"], {"coroutine_cancelled": False, "is_cancelled": ctx.is_cancelled})
    return "not cancelled"


@worker.tool(description="Elicits twice, then samples; reports every answer or error, in order.")
async def interview(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []
    for message, schema in (("What is your name?", NAME_SCHEMA), ("How old are you?", AGE_SCHEMA)):
        try:
            answer = await ctx.elicit(message, schema)
            seen.append({"action": answer.action, "content": answer.content})
        except McpError as error:
            seen.append({"error": mcp_error(error)})
    try:
        sampled = await ctx.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text="Summarize the interview."))],
            max_tokens=50,
        )
        text = sampled.content.text if isinstance(sampled.content, TextContent) else None
        seen.append({"model": sampled.model, "text": text})
    except McpError as error:
        seen.append({"error": mcp_error(error)})
    return {"seen": seen}


@worker.tool(description="Elicits once; reports the answer or the SDK error (after gate <gate>, when given).")
async def ask_once(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = await ctx.elicit("Proceed?", {"type": "object", "properties": {"ok": {"type": "boolean"}}})
    except McpError as error:
        return {"error": mcp_error(error)}
    if "gate" in arguments:
        await wait_gate(arguments["gate"])
    return {"action": answer.action, "content": answer.content}


@worker.tool(description="Answers with the arguments it was given, as the worker got them.")
async def echo_arguments(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"arguments": arguments}


@worker.tool(description="Elicits a number and a text; reports the answer or the SDK error.")
async def ask_details(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "text": {"type": "string"}}}
    try:
        answer = await ctx.elicit("Details?", schema)
    except McpError as error:
        return {"error": mcp_error(error)}
    return {"action": answer.action, "content": answer.content}


@worker.tool(
    description=(
        "Elicits (as a task the client runs, with as_task); stops waiting once gate <gate> opens,"
        " then completes."
    ),
    input_schema={
        "type": "object",
        "properties": {"gate": {"type": "string"}, "as_task": {"type": "boolean"}},
        "required": ["gate"],
    },
)
async def ask_then_give_up(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    ask = ctx.elicit_as_task if arguments.get("as_task") else ctx.elicit
    async with anyio.create_task_group() as group:
        group.start_soon(ask, "Still there?", {"type": "object", "properties": {}})
        await wait_gate(arguments["gate"])
        group.cancel_scope.cancel()
    return "gave up waiting"


@worker.tool(description="Samples with a tool offered to the model; reports the result or the SDK error.")
async def sample_with_tools(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        sampled = await ctx.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text="Look up 'task'."))],
            max_tokens=50,
            tools=[LOOKUP_TOOL],
            tool_choice=ToolChoice(mode="auto"),
        )
    except McpError as error:
        return {"error": mcp_error(error)}
    return {"model": sampled.model, "stopReason": sampled.stopReason}


@worker.tool(description="Elicits as a task the client runs; reports the answer or the SDK error.")
async def ask_as_task(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = await ctx.elicit_as_task(
            "Pick a colour", {"type": "object", "properties": {"colour": {"type": "string"}}}
        )
    except McpError as error:
        return {"error": mcp_error(error)}
    return {"action": answer.action, "content": answer.content}


@worker.tool(description="Samples as a task the client runs; reports the result or the SDK error.")
async def sample_as_task(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        sampled = await ctx.create_message_as_task(
            [SamplingMessage(role="user", content=TextContent(type="text", text="Name a colour."))],
            max_tokens=20,
        )
    except McpError as error:
        return {"error": mcp_error(error)}
    text = sampled.content.text if isinstance(sampled.content, TextContent) else None
    return {"model": sampled.model, "text": text}
