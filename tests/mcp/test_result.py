"""tasks/result: blocking, carrying the worker's requests to the client and their answers back."""

from __future__ import annotations

from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.shared.context import RequestContext

from taskservice.grpc_api.convert import MAX_PAYLOAD_DEPTH

from .conftest import (
    RELATED_TASK,
    WAIT,
    Capabilities,
    Connector,
    Stack,
    gate_name,
    http_client,
    json_of,
    nested,
    text_of,
)
from .requirements import TASKS, requirement

Context = RequestContext[ClientSession, Any]


def related_task(meta: types.RequestParams.Meta | dict[str, Any] | None) -> str | None:
    """The task id of the io.modelcontextprotocol/related-task _meta entry, if any."""
    if meta is None:
        return None
    data = meta if isinstance(meta, dict) else meta.model_dump(by_alias=True)
    entry = data.get(RELATED_TASK)
    return None if entry is None else str(entry["taskId"])


class Answers:
    """A client's elicitation and sampling callbacks that record what was asked and answer from a script."""

    def __init__(
        self,
        elicit: list[types.ElicitResult | types.ErrorData] | None = None,
        sample: list[types.CreateMessageResult | types.ErrorData] | None = None,
    ) -> None:
        self.to_elicit = list(elicit or [])
        self.to_sample = list(sample or [])
        self.asked: list[tuple[str, str, str | None]] = []
        """(method, message or last prompt, related task id), in the order they arrived."""

    async def elicitation(self, context: Context, params: types.ElicitRequestParams) -> Any:
        self.asked.append(("elicitation/create", params.message, related_task(params.meta)))
        return self.to_elicit.pop(0)

    async def sampling(self, context: Context, params: types.CreateMessageRequestParams) -> Any:
        prompt = params.messages[-1].content
        text = prompt.text if isinstance(prompt, types.TextContent) else ""
        self.asked.append(("sampling/createMessage", text, related_task(params.meta)))
        return self.to_sample.pop(0)


def sampled(text: str) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text=text), model="test-model"
    )


@requirement(
    f"{TASKS}#result-retrieval",
    f"{TASKS}#input-required-status",
    "design:client-answers-reach-the-worker",
)
async def test_result_carries_the_requests_in_order_and_returns_the_result(mcp: Connector) -> None:
    answers = Answers(
        elicit=[
            types.ElicitResult(action="accept", content={"name": "Ada"}),
            types.ElicitResult(action="accept", content={"age": 36}),
        ],
        sample=[sampled("Ada is 36.")],
    )
    async with mcp.connect(elicitation=answers.elicitation, sampling=answers.sampling) as client:
        created = await client.call_as_task("interview")
        task_id = created.task.taskId
        result = await client.result(task_id)
        # It returned because the task ended, not before.
        assert (await client.get(task_id)).status == "completed"
        assert answers.asked == [
            ("elicitation/create", "What is your name?", task_id),
            ("elicitation/create", "How old are you?", task_id),
            ("sampling/createMessage", "Summarize the interview.", task_id),
        ]
        assert json_of(result) == {
            "seen": [
                {"action": "accept", "content": {"name": "Ada"}},
                {"action": "accept", "content": {"age": 36}},
                {"model": "test-model", "text": "Ada is 36."},
            ]
        }
        assert related_task(result.meta) == task_id
        # The worker waited for the client: the task was input_required meanwhile.
        await client.wait_for_status(task_id, "input_required")


