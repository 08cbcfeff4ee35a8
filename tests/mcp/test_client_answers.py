"""Whatever the client answers a worker's question with, the worker gets an answer: the client's
own, or a -32602 error saying why the bridge could not pass it on. tasks/result then goes on to
the task's result: never a code-0 error, never a wait for an answer that does not come.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.shared.context import RequestContext

from .conftest import WAIT, Answer, Client, Connector, Stack, json_of
from .requirements import requirement
from .test_called_off import LATE_ANSWER_ERROR, server_log
from .test_client_capabilities import TasksOfTheClient

Context = RequestContext[ClientSession, Any]
NOT_VALID = "The client's answer to elicitation/create is not valid: "
BEYOND = "beyond ±2^53: numbers travel as doubles, which would change it"


@pytest.mark.parametrize(
    ("answer", "reported"),
    [
        pytest.param(
            types.ErrorData(code=-32000, message=""),
            {
                "code": -32000,
                "message": "the client answered elicitation/create with error -32000 and no message",
            },
            id="error-without-a-message",
        ),
        pytest.param(
            types.ErrorData(code=2**40, message="no"),
            {"code": types.INVALID_PARAMS, "message": f"{NOT_VALID}error.code does not fit in 32 bits"},
            id="error-code-beyond-32-bits",
        ),
        pytest.param(
            types.ErrorData(code=-32000, message="no", data={"n": 10**400}),
            {
                "code": types.INVALID_PARAMS,
                "message": f"{NOT_VALID}error.data.n is an integer of 1329 bits, {BEYOND}",
            },
            id="error-data-beyond-doubles",
        ),
        pytest.param(
            types.ElicitResult(action="accept", content={"n": 10**400}),
            {
                "code": types.INVALID_PARAMS,
                "message": f"{NOT_VALID}result.content.n is an integer of 1329 bits, {BEYOND}",
            },
            id="content-beyond-doubles",
        ),
        pytest.param(
            types.ElicitResult(action="accept", content={"n": 2**53 + 1}),
            {
                "code": types.INVALID_PARAMS,
                "message": f"{NOT_VALID}result.content.n is 9007199254740993, {BEYOND}",
            },
            id="content-beyond-2-53",
        ),
    ],
)
@requirement("design:every-client-answer-reaches-the-worker")
async def test_an_answer_the_service_cannot_take_as_it_is_reaches_the_worker_as_an_error(
    mcp: Connector, answer: types.ElicitResult | types.ErrorData, reported: dict[str, Any]
) -> None:
    async def elicit(context: Context, params: types.ElicitRequestParams) -> Any:
        return answer

    async with mcp.connect(elicitation=elicit) as client:
        task_id = (await client.call_as_task("ask_details")).task.taskId
        assert json_of(await client.result(task_id)) == {"error": reported}


@requirement("design:every-client-answer-reaches-the-worker")
async def test_an_answer_over_the_payload_limit_reaches_the_worker_as_an_error(mcp: Connector) -> None:
    async def elicit(context: Context, params: types.ElicitRequestParams) -> Any:
        return types.ElicitResult(action="accept", content={"text": "y" * 2_000_000})

    async with mcp.connect(elicitation=elicit) as client:
        task_id = (await client.call_as_task("ask_details")).task.taskId
        error = json_of(await client.result(task_id))["error"]
    assert error["code"] == types.INVALID_PARAMS
    assert re.fullmatch(
        re.escape(NOT_VALID) + r"result is \d+ bytes, over the limit of 1048576 bytes", error["message"]
    ), error


def _answering(client: Client, method: str, result: dict[str, Any]) -> None:
    """Make the client answer every request of `method` the server sends with `result`."""

    def rewrite(answer: Answer) -> Answer:
        if answer.id in client.received_requests.get(method, []):
            return types.JSONRPCResponse(jsonrpc="2.0", id=answer.id, result=result)
        return answer

    client.rewrite = rewrite


@pytest.mark.parametrize(
    ("replied", "reported"),
    [
        pytest.param(
            ("elicitation/create", {"action": "accept", "content": {"colour": "teal"}}),
            re.escape(f"{NOT_VALID}result.task: Field required (not a valid MCP CreateTaskResult)"),
            id="not-a-create-task-result",
        ),
        pytest.param(
            ("elicitation/create", {"task": {"taskId": 5}}),
            re.escape(f"{NOT_VALID}result.task.taskId: Input should be a valid string")
            + r".*\(not a valid MCP CreateTaskResult\)",
            id="a-malformed-create-task-result",
        ),
        pytest.param(
            ("tasks/get", {"foo": 1}),
            re.escape(f"{NOT_VALID}its reply to tasks/get of its task ")
            + r"client-\w+: result\.\w+: Field required \(not a valid MCP GetTaskResult\)",
            id="a-malformed-tasks-get-result",
        ),
    ],
)
@requirement("design:every-client-answer-reaches-the-worker")
async def test_a_bad_reply_to_a_request_the_client_runs_as_a_task_reaches_the_worker_as_an_error(
    mcp: Connector, replied: tuple[str, dict[str, Any]], reported: str
) -> None:
    client_tasks = TasksOfTheClient()
    async with mcp.connect(task_handlers=client_tasks.handlers()) as client:
        _answering(client, *replied)
        task_id = (await client.call_as_task("ask_as_task")).task.taskId
        error = json_of(await client.result(task_id))["error"]
        assert error["code"] == types.INVALID_PARAMS
        assert re.fullmatch(reported, error["message"]), error
        if replied[0] == "tasks/get":
            # The client's task is of no use any more: the bridge cancels it.
            await client.wait_until(lambda: client.received_requests.get("tasks/cancel"))


@requirement("design:unknown-responses-are-ignored")
async def test_a_response_to_a_request_never_sent_is_ignored(mcp: Connector, stack: Stack) -> None:
    async with mcp.connect() as client:
        seen = server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR)
        await client.send_answer(
            types.JSONRPCResponse(jsonrpc="2.0", id=424_242, result={"blob": "z" * 100_000})
        )
        await client.send_answer(
            types.JSONRPCError(
                jsonrpc="2.0", id=424_243, error=types.ErrorData(code=-32000, message="nobody asked")
            )
        )
        with anyio.fail_after(WAIT):
            await client.session.send_ping()  # behind both in the server's incoming queue
        assert server_log(stack, mcp.transport).count(LATE_ANSWER_ERROR) == seen
        assert [n for n in client.notifications if isinstance(n.root, types.LoggingMessageNotification)] == []
