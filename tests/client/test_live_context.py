"""RemoteTaskContext against a real service: every method, answered the way a bridge answers."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import grpc
import pytest
from mcp import types
from mcp.shared.exceptions import McpError
from taskservice_client import RemoteTaskContext, TaskServiceRejected
from taskservice_client._convert import dict_to_struct, struct_to_dict
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2 as bpb
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain.service import MAX_STATUS_MESSAGE_BYTES
from taskservice.testing import RunningService

from .conftest import ELICIT_SCHEMA, WAIT, Bridge, make_worker, running

RELATED_TASK = "io.modelcontextprotocol/related-task"


def text_of(result: dict[str, Any] | None) -> str:
    assert result is not None
    text: str = result["content"][0]["text"]
    return text


async def test_update_status_and_complete(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)
    seen: dict[str, Any] = {}
    returned = anyio.Event()

    @worker.tool()
    async def work(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
        seen["task_id"] = ctx.task_id
        seen["initial"] = ctx.task.status
        await ctx.update_status("halfway")
        seen["message"] = ctx.task.statusMessage
        await ctx.update_status("quietly", notify=False)
        await ctx.complete(
            types.CallToolResult(content=[types.TextContent(type="text", text=f"x={arguments['x']}")])
        )
        seen["final"] = ctx.task.status
        returned.set()
        return types.CallToolResult(content=[types.TextContent(type="text", text="ignored")])

    async with running(worker):
        task_id = await bridge.create("work", {"x": 7})
        task, result = await bridge.outcome(task_id)
        with anyio.fail_after(WAIT):
            await returned.wait()  # the tool goes on after complete(): let it end before the worker stops
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert text_of(result) == "x=7"  # the tool completed it itself: its return value is not used
    assert seen == {"task_id": task_id, "initial": "working", "message": "halfway", "final": "completed"}


async def test_a_result_the_service_refuses_fails_the_task_with_the_reason(
    service: RunningService, bridge: Bridge
) -> None:
    """A returned result over the service's payload limit is refused by Complete, one nested
    deeper than the service takes by the worker itself: either way the task fails, saying why,
    instead of running on with nobody left to end it."""
    worker = make_worker(service.target)
    limit = service.manager.limits.max_payload_bytes

    @worker.tool()
    async def huge(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        return "x" * (limit + 1)

    @worker.tool(output_schema={"type": "object"})
    async def deep(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for _ in range(40):
            nested = {"a": nested}
        return nested

    async with running(worker):
        (huge_task, _), (deep_task, _) = [
            await bridge.outcome(await bridge.create(name, {})) for name in ("huge", "deep")
        ]
    assert huge_task.status == deep_task.status == task_pb2.TASK_STATUS_FAILED
    assert huge_task.status_message.startswith("The task service refused the tool's result: ")
    assert "over the limit" in huge_task.status_message, huge_task.status_message
    assert deep_task.status_message.startswith("result.structuredContent.a.a"), deep_task.status_message
    assert deep_task.status_message.endswith("nests deeper than 24 levels of objects and arrays")


async def test_return_values_complete_the_task(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)

    @worker.tool(output_schema={"type": "object", "properties": {"sum": {"type": "number"}}})
    async def add(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"sum": arguments["a"] + arguments["b"]}

    @worker.tool()
    async def greet(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        return f"hello {arguments['name']}"

    async with running(worker):
        added = await bridge.create("add", {"a": 2, "b": 3})
        greeted = await bridge.create("greet", {"name": "Ada"})
        (_, add_result), (_, greet_result) = await bridge.outcome(added), await bridge.outcome(greeted)
    assert add_result is not None
    assert add_result["structuredContent"] == {"sum": 5}
    assert text_of(greet_result) == "hello Ada"


async def test_fail_and_exceptions_fail_the_task(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)

    @worker.tool()
    async def explicit(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        await ctx.fail("could not do it", notify=False)
        return "ignored"

    @worker.tool()
    async def raising(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        raise RuntimeError(f"boom {arguments['n']}")

    @worker.tool()
    async def bad_return(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> Any:
        return 42

    @worker.tool()
    async def raising_at_length(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        # Longer than the service keeps: cut, and the task still fails.
        raise RuntimeError("é" * 5000)

    async with running(worker):
        ids = [
            await bridge.create("explicit"),
            await bridge.create("raising", {"n": 42}),
            await bridge.create("bad_return"),
            await bridge.create("raising_at_length"),
        ]
        outcomes = [await bridge.outcome(task_id) for task_id in ids]
    assert [task.status for task, _ in outcomes] == [task_pb2.TASK_STATUS_FAILED] * 4
    assert [task.status_message for task, _ in outcomes][:2] == ["could not do it", "boom 42"]
    assert "must return" in outcomes[2][0].status_message
    assert outcomes[3][0].status_message == "é" * (MAX_STATUS_MESSAGE_BYTES // 2 - 2) + "..."
    assert all(result is None for _, result in outcomes)


async def test_a_result_the_wire_would_change_fails_the_task_naming_it(
    service: RunningService, bridge: Bridge
) -> None:
    """A Struct's numbers are doubles: 2^53 + 1 would arrive as 2^53, so it does not go at all."""
    worker = make_worker(service.target)

    @worker.tool(output_schema={"type": "object"})
    async def too_big(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"ids": [1, 2**53 + 1]}

    @worker.tool()
    async def completes_itself(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        result = types.CallToolResult(content=[], structuredContent={"n": 10**20})
        try:
            await ctx.complete(result)
        except ValueError as error:
            return f"refused: {error}"
        return "sent"

    async with running(worker):
        failed, _ = await bridge.outcome(await bridge.create("too_big"))
        _, refused = await bridge.outcome(await bridge.create("completes_itself"))
    assert failed.status == task_pb2.TASK_STATUS_FAILED
    assert failed.status_message == (
        "result.structuredContent.ids[1] is 9007199254740993, beyond ±2^53:"
        " numbers travel as doubles, which would change it"
    )
    assert refused is not None
    assert text_of(refused) == (
        "refused: result.structuredContent.n is 100000000000000000000, beyond ±2^53:"
        " numbers travel as doubles, which would change it"
    )


async def test_elicit(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)
    seen: dict[str, Any] = {}

    @worker.tool()
    async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        answer = await ctx.elicit("Who are you?", ELICIT_SCHEMA)
        seen["answer"] = answer
        seen["status_after"] = ctx.task.status
        assert answer.content is not None
        return f"{answer.content['name']} is {answer.content['age']}"

    async with running(worker):
        task_id = await bridge.create("ask")
        request = await bridge.next_request(task_id)
        assert (await bridge.task(task_id)).status == task_pb2.TASK_STATUS_INPUT_REQUIRED
        params = _params(request)
        assert request.method == "elicitation/create"
        assert params["message"] == "Who are you?"
        assert params["requestedSchema"] == ELICIT_SCHEMA
        assert params["_meta"][RELATED_TASK] == {"taskId": task_id}
        assert "task" not in params
        await bridge.answer(
            task_id, request.request_id, {"action": "accept", "content": {"name": "Ada", "age": 36}}
        )
        _, result = await bridge.outcome(task_id)
    assert text_of(result) == "Ada is 36"
    assert seen["answer"] == types.ElicitResult(action="accept", content={"name": "Ada", "age": 36})
    assert isinstance(seen["answer"].content["age"], int)
    assert seen["status_after"] == "working"


async def test_elicit_url(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)

    @worker.tool()
    async def login(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        answer = await ctx.elicit_url("Please sign in", "https://example.test/login", "elic-1")
        return answer.action

    async with running(worker):
        task_id = await bridge.create("login")
        request = await bridge.next_request(task_id)
        params = _params(request)
        assert request.method == "elicitation/create"
        assert params["mode"] == "url"
        assert params["url"] == "https://example.test/login"
        assert params["elicitationId"] == "elic-1"
        assert params["message"] == "Please sign in"
        await bridge.answer(task_id, request.request_id, {"action": "decline"})
        _, result = await bridge.outcome(task_id)
    assert text_of(result) == "decline"


SAMPLING_TOOL = types.Tool(name="lookup", inputSchema={"type": "object"})


async def ask_the_client(ctx: RemoteTaskContext, method: str) -> None:
    """One request to the client through the context method `method` (`create_message_tools`:
    create_message with tools)."""
    hi = [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="Hi"))]
    if method == "elicit":
        await ctx.elicit("?", ELICIT_SCHEMA)
    elif method == "elicit_url":
        await ctx.elicit_url("?", "https://example.test", "e-1")
    elif method == "elicit_as_task":
        await ctx.elicit_as_task("?", ELICIT_SCHEMA)
    elif method == "create_message":
        await ctx.create_message(hi, max_tokens=5)
    elif method == "create_message_tools":
        await ctx.create_message(hi, max_tokens=5, tools=[SAMPLING_TOOL])
    elif method == "create_message_as_task":
        await ctx.create_message_as_task(hi, max_tokens=5)
    else:
        raise AssertionError(f"no such request: {method}")


