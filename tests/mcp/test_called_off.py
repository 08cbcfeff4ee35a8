"""Questions the task no longer waits for are called off at the client (notifications/cancelled),
and the client's late answer to one is no error on the server.

mcp 1.30's client runs its elicitation callback in its receive loop, so a cancellation cannot
interrupt a callback that is running: it reads the notification once the callback returned, and
the answer has gone out by then. So these callbacks wait until the client's transport carried the
server's notifications/cancelled for their question (`Client.called_off`), then answer late.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp import types
from mcp.client.experimental.task_handlers import ExperimentalTaskHandlers
from mcp.client.session import ClientSession
from mcp.shared.context import RequestContext

from .conftest import WAIT, Client, Connector, Stack, gate_name, json_of, new_client_task, text_of
from .requirements import requirement

Context = RequestContext[ClientSession, Any]
LATE_ANSWER_ERROR = "Received response with an unknown request ID"
"""What mcp 1.30's server logs for an answer to a request nobody waits for."""


class LateAnswers:
    """An elicitation callback that answers each question once the server called it off, except
    from question `answer_from` on, which it answers at once."""

    def __init__(self, answer_from: int | None = None) -> None:
        self.answer_from = answer_from
        self.asked: list[types.RequestId] = []
        self.client: Client | None = None
        self.changed = anyio.Event()

    async def until_asked(self, count: int) -> None:
        with anyio.fail_after(WAIT):
            while len(self.asked) < count:
                await self.changed.wait()

    async def __call__(self, context: Context, params: types.ElicitRequestParams) -> Any:
        assert self.client is not None
        self.asked.append(context.request_id)
        self.changed.set()
        self.changed = anyio.Event()
        if self.answer_from is None or len(self.asked) < self.answer_from:
            client = self.client
            await client.wait_until(lambda: context.request_id in client.called_off or None)
        return types.ElicitResult(action="accept", content={"ok": True})


@contextlib.asynccontextmanager
async def result_meanwhile(client: Client, task_id: str) -> AsyncIterator[list[types.CallToolResult]]:
    """The task's tasks/result, waited for in the background while the block runs: the block's
    questions come to the client inside it. The list holds the result once the block is left."""
    results: list[types.CallToolResult] = []

    async def wait_for_result() -> None:
        results.append(await client.result(task_id))

    async with anyio.create_task_group() as group:
        group.start_soon(wait_for_result)
        yield results


def server_log(stack: Stack, transport: str) -> str:
    """The log of the bridge the client talks to (the stdio bridges share one file)."""
    name = "serve.log" if transport == "http" else "stdio-bridges.log"
    return (stack.logs / name).read_text(errors="replace")


async def assert_late_answer_was_no_error(
    client: Client, stack: Stack, question: types.RequestId, seen: int
) -> None:
    """The client's answer to the called-off question went out; the server took it quietly."""
    assert question in client.sent_answers
    with anyio.fail_after(WAIT):
        await client.session.send_ping()  # behind the late answer in the server's incoming queue
    assert server_log(stack, client.transport).count(LATE_ANSWER_ERROR) == seen
    logged = [n.root for n in client.notifications if isinstance(n.root, types.LoggingMessageNotification)]
    assert logged == []


@requirement("design:unanswered-question-called-off")
async def test_a_question_the_task_ended_without_is_called_off(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    answers = LateAnswers()
    async with mcp.connect(elicitation=answers) as client:
        answers.client = client
        seen = server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR)
        task_id = (await client.call_as_task("ask_then_give_up", {"gate": gate})).task.taskId
        async with result_meanwhile(client, task_id) as results:
            await answers.until_asked(1)
            stack.open_gate(gate)  # the tool stops waiting for the answer and completes
        assert text_of(results[0]) == "gave up waiting"
        assert client.called_off == answers.asked
        await assert_late_answer_was_no_error(client, stack, answers.asked[0], seen)


@requirement("design:unanswered-question-called-off")
async def test_a_question_of_a_lost_run_is_called_off_and_the_rerun_asks_again(
    mcp: Connector, stack: Stack
) -> None:
    """The worker stops while its retry-safe tool waits for the client: it hands the task back, the
    service withdraws the question, and the bridge calls it off; another worker runs the task again."""
    answers = LateAnswers(answer_from=2)
    first = stack.start_worker("retry_worker", f"retry-worker-{mcp.transport}-1")
    second = None
    try:
        await anyio.to_thread.run_sync(stack.wait_for_tools, {"ask_retry_safe"})
        async with mcp.connect(elicitation=answers) as client:
            answers.client = client
            seen = server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR)
            task_id = (await client.call_as_task("ask_retry_safe")).task.taskId
            async with result_meanwhile(client, task_id) as results:
                await answers.until_asked(1)
                await anyio.to_thread.run_sync(first.stop)  # hands the running task back
                await client.wait_until(lambda: client.called_off or None)
                assert client.called_off == answers.asked  # called off before anyone asks again
                second = stack.start_worker("retry_worker", f"retry-worker-{mcp.transport}-2")
            assert text_of(results[0]) == "accept: {'ok': True}"
            assert len(answers.asked) == 2
            assert client.called_off == answers.asked[:1]
            await assert_late_answer_was_no_error(client, stack, answers.asked[0], seen)
    finally:
        first.stop()
        if second is not None:
            second.stop()