@requirement(f"{TASKS}#input-required-status")
async def test_task_is_working_again_once_answered(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    answers = Answers(elicit=[types.ElicitResult(action="accept", content={"ok": True})])
    async with mcp.connect(elicitation=answers.elicitation) as client, anyio.create_task_group() as group:
        task_id = (await client.call_as_task("ask_once", {"gate": gate})).task.taskId
        results: list[types.CallToolResult] = []

        async def wait_for_result() -> None:
            results.append(await client.result(task_id))

        group.start_soon(wait_for_result)
        asked = await client.wait_for_status(task_id, "input_required")
        # The tool now waits for its gate, after the answer: the task is working again.
        working = await client.wait_until(
            lambda: next(
                (
                    n
                    for n in client.status_notifications(task_id)
                    if n.status == "working" and n.lastUpdatedAt > asked.lastUpdatedAt
                ),
                None,
            )
        )
        assert working.status == "working"
        assert (await client.get(task_id)).status == "working"
        assert not results
        stack.open_gate(gate)
    assert json_of(results[0]) == {"action": "accept", "content": {"ok": True}}


@requirement("design:client-answers-reach-the-worker")
async def test_client_errors_reach_the_worker_as_mcp_errors(mcp: Connector) -> None:
    answers = Answers(
        elicit=[
            types.ElicitResult(action="decline"),
            types.ErrorData(code=-32042, message="the user closed the dialog", data={"why": "closed"}),
        ],
        sample=[types.ErrorData(code=types.INVALID_REQUEST, message="sampling refused by the user")],
    )
    async with mcp.connect(elicitation=answers.elicitation, sampling=answers.sampling) as client:
        task_id = (await client.call_as_task("interview")).task.taskId
        assert json_of(await client.result(task_id)) == {
            "seen": [
                {"action": "decline", "content": None},
                {"error": {"code": -32042, "message": "the user closed the dialog"}},
                {"error": {"code": types.INVALID_REQUEST, "message": "sampling refused by the user"}},
            ]
        }


@requirement("design:failed-task-result-is-a-call-tool-result", f"{TASKS}#result-retrieval")
async def test_failed_task_result_is_an_error_result(mcp: Connector) -> None:
    async with mcp.connect() as client:
        task_id = (await client.call_as_task("explode")).task.taskId
        result = await client.result(task_id)
        assert result.isError is True
        assert "explode: the tool failed on purpose" in text_of(result)
        assert related_task(result.meta) == task_id
        failed = await client.get(task_id)
        assert failed.status == "failed"
        assert failed.statusMessage is not None
        assert "explode: the tool failed on purpose" in failed.statusMessage
        # What the tools/call would have returned without a task: the same error result.
        direct = await client.session.call_tool("explode", {})
        assert direct.isError is True
        assert "explode: the tool failed on purpose" in text_of(direct)


@requirement("design:every-result-waiter-returns")
async def test_every_concurrent_result_waiter_returns(mcp: Connector, stack: Stack) -> None:
    gate = gate_name()
    waiters = 4
    async with mcp.connect() as client:
        task_id = (await client.call_as_task("gated", {"gate": gate})).task.taskId
        results: list[types.CallToolResult] = []

        async def wait_for_result() -> None:
            results.append(await client.result(task_id))

        async with anyio.create_task_group() as group:
            for _ in range(waiters):
                group.start_soon(wait_for_result)
            await client.wait_until(
                lambda: len(client.sent_requests.get("tasks/result", [])) >= waiters or None
            )
            assert (await client.get(task_id)).status == "working"
            stack.open_gate(gate, "for everyone")
        assert [text_of(r) for r in results] == ["opened: for everyone"] * waiters


@requirement("design:dropped-result-waiter-loses-nothing")
async def test_a_cancelled_result_call_loses_nothing(mcp: Connector) -> None:
    """The client drops out of tasks/result with the question unanswered (it reached the transport
    but never the ClientSession), cancelling the call; the next tasks/result gets the question.

    Over stdio, closing the session is the other way to drop out, but then the session is over:
    its tasks cannot be reached again (they belong to it), so there is nothing to check there.
    """
    answers = Answers(elicit=[types.ElicitResult(action="accept", content={"ok": True})])
    async with mcp.connect(elicitation=answers.elicitation) as client:
        task_id = (await client.call_as_task("ask_once")).task.taskId
        lost = client.drop_next("elicitation/create")
        async with anyio.create_task_group() as group:
            group.start_soon(client.result, task_id)
            with anyio.fail_after(WAIT):
                await lost.wait()
            # The request reached the client, which never answers it: it cancels its tasks/result.
            await client.cancel_request(client.sent_requests["tasks/result"][-1])
            group.cancel_scope.cancel()
        assert answers.asked == []
        assert (await client.get(task_id)).status == "input_required"
        result = await client.result(task_id)
        assert answers.asked == [("elicitation/create", "Proceed?", task_id)]
        assert json_of(result) == {"action": "accept", "content": {"ok": True}}


@requirement("design:dropped-result-waiter-loses-nothing", "spec:2025-11-25/basic/transports#streamable-http")
async def test_a_dropped_http_connection_loses_nothing(stack: Stack) -> None:
    """The client's HTTP connection goes while tasks/result waits (no cancellation, no DELETE of the
    MCP session); a new connection to the same MCP session gets the unanswered question."""
    answers = Answers(elicit=[types.ElicitResult(action="accept", content={"ok": True})])
    declared = Capabilities(elicitation=True)
    async with http_client(stack, declared, terminate=False) as first:
        session_id = first.session_id
        assert session_id is not None
        task_id = (await first.call_as_task("ask_once")).task.taskId
        lost = first.drop_next("elicitation/create")
        async with anyio.create_task_group() as group:
            group.start_soon(first.result, task_id)
            with anyio.fail_after(WAIT):
                await lost.wait()
            group.cancel_scope.cancel()
    # The connection is gone, unanswered; the MCP session lives on. A new connection to it:
    async with http_client(stack, declared, session_id=session_id) as again:
        again.elicitation = answers.elicitation
        assert (await again.get(task_id)).status == "input_required"
        result = await again.result(task_id)
        assert answers.asked == [("elicitation/create", "Proceed?", task_id)]
        assert json_of(result) == {"action": "accept", "content": {"ok": True}}


@requirement("design:client-answers-reach-the-worker")
async def test_an_invalid_answer_reaches_the_worker_as_an_error(mcp: Connector) -> None:
    async def wrong_shape(context: Context, params: types.ElicitRequestParams) -> Any:
        return types.EmptyResult()  # a result, but not an ElicitResult: the service refuses it

    async with mcp.connect(elicitation=wrong_shape) as client:
        task_id = (await client.call_as_task("ask_once")).task.taskId
        reported = json_of(await client.result(task_id))
    assert reported["error"]["code"] == types.INVALID_PARAMS
    assert reported["error"]["message"].startswith("The client's answer to elicitation/create is not valid")


@requirement("design:client-answers-reach-the-worker", "design:payloads-nest-a-bounded-depth")
async def test_an_answer_nested_too_deep_reaches_the_worker_as_an_error(mcp: Connector) -> None:
    async def too_deep(context: Context, params: types.ElicitRequestParams) -> Any:
        answer = {"action": "accept", "content": {"ok": True}, "_meta": nested(40)}
        return types.ElicitResult.model_validate(answer)

    async with mcp.connect(elicitation=too_deep) as client:
        task_id = (await client.call_as_task("ask_once")).task.taskId
        reported = json_of(await client.result(task_id))
    assert reported["error"] == {
        "code": types.INVALID_PARAMS,
        "message": "The client's answer to elicitation/create is not valid: result._meta"
        + ".a" * (MAX_PAYLOAD_DEPTH - 1)
        + f" nests deeper than {MAX_PAYLOAD_DEPTH} levels of objects and arrays",
    }