async def test_create_message_with_every_parameter(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)
    seen: dict[str, Any] = {}

    @worker.tool()
    async def sample(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        result = await ctx.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="Hi"))],
            max_tokens=100,
            system_prompt="Be brief.",
            include_context="thisServer",
            temperature=0.5,
            stop_sequences=["STOP"],
            metadata={"trace": "t-1"},
            model_preferences=types.ModelPreferences(
                hints=[types.ModelHint(name="claude")], speedPriority=0.25
            ),
            tools=[SAMPLING_TOOL],
            tool_choice=types.ToolChoice(mode="auto"),
        )
        seen["result"] = result
        assert isinstance(result.content, types.TextContent)
        return result.content.text

    async with running(worker):
        task_id = await bridge.create("sample")
        request = await bridge.next_request(task_id)
        params = _params(request)
        assert request.method == "sampling/createMessage"
        assert params["messages"] == [{"role": "user", "content": {"type": "text", "text": "Hi"}}]
        assert params["maxTokens"] == 100
        assert params["systemPrompt"] == "Be brief."
        assert params["includeContext"] == "thisServer"
        assert params["temperature"] == 0.5
        assert params["stopSequences"] == ["STOP"]
        assert params["metadata"] == {"trace": "t-1"}
        assert params["modelPreferences"] == {"hints": [{"name": "claude"}], "speedPriority": 0.25}
        assert params["tools"] == [{"name": "lookup", "inputSchema": {"type": "object"}}]
        assert params["toolChoice"] == {"mode": "auto"}
        assert params["_meta"][RELATED_TASK] == {"taskId": task_id}
        answer = {"role": "assistant", "content": {"type": "text", "text": "Hello"}, "model": "m-1"}
        await bridge.answer(task_id, request.request_id, {**answer, "stopReason": "endTurn"})
        _, result = await bridge.outcome(task_id)
    assert text_of(result) == "Hello"
    assert seen["result"] == types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="Hello"),
        model="m-1",
        stopReason="endTurn",
    )