class FirstCopyAnswered:
    """An elicitation callback for one question that two tasks/result put to the client: it answers
    the first copy once the second arrived (so that both were delivered before the answer), and the
    second once the server called it off."""

    def __init__(self) -> None:
        self.asked: list[types.RequestId] = []
        self.client: Client | None = None

    async def __call__(self, context: Context, params: types.ElicitRequestParams) -> Any:
        client = self.client
        assert client is not None
        self.asked.append(context.request_id)
        if len(self.asked) == 1:
            await client.wait_until(lambda: len(client.received_requests["elicitation/create"]) >= 2 or None)
        else:
            await client.wait_until(lambda: context.request_id in client.called_off or None)
        return types.ElicitResult(action="accept", content={"ok": True})


@requirement("design:unanswered-question-called-off")
async def test_a_question_answered_in_one_tasks_result_is_called_off_in_the_other(
    mcp: Connector, stack: Stack
) -> None:
    """Two tasks/result of one task, open at once, both put its question to the client. Once the
    client answered one, the bridge calls the other off, while the task still runs (it waits at
    its gate): the answer, not the task's end, called it off."""
    gate = gate_name()
    answers = FirstCopyAnswered()
    async with mcp.connect(elicitation=answers) as client:
        answers.client = client
        seen = server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR)
        task_id = (await client.call_as_task("ask_once", {"gate": gate})).task.taskId
        async with result_meanwhile(client, task_id) as first, result_meanwhile(client, task_id) as second:
            await client.wait_until(lambda: len(client.called_off) == 1 or None)
            assert client.received_requests["elicitation/create"] == answers.asked[:1] + client.called_off
            assert (await client.get(task_id)).status == "working"
            stack.open_gate(gate)
        assert json_of(first[0]) == json_of(second[0]) == {"action": "accept", "content": {"ok": True}}
        assert answers.asked == client.received_requests["elicitation/create"]
        await assert_late_answer_was_no_error(client, stack, answers.asked[1], seen)


class UnendingTasksOfTheClient:
    """A client that runs a task-augmented elicitation as a task of its own that never ends by
    itself (the user does not answer), until the server cancels it with tasks/cancel."""

    def __init__(self) -> None:
        self.tasks: dict[str, types.Task] = {}
        self.cancelled: list[str] = []
        self.changed = anyio.Event()

    def handlers(self) -> ExperimentalTaskHandlers:
        return ExperimentalTaskHandlers(
            get_task=self.get_task, cancel_task=self.cancel_task, augmented_elicitation=self.elicit
        )

    def _wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, check: Any) -> None:
        with anyio.fail_after(WAIT):
            while not check():
                await self.changed.wait()

    async def elicit(
        self, context: Context, params: types.ElicitRequestParams, task_metadata: types.TaskMetadata
    ) -> types.CreateTaskResult:
        task = new_client_task(task_metadata)
        self.tasks[task.taskId] = task
        self._wake()
        return types.CreateTaskResult(task=task)

    async def get_task(self, context: Context, params: types.GetTaskRequestParams) -> types.GetTaskResult:
        return types.GetTaskResult.model_validate(self.tasks[params.taskId].model_dump())

    async def cancel_task(
        self, context: Context, params: types.CancelTaskRequestParams
    ) -> types.CancelTaskResult:
        task = self.tasks[params.taskId] = self.tasks[params.taskId].model_copy(
            update={"status": "cancelled", "lastUpdatedAt": datetime.now(UTC)}
        )
        self.cancelled.append(params.taskId)
        self._wake()
        return types.CancelTaskResult.model_validate(task.model_dump())


@requirement("design:unanswered-question-called-off")
async def test_a_question_the_client_runs_as_a_task_is_called_off_with_tasks_cancel(
    mcp: Connector, stack: Stack
) -> None:
    gate = gate_name()
    client_tasks = UnendingTasksOfTheClient()
    async with mcp.connect(task_handlers=client_tasks.handlers()) as client:
        seen = server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR)
        task_id = (await client.call_as_task("ask_then_give_up", {"gate": gate, "as_task": True})).task.taskId
        async with result_meanwhile(client, task_id) as results:
            await client_tasks.until(lambda: client_tasks.tasks)
            # The client made its task (its first answer) and the bridge polls it (tasks/get).
            await client.wait_until(lambda: len(client.sent_answers) >= 2 or None)
            stack.open_gate(gate)
        assert text_of(results[0]) == "gave up waiting"
        await client_tasks.until(lambda: client_tasks.cancelled)
        assert client_tasks.cancelled == list(client_tasks.tasks)
        with anyio.fail_after(WAIT):
            await client.session.send_ping()
        assert server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR) == seen
