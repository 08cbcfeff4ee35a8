"""What the MCP conformance suite checks: every requirement, and the test cases that cover it.

Each test case names the requirements it covers with `@requirement(...)`;
`test_requirements.py` checks the mapping both ways (every requirement is
covered by at least one test case, and every test case names only known
requirements). An id is one of

- `spec:<revision>/<page>#<section>[/<rule>]`: a section of the MCP
  specification (https://modelcontextprotocol.io/specification/...), with a
  rule name when the section holds several rules;
- `design:<name>`: a guarantee of this project's bridge that the mcp 1.30 SDK's
  own task handlers break or leave open (DESIGN.md, "The bridge");
- `readme:<name>`: an example of README.md that must keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., object])

TASKS = "spec:2025-11-25/basic/utilities/tasks"

REQUIREMENTS: dict[str, str] = {
    # --- capabilities and tools -------------------------------------------------
    f"{TASKS}#server-capabilities": (
        "The server declares tasks.list, tasks.cancel and tasks.requests.tools.call at initialization."
    ),
    f"{TASKS}#tool-level-negotiation": (
        "tools/list shows every tool a connected worker declared, with execution.taskSupport as declared."
    ),
    f"{TASKS}#tool-level-negotiation/required": (
        "A tool whose taskSupport is required, called without a task, is a JSON-RPC -32601 error."
    ),
    f"{TASKS}#tool-level-negotiation/forbidden": (
        "A tool whose taskSupport is forbidden, called with a task, is a JSON-RPC -32601 error."
    ),
    f"{TASKS}#tool-level-negotiation/optional": (
        "An optional tool called without a task runs normally: the call waits and returns its CallToolResult."
    ),
    "spec:2025-11-25/server/tools#list-changed-notification": (
        "The server (listChanged: true) sends notifications/tools/list_changed when a worker connects and"
        " when it disconnects, and tools/list then shows the new set."
    ),
    "spec:2025-11-25/basic/utilities/cancellation#behavior-requirements": (
        "notifications/cancelled for a tools/call made without a task stops the work: the worker's tool"
        " is cancelled (nobody could read its result any more)."
    ),
    "design:payloads-nest-a-bounded-depth": (
        "JSON a client sends (tools/call arguments, an answer) that nests deeper than the service takes"
        " is a JSON-RPC -32602 error (the answer: an error for the worker) that says so, with no"
        " protobuf internals; nothing is created."
    ),
    "design:tool-without-worker-is-a-clear-error": (
        "Calling a tool no connected worker serves is a JSON-RPC error that names the tool and says why."
    ),
    # --- creating, reading, listing ----------------------------------------------
    f"{TASKS}#creating-tasks": (
        "A task-augmented tools/call answers a CreateTaskResult (status working) at once, before the"
        " work ends."
    ),
    f"{TASKS}#task-id-requirements": "Task ids are strings, unique among the server's tasks.",
    f"{TASKS}#ttl-and-resource-management": (
        "The requested ttl is honoured up to the server's cap and reported as the actual ttl; createdAt,"
        " lastUpdatedAt and pollInterval are present."
    ),
    f"{TASKS}#getting-tasks": (
        "tasks/get returns the task's current state, without related-task _meta in the result."
    ),
    f"{TASKS}#task-listing": (
        "tasks/list pages with an opaque nextCursor while more tasks remain; following the cursors yields"
        " every task of the requestor exactly once."
    ),
    f"{TASKS}#protocol-errors": (
        "An unknown task id in tasks/get, tasks/result or tasks/cancel, and an invalid tasks/list cursor,"
        " are JSON-RPC -32602 errors."
    ),
    "design:tasks-belong-to-their-session": (
        "Tasks belong to the MCP session that created them: another session lists none of them and gets"
        " -32602 for their ids in tasks/get, tasks/cancel and tasks/result."
    ),
    # --- cancelling ---------------------------------------------------------------
    f"{TASKS}#task-cancellation": (
        "tasks/cancel moves the task to cancelled before it answers (tasks/get agrees at once), the task"
        " stays cancelled, and cancelling a task in a terminal status is a -32602 error."
    ),
    "design:worker-sees-cancellation-at-once": (
        "Cancelling a running task reaches its worker at once (not at the next heartbeat): the tool's"
        " coroutine is cancelled with is_cancelled set."
    ),
    "design:cancel-running-task-does-not-crash": (
        "Cancelling a running task leaves the MCP session working (mcp 1.30's default handler crashes it);"
        " a tasks/result waiting on it returns."
    ),
    # --- tasks/result and requests for the client ---------------------------------
    f"{TASKS}#result-retrieval": (
        "tasks/result blocks until the task is terminal and returns exactly what the tools/call would have"
        " returned, with io.modelcontextprotocol/related-task _meta."
    ),
    f"{TASKS}#input-required-status": (
        "While the worker waits for the client, the task is input_required; the queued elicitation and"
        " sampling requests reach the client on the tasks/result stream, in order, each carrying"
        " io.modelcontextprotocol/related-task _meta; once answered the task is working again."
    ),
    "design:client-answers-reach-the-worker": (
        "The client's answers reach the waiting worker, and an error the client answers with (ErrorData)"
        " reaches it as the SDK's McpError with that code and message."
    ),
    "design:every-client-answer-reaches-the-worker": (
        "Whatever the client answers (an error without a message, an error code, data or content the"
        " service cannot carry, an answer over the payload limit, a reply that is not the result of a"
        " task-augmented request), the worker gets that answer or a -32602 error saying why, and"
        " tasks/result goes on to the task's result."
    ),
    "design:unknown-responses-are-ignored": (
        "A response to a request id the server is not waiting for is no error: nothing is logged as one"
        " and nothing is sent to the client."
    ),
    "design:params-are-not-changed": (
        "A parameter the service cannot carry as it is (an integer argument beyond ±2^53, a task.ttl"
        " beyond 64 bits, a lone surrogate in a taskId, a cursor or an argument) is a -32602 error naming"
        " it; an argument within ±2^53 reaches the worker exactly."
    ),
    "design:failed-task-result-is-a-call-tool-result": (
        "A failed task's tasks/result is a valid CallToolResult with isError true carrying the error text"
        " (mcp 1.30's default answers something else)."
    ),
    "design:every-result-waiter-returns": (
        "Any number of concurrent tasks/result waiters on one task all return the result (mcp 1.30 wakes"
        " only one)."
    ),
    "design:dropped-result-waiter-loses-nothing": (
        "A client that drops out of tasks/result (cancels the call, or its HTTP connection goes) loses"
        " nothing: the next tasks/result gets the request it left unanswered, and the worker is asked once."
    ),
    "design:unanswered-question-called-off": (
        "A question the task no longer waits for (the task ended first, or its worker lost the task and"
        " the re-run asks again) is called off at the client with notifications/cancelled, which"
        " cancels the client's callback; the client's late answer to it is no error on the server."
    ),
    "design:result-waiter-re-attaches": (
        "A tasks/result open through a standalone bridge outlives a restart of the service: the bridge"
        " opens the task's events again, does not ask the client's question twice, stores the answer"
        " given meanwhile, and the tasks/result ends with the task's result."
    ),
    "design:stop-answers-waiting-requests": (
        "On SIGTERM `taskservice serve` and `taskservice bridge` answer a waiting tasks/result with a"
        " JSON-RPC error that says to call again, end their sessions (an idle one holds its GET stream"
        " open) and exit 0; the task goes on, and a later tasks/result gets its question and result."
    ),
    # --- notifications --------------------------------------------------------------
    f"{TASKS}#task-status-notification": (
        "notifications/tasks/status on every status change of the session's tasks (input_required"
        " included), carrying the full task and no related-task _meta."
    ),
    "design:notify-false-sends-no-notification": (
        "update_status(notify=False) changes the status message without a notifications/tasks/status."
    ),
    f"{TASKS}#task-progress-notifications": (
        "A progressToken given with tools/call (task-augmented or not) gets notifications/progress as the"
        " task reports its status."
    ),
    # --- what the client can take -------------------------------------------------------
    "spec:2025-11-25/client/elicitation#capabilities": (
        "No elicitation is sent to a client that did not declare the elicitation capability: the worker's"
        " elicit raises the SDK's McpError and nothing is queued."
    ),
    "spec:2025-11-25/client/sampling#capabilities": (
        "Sampling with tools needs the client's sampling.tools capability: without it the worker gets the"
        " SDK's McpError; with it the request (tools included) reaches the client."
    ),
    f"{TASKS}#client-capabilities": (
        "elicit_as_task and create_message_as_task need the client's tasks.requests capabilities: without"
        " them the worker gets the SDK's McpError."
    ),
    f"{TASKS}#task-augmented-sampling-request": (
        "elicit_as_task and create_message_as_task against a client that runs them as tasks: the bridge"
        " polls the client's task and the worker gets its result."
    ),
    # --- transports and documentation -----------------------------------------------
    "spec:2025-11-25/basic/transports#streamable-http": (
        "The bridge serves all of the above over streamable HTTP at /mcp, answering each request with"
        " one JSON object or an SSE stream as the spec allows (SSE where the task's requests travel)."
    ),
    "spec:2025-11-25/basic/transports#stdio": (
        "`taskservice bridge --stdio` serves all of the above over stdio, against a running service."
    ),
    "readme:connect-an-mcp-client": (
        "README.md's 'Connect an MCP client' example runs as written against a served bridge and worker."
    ),
}


def requirement(*ids: str) -> Callable[[F], F]:
    """Name the requirements a test case covers (checked against REQUIREMENTS by test_requirements.py)."""
    if not ids:
        raise ValueError("name at least one requirement")
    mark = pytest.mark.requirement(*ids)

    def decorate(test: F) -> F:
        marked: F = mark(test)
        return marked

    return decorate


def requirements_of(test: object) -> list[str]:
    """The requirement ids a test function names."""
    marks = getattr(test, "pytestmark", [])
    return [rid for mark in marks if mark.name == "requirement" for rid in mark.args]