async def test_create_message_rejects_malformed_tool_messages(
    service: RunningService, bridge: Bridge
) -> None:
    worker = make_worker(service.target)
    errors: list[BaseException] = []

    @worker.tool()
    async def sample(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        orphan = types.SamplingMessage(
            role="user",
            content=types.ToolResultContent(type="tool_result", toolUseId="nope", content=[]),
        )
        for call in (ctx.create_message, ctx.create_message_as_task):
            try:
                await call([orphan], max_tokens=10)
            except ValueError as error:
                errors.append(error)
        return "checked"

    async with running(worker):
        task_id = await bridge.create("sample")
        _, result = await bridge.outcome(task_id)
        stored = await service.manager.get_task(task_id)
    assert text_of(result) == "checked"
    assert [type(e) for e in errors] == [ValueError, ValueError]
    assert "tool_result" in str(errors[0])
    assert stored.requests == ()  # nothing was asked


async def test_elicit_as_task(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)

    @worker.tool()
    async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        answer = await ctx.elicit_as_task("Pick one", ELICIT_SCHEMA, ttl=1234)
        assert answer.content is not None
        return str(answer.content["name"])

    async with running(worker):
        task_id = await bridge.create("ask")
        request = await bridge.next_request(task_id)
        params = _params(request)
        assert request.method == "elicitation/create"
        assert params["task"] == {"ttl": 1234}
        assert params["requestedSchema"] == ELICIT_SCHEMA
        await bridge.answer(task_id, request.request_id, {"action": "accept", "content": {"name": "Grace"}})
        _, result = await bridge.outcome(task_id)
    assert text_of(result) == "Grace"


async def test_create_message_as_task(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)

    @worker.tool()
    async def sample(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        result = await ctx.create_message_as_task(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="Hi"))],
            max_tokens=5,
            system_prompt="Short.",
        )
        assert isinstance(result.content, types.TextContent)
        return result.content.text

    async with running(worker):
        task_id = await bridge.create("sample")
        request = await bridge.next_request(task_id)
        params = _params(request)
        assert request.method == "sampling/createMessage"
        assert params["task"] == {"ttl": 60000}
        assert params["maxTokens"] == 5
        assert params["systemPrompt"] == "Short."
        answer = {"role": "assistant", "content": {"type": "text", "text": "Yo"}, "model": "m"}
        await bridge.answer(task_id, request.request_id, answer)
        _, result = await bridge.outcome(task_id)
    assert text_of(result) == "Yo"


