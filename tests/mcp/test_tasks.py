"""Task-augmented tools/call, tasks/get, tasks/list and tasks/cancel."""

from __future__ import annotations

import anyio
from mcp import types

from .conftest import (
    DEFAULT_TTL_MS,
    MAX_TTL_MS,
    POLL_INTERVAL_MS,
    RELATED_TASK,
    WAIT,
    Client,
    Connector,
    Stack,
    all_task_ids,
    gate_name,
    raises_mcp_error,
    text_of,
)
from .requirements import TASKS, requirement

PAGE_SIZE = 50
"""The service's default page size, which the bridge uses for tasks/list."""


@requirement(f"{TASKS}#creating-tasks", f"{TASKS}#task-id-requirements")
async def test_task_call_answers_at_once(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    async with mcp.connect() as client:
        # The tool cannot finish before the gate opens, which happens only after the answer came.
        created = await client.call_as_task("gated", {"gate": gate}, ttl=90_000)
        task = created.task
        assert task.status == "working"
        assert isinstance(task.taskId, str)
        assert task.taskId
        assert task.ttl == 90_000
        assert task.pollInterval == POLL_INTERVAL_MS
        assert task.createdAt <= task.lastUpdatedAt
        stack.open_gate(gate, "after the answer")
        assert text_of(await client.result(task.taskId)) == "opened: after the answer"
        others = [(await client.call_as_task("echo", {"text": str(i)})).task.taskId for i in range(5)]
        assert len({task.taskId, *others}) == 6


@requirement(f"{TASKS}#ttl-and-resource-management")
async def test_requested_ttl_is_honoured_within_the_cap(mcp: Connector) -> None:
    async with mcp.connect() as client:
        asked = await client.call_as_task("echo", {"text": "ttl"}, ttl=123_000)
        assert asked.task.ttl == 123_000
        assert (await client.get(asked.task.taskId)).ttl == 123_000

        capped = await client.call_as_task("echo", {"text": "ttl"}, ttl=MAX_TTL_MS * 10)
        assert capped.task.ttl == MAX_TTL_MS
        assert (await client.get(capped.task.taskId)).ttl == MAX_TTL_MS

        # A task field without a ttl: the server's default.
        with anyio.fail_after(WAIT):
            default = await client.session.send_request(
                types.ClientRequest(
                    types.CallToolRequest(
                        params=types.CallToolRequestParams(
                            name="echo", arguments={"text": "ttl"}, task=types.TaskMetadata()
                        )
                    )
                ),
                types.CreateTaskResult,
            )
        assert default.task.ttl == DEFAULT_TTL_MS
        got = await client.get(default.task.taskId)
        assert got.ttl == DEFAULT_TTL_MS
        assert got.pollInterval == POLL_INTERVAL_MS


@requirement(f"{TASKS}#getting-tasks")
async def test_tasks_get_follows_the_task(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    async with mcp.connect() as client:
        created = await client.call_as_task("gated", {"gate": gate})
        task_id = created.task.taskId
        working = await client.get(task_id)
        assert working.taskId == task_id
        assert working.status == "working"
        assert working.createdAt == created.task.createdAt
        assert working.meta is None or RELATED_TASK not in working.meta
        stack.open_gate(gate)
        await client.result(task_id)
        done = await client.get(task_id)
        assert done.status == "completed"
        assert done.lastUpdatedAt >= working.lastUpdatedAt
        assert done.meta is None or RELATED_TASK not in done.meta


@requirement(f"{TASKS}#task-listing")
async def test_tasks_list_pages_with_a_cursor(mcp: Connector) -> None:
    async with mcp.connect(own=True) as client:
        created = set()
        for i in range(PAGE_SIZE + 10):
            created.add((await client.call_as_task("echo", {"text": str(i)})).task.taskId)
        first = await client.tasks.list_tasks()
        assert first.nextCursor is not None
        assert 0 < len(first.tasks) < len(created)
        listed = [task.taskId for task in first.tasks]
        cursor: str | None = first.nextCursor
        with anyio.fail_after(WAIT):
            while cursor is not None:
                page = await client.tasks.list_tasks(cursor)
                listed.extend(task.taskId for task in page.tasks)
                cursor = page.nextCursor
        assert len(listed) == len(created)
        assert set(listed) == created


@requirement(f"{TASKS}#protocol-errors")
async def test_unknown_tasks_and_bad_cursors_are_invalid_params(mcp: Connector) -> None:
    async with mcp.connect() as client:
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.get("no-such-task")
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.result("no-such-task")
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.tasks.cancel_task("no-such-task")
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.tasks.list_tasks("not-a-cursor")


@requirement("design:tasks-belong-to-their-session")
async def test_tasks_belong_to_the_session_that_created_them(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    async with mcp.connect() as owner:
        created = await owner.call_as_task("gated", {"gate": gate})
        task_id = created.task.taskId
        async with mcp.connect(own=True) as other:
            assert await all_task_ids(other) == []
            with raises_mcp_error(types.INVALID_PARAMS):
                await other.get(task_id)
            with raises_mcp_error(types.INVALID_PARAMS):
                await other.tasks.cancel_task(task_id)
            with raises_mcp_error(types.INVALID_PARAMS):
                await other.result(task_id)
            mine = await other.call_as_task("echo", {"text": "mine"})
            assert await all_task_ids(other) == [mine.task.taskId]
        # Nothing the other session tried touched the task.
        assert (await owner.get(task_id)).status == "working"
        assert task_id in await all_task_ids(owner)
        stack.open_gate(gate)
        assert text_of(await owner.result(task_id)) == "opened: open"


async def _started(client: Client, task_id: str) -> None:
    """Wait until the worker runs the task (until_cancelled reports it in its status)."""
    await client.wait_for_status(task_id, "working", "waiting to be cancelled")


@requirement(
    f"{TASKS}#task-cancellation",
    "design:worker-sees-cancellation-at-once",
    "design:cancel-running-task-does-not-crash",
)
async def test_cancel_a_running_task(mcp: Connector, stack: Stack) -> None:
    report = gate_name()
    async with mcp.connect() as client, anyio.create_task_group() as group:
        created = await client.call_as_task("until_cancelled", {"gate": report})
        task_id = created.task.taskId
        waiter: list[types.CallToolResult] = []
        returned = anyio.Event()

        async def wait_for_result() -> None:
            waiter.append(await client.result(task_id))
            returned.set()

        group.start_soon(wait_for_result)
        await _started(client, task_id)

        cancelled = await client.tasks.cancel_task(task_id)
        assert cancelled.taskId == task_id
        assert cancelled.status == "cancelled"
        assert (await client.get(task_id)).status == "cancelled"

        # The worker was told at once: its lease (LEASE_TTL_MS) is far longer than WAIT, so this
        # is not its heartbeat telling it.
        seen = await stack.report(report)
        assert seen == {"coroutine_cancelled": True, "is_cancelled": True}

        # The waiting tasks/result returned, and the session goes on working.
        with anyio.fail_after(WAIT):
            await returned.wait()
        assert waiter[0].isError
        assert "cancelled" in text_of(waiter[0])
        echo = await client.call_as_task("echo", {"text": "still here"})
        assert text_of(await client.result(echo.task.taskId)) == "echo: still here"

        # Cancelled it stays, whatever the worker did on its way out.
        assert (await client.get(task_id)).status == "cancelled"
        final = await client.result(task_id)
        assert final.isError


@requirement(f"{TASKS}#task-cancellation")
async def test_cancel_a_terminal_task_is_invalid_params(mcp: Connector, stack: Stack) -> None:
    async with mcp.connect() as client:
        done = await client.call_as_task("echo", {"text": "done"})
        await client.result(done.task.taskId)
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.tasks.cancel_task(done.task.taskId)
        assert (await client.get(done.task.taskId)).status == "completed"

        failed = await client.call_as_task("explode")
        await client.result(failed.task.taskId)
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.tasks.cancel_task(failed.task.taskId)

        report = gate_name()
        running = await client.call_as_task("until_cancelled", {"gate": report})
        await _started(client, running.task.taskId)
        await client.tasks.cancel_task(running.task.taskId)
        with raises_mcp_error(types.INVALID_PARAMS):
            await client.tasks.cancel_task(running.task.taskId)
        await stack.report(report)
