"""notifications/tasks/status and notifications/progress while a task runs.

The tools wait on a gate after each change, and the test opens it only once it
has seen the notification: each change stays observable long enough, so the
assertions do not depend on how fast anything is.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import types

from .conftest import RELATED_TASK, WAIT, Client, Connector, Stack, gate_name, text_of
from .requirements import TASKS, requirement


def states(client: Client, task_id: str) -> list[tuple[str, str | None]]:
    return [(n.status, n.statusMessage) for n in client.status_notifications(task_id)]


@requirement(f"{TASKS}#task-status-notification")
async def test_status_notification_on_every_change(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    async with mcp.connect() as client:
        created = await client.call_as_task("steps", {"gate": gate, "steps": 3})
        task_id = created.task.taskId
        for step in (1, 2, 3):
            await client.wait_for_status(task_id, "working", f"step {step} of 3")
            stack.open_gate(f"{gate}-{step}")
        await client.wait_for_status(task_id, "completed")
        assert states(client, task_id) == [
            ("working", "step 1 of 3"),
            ("working", "step 2 of 3"),
            ("working", "step 3 of 3"),
            ("completed", "step 3 of 3"),
        ]
        for params in client.status_notifications(task_id):
            # The full task, and no related-task _meta (the task id is in the params).
            assert params.createdAt == created.task.createdAt
            assert params.ttl == created.task.ttl
            assert params.pollInterval == created.task.pollInterval
            assert params.meta is None or RELATED_TASK not in params.meta.model_dump(by_alias=True)
        assert text_of(await client.result(task_id)) == "3 steps done"


@requirement(f"{TASKS}#task-status-notification", f"{TASKS}#input-required-status")
async def test_status_notification_for_input_required(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()

    async def accept(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"ok": True})

    async with mcp.connect(elicitation=accept) as client, anyio.create_task_group() as group:
        task_id = (await client.call_as_task("ask_once", {"gate": gate})).task.taskId
        # The client learns that the task needs it before it asks for the result, as the spec's
        # flow goes: the question waits in the task's queue meanwhile.
        await client.wait_for_status(task_id, "input_required")
        assert (await client.get(task_id)).status == "input_required"
        group.start_soon(client.result, task_id)
        await client.wait_until(lambda: len(states(client, task_id)) >= 2 or None)
        stack.open_gate(gate)
        await client.wait_for_status(task_id, "completed")
        assert [status for status, _ in states(client, task_id)] == ["input_required", "working", "completed"]


@requirement("design:notify-false-sends-no-notification")
async def test_update_status_without_notify_sends_none(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    async with mcp.connect() as client:
        task_id = (await client.call_as_task("quiet_update", {"gate": gate})).task.taskId
        await client.wait_for_status(task_id, "working", "loud")
        stack.open_gate(f"{gate}-1")
        # The quiet change is there for whoever polls...
        with anyio.fail_after(WAIT):
            while True:
                if (await client.get(task_id)).statusMessage == "quiet":
                    break
                await anyio.sleep(0.02)
        stack.open_gate(f"{gate}-2")
        # ... but it sent nothing: the notifications of a task come in order, the completion last.
        await client.wait_for_status(task_id, "completed")
        assert states(client, task_id) == [("working", "loud"), ("completed", "quiet")]
        assert text_of(await client.result(task_id)) == "done"


@requirement(f"{TASKS}#task-progress-notifications")
async def test_progress_notifications_for_a_task(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    async with mcp.connect() as client:
        token = f"progress-{gate}"
        created = await client.call_as_task("steps", {"gate": gate, "steps": 2}, progressToken=token)
        task_id = created.task.taskId

        def said(message: str) -> types.ProgressNotificationParams | None:
            return next((p for p in client.progress_notifications(token) if p.message == message), None)

        first = await client.wait_until(lambda: said("step 1 of 2"))
        stack.open_gate(f"{gate}-1")
        second = await client.wait_until(lambda: said("step 2 of 2"))
        assert second.progress > first.progress
        stack.open_gate(f"{gate}-2")
        assert text_of(await client.result(task_id)) == "2 steps done"


@requirement(f"{TASKS}#task-progress-notifications")
async def test_progress_notifications_for_a_call_without_task(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with mcp.connect() as client, anyio.create_task_group() as group:
        results: list[types.CallToolResult] = []

        async def call() -> None:
            with anyio.fail_after(WAIT):
                results.append(
                    await client.session.call_tool(
                        "steps", {"gate": gate, "steps": 2}, progress_callback=on_progress
                    )
                )

        group.start_soon(call)
        for step in (1, 2):
            message = f"step {step} of 2"
            await client.wait_until(lambda: any(m == message for _, m in seen) or None)  # noqa: B023
            stack.open_gate(f"{gate}-{step}")
    assert text_of(results[0]) == "2 steps done"
    assert [m for _, m in seen] == ["step 1 of 2", "step 2 of 2"]
    assert seen[1][0] > seen[0][0]


# Over stdio one stream carries everything, in the order the bridge sends it; over HTTP the
# notification and the result travel on two connections, which keep no order between them.
@pytest.mark.parametrize("transport", ["stdio"])
@requirement(f"{TASKS}#task-status-notification", "spec:2025-11-25/basic/transports#stdio")
async def test_the_terminal_status_is_notified_before_the_result(mcp: Connector, stack: Stack) -> None:
    # A client that closes its session once it has the result (mcp's stdio client does) must
    # not have the terminal notification still on its way: it would find a closed stream.
    gate = gate_name()
    async with mcp.connect() as client, anyio.create_task_group() as group:
        task_id = (await client.call_as_task("steps", {"gate": gate, "steps": 1})).task.taskId
        results: list[types.CallToolResult] = []

        async def result() -> None:
            results.append(await client.result(task_id))
            # What had arrived when the result did.
            results_at.extend(states(client, task_id))

        results_at: list[tuple[str, str | None]] = []
        await client.wait_for_status(task_id, "working", "step 1 of 1")
        group.start_soon(result)
        await client.wait_until(lambda: client.sent_requests.get("tasks/result") or None)
        stack.open_gate(f"{gate}-1")
    assert text_of(results[0]) == "1 steps done"
    assert results_at[-1] == ("completed", "step 1 of 1")