@pytest.mark.parametrize("method", ["elicit", "create_message", "elicit_as_task", "create_message_as_task"])
async def test_client_errors_raise_mcp_error(service: RunningService, bridge: Bridge, method: str) -> None:
    """A client that lacks the capability answers with a JSON-RPC error: the stub raises McpError."""
    worker = make_worker(service.target)
    raised: list[McpError] = []

    @worker.tool()
    async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        try:
            await ask_the_client(ctx, method)
        except McpError as error:
            raised.append(error)
            raise
        return "unreachable"

    async with running(worker):
        task_id = await bridge.create("ask")
        request = await bridge.next_request(task_id)
        await bridge.answer_error(
            task_id, request.request_id, types.INVALID_REQUEST, "Client does not support it"
        )
        task, _ = await bridge.outcome(task_id)
    assert raised[0].error.code == types.INVALID_REQUEST
    assert raised[0].error.message == "Client does not support it"
    assert task.status == task_pb2.TASK_STATUS_FAILED
    assert task.status_message == "Client does not support it"


async def test_cancellation_during_a_wait(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)
    seen: dict[str, Any] = {}
    stopped = anyio.Event()

    @worker.tool()
    async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        try:
            await ctx.elicit("Still there?", ELICIT_SCHEMA)
        except anyio.get_cancelled_exc_class():
            seen["is_cancelled"] = ctx.is_cancelled
            seen["status"] = ctx.task.status
            stopped.set()
            raise
        return "unreachable"

    async with running(worker):
        task_id = await bridge.create("ask")
        await bridge.next_request(task_id)
        await bridge.cancel(task_id)
        with anyio.fail_after(WAIT):
            await stopped.wait()
        task, result = await bridge.outcome(task_id)
    assert seen == {"is_cancelled": True, "status": "cancelled"}
    assert task.status == task_pb2.TASK_STATUS_CANCELLED
    assert result is None


@pytest.mark.parametrize("watch_after", [0.0, 0.05, 0.3])
async def test_cancellation_stops_a_busy_tool(
    service: RunningService, bridge: Bridge, watch_after: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No call to the service is pending: the task's watch notices the cancellation, also when the
    task was cancelled before the watch started (`watch_after`): its first message says so."""
    worker = make_worker(service.target, watch_after=watch_after)
    started, stopped, acked = anyio.Event(), anyio.Event(), anyio.Event()
    seen: list[tuple[bool, str]] = []
    ack = service.manager.ack

    async def acknowledged(*args: Any, **kwargs: Any) -> Any:
        try:
            return await ack(*args, **kwargs)
        finally:
            acked.set()

    # Cancelled only once acknowledged: a refused acknowledgement would stop the tool as well.
    monkeypatch.setattr(service.manager, "ack", acknowledged)

    @worker.tool()
    async def busy(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            # The cancelled task itself, as the watch brought it (a heartbeat's news of the
            # cancellation would stop the tool too, but leave ctx.task as it was).
            seen.append((ctx.is_cancelled, ctx.task.status))
            stopped.set()
        return "unreachable"

    async with running(worker):
        task_id = await bridge.create("busy")
        with anyio.fail_after(WAIT):
            await started.wait()
            await acked.wait()
        await bridge.cancel(task_id)
        with anyio.fail_after(WAIT):
            await stopped.wait()
        task, _ = await bridge.outcome(task_id)
    assert seen == [(True, "cancelled")]
    assert task.status == task_pb2.TASK_STATUS_CANCELLED


async def test_concurrency_is_bounded(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target, max_concurrent_tasks=2)
    running_now: set[str] = set()
    peak: list[int] = []
    release, two_running = anyio.Event(), anyio.Event()

    @worker.tool()
    async def hold(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        running_now.add(ctx.task_id)
        peak.append(len(running_now))
        if len(running_now) == 2:
            two_running.set()
        await release.wait()
        running_now.discard(ctx.task_id)
        return "done"

    async with running(worker):
        ids = [await bridge.create("hold") for _ in range(5)]
        with anyio.fail_after(WAIT):
            await two_running.wait()
        release.set()
        outcomes = [await bridge.outcome(task_id) for task_id in ids]
    assert max(peak) == 2
    assert all(task.status == task_pb2.TASK_STATUS_COMPLETED for task, _ in outcomes)


@pytest.mark.parametrize(
    "method",
    [
        "elicit",
        "elicit_url",
        "elicit_as_task",
        "create_message",
        "create_message_tools",
        "create_message_as_task",
    ],
)
async def test_a_question_of_a_lost_holding_is_withdrawn_and_its_wait_refused(
    service: RunningService, bridge: Bridge, method: str
) -> None:
    """The task goes back to the queue while its first run waits for the client (as when the
    service declared the worker lost): that run's request names its lease, so its wait ends
    with LEASE_NOT_HELD, its question is withdrawn (the bridge's event stream says so, and a
    late answer is refused), and the re-run finishes the task."""
    worker = make_worker(service.target)
    runs: list[int] = []
    refused: list[str] = []
    first_refused = anyio.Event()

    @worker.tool(retry_safe=True)
    async def twice(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            try:
                await ask_the_client(ctx, method)
            except TaskServiceRejected as error:
                refused.append(str(error))
                first_refused.set()
                raise
        return f"run {len(runs)}"

    async with running(worker):
        task_id = await bridge.create("twice")
        first = await bridge.next_request(task_id)
        held = await service.manager.store.get_task(task_id)
        assert held is not None
        assert held.lease_id
        events = bridge.stub.StreamTaskEvents(
            bpb.StreamTaskEventsRequest(owner=bridge.owner, task_id=task_id, skip_changes=True)
        )
        try:
            with anyio.fail_after(WAIT):
                delivered = await events.read()
                assert delivered.request.request_id == first.request_id
                await service.manager.release(held.worker_id, task_id, held.lease_id)
                withdrawn = await events.read()
                await first_refused.wait()
        finally:
            events.cancel()
        assert withdrawn.WhichOneof("event") == "withdrawn"
        assert withdrawn.withdrawn.request_id == first.request_id
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await bridge.answer_error(task_id, first.request_id, -1, "too late")
        task, result = await bridge.outcome(task_id)
    assert "the task went back to the queue (FAILED_PRECONDITION)" in refused[0], refused
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "withdrawn unanswered" in (late.value.details() or "")
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert text_of(result) == "run 2"
    stored = await service.manager.store.get_task(task_id)
    assert stored is not None
    assert [r.state.value for r in stored.requests] == ["withdrawn"]


def _params(request: task_pb2.PendingRequest) -> dict[str, Any]:
    return struct_to_dict(request.params)


@pytest.mark.parametrize(
    ("capabilities", "method", "code", "message"),
    [
        ({}, "elicit", types.INVALID_REQUEST, "Client does not support elicitation capability"),
        ({}, "elicit_url", types.INVALID_REQUEST, "Client does not support elicitation capability"),
        (
            {"elicitation": {}},
            "create_message",
            types.INVALID_REQUEST,
            "Client does not support sampling capability",
        ),
        (
            {"sampling": {}},
            "create_message_tools",
            types.INVALID_PARAMS,
            "Client does not support sampling tools capability",
        ),
        (
            {"elicitation": {}},
            "elicit_as_task",
            types.INVALID_REQUEST,
            "Client does not support task-augmented elicitation",
        ),
        (
            {"sampling": {}},
            "create_message_as_task",
            types.INVALID_REQUEST,
            "Client does not support task-augmented sampling",
        ),
    ],
)
async def test_missing_client_capability_raises_mcp_error_before_asking(
    service: RunningService,
    bridge: Bridge,
    capabilities: dict[str, Any],
    method: str,
    code: int,
    message: str,
) -> None:
    """The bridge passes the MCP client's capabilities: the SDK's McpError, and nothing is queued."""
    worker = make_worker(service.target)
    raised: list[McpError] = []

    @worker.tool()
    async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        try:
            await ask_the_client(ctx, method)
        except McpError as error:
            raised.append(error)
            return "refused"
        return "asked"

    async with running(worker):
        task_id = await bridge.create("ask", client_capabilities=dict_to_struct(capabilities))
        _, result = await bridge.outcome(task_id)
        stored = await service.manager.get_task(task_id)
    assert text_of(result) == "refused"
    assert (raised[0].error.code, raised[0].error.message) == (code, message)
    assert stored.requests == ()


async def test_the_worker_names_its_lease_so_a_task_held_by_another_is_not_changed(
    service: RunningService, bridge: Bridge
) -> None:
    """While the tool runs, the task passes to another holder (as when the service declared this
    worker lost and gave the task to another): the tool's status change and its outcome,
    made under its own lease, are refused and change nothing."""
    worker = make_worker(service.target)
    started, moved, dropped = anyio.Event(), anyio.Event(), anyio.Event()
    refused: list[str] = []

    class Dropped(logging.Handler):
        """The worker logs the outcome it could not store (on the loop's thread)."""

        def emit(self, record: logging.LogRecord) -> None:
            if "outcome not stored" in record.getMessage():
                refused.append(record.getMessage())
                dropped.set()

    handler = Dropped(logging.INFO)
    logger = logging.getLogger("taskservice_client")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @worker.tool()
    async def slow(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        started.set()
        await moved.wait()
        try:
            await ctx.update_status("still mine?")
        except TaskServiceRejected as error:
            refused.append(str(error))
        return "the late result"

    try:
        async with running(worker):
            task_id = await bridge.create("slow", {})
            with anyio.fail_after(WAIT):
                await started.wait()
            await service.manager.store.update_task(task_id, lambda task: task.replace(lease_id="another"))
            moved.set()
            with anyio.fail_after(WAIT):
                await dropped.wait()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    task = await service.manager.store.get_task(task_id)
    assert task is not None
    assert (task.status.value, task.status_message, task.result) == ("working", "", None)
    assert len(refused) == 2, refused  # the status change, then the outcome
    assert "the task went to another worker (FAILED_PRECONDITION)" in refused[0]
    assert f"task {task_id}: outcome not stored: /mcptasks.v1.TaskService/Complete: lease" in refused[1]
