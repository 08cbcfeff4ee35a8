"""Errors over gRPC: status codes with `google.rpc.Status` details, and nothing changed by a bad call."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import status_pb2
from mcp import types
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.grpc_api.errors import grpc_errors
from taskservice.grpc_api.local import call_locally
from taskservice.testing import RunningService

from .conftest import MAX_PAYLOAD_BYTES
from .support import (
    OWNER,
    SAMPLING_ANSWER,
    USER_MESSAGE,
    Clients,
    Stream,
    bounded,
    bpb,
    pb,
    rich,
    rich_error,
    to_dict,
    to_struct,
    tool,
)


@contextlib.asynccontextmanager
async def task_unchanged(clients: Clients, svc: RunningService, task_id: str) -> AsyncIterator[None]:
    """The block's calls leave the stored task exactly as it was, over gRPC and in the store."""
    before = await clients.get(task_id)
    stored = await svc.manager.store.get_task(task_id)
    yield
    assert await clients.get(task_id) == before
    assert await svc.manager.store.get_task(task_id) == stored


# ------------------------------------------------------------------------ not found


async def test_get_task_of_an_unknown_id_is_not_found_with_rich_details(clients: Clients) -> None:
    error = await rich_error(clients.tasks.GetTask(pb.GetTaskRequest(task_id="no-such-task")))
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.reason == "TASK_NOT_FOUND"
    assert error.domain == "mcptasks.v1"
    assert error.resource is not None
    assert (error.resource.resource_type, error.resource.resource_name) == ("task", "no-such-task")
    assert "no-such-task" in error.message


async def test_update_status_of_an_unknown_id_is_not_found_with_rich_details(clients: Clients) -> None:
    request = pb.UpdateStatusRequest(task_id="no-such-task", status_message="half way")
    error = await rich_error(clients.tasks.UpdateStatus(request))
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.reason == "TASK_NOT_FOUND"
    assert error.resource is not None
    assert error.resource.resource_name == "no-such-task"


async def test_answer_to_an_unknown_request_is_not_found(clients: Clients, task_id: str) -> None:
    error = await rich_error(
        clients.bridge.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=OWNER, task_id=task_id, request_id="nope", result=to_struct({"action": "decline"})
            )
        )
    )
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.reason == "REQUEST_NOT_FOUND"
    assert error.resource is not None
    assert (error.resource.resource_type, error.resource.resource_name) == ("request", "nope")


# ------------------------------------------------------------------- empty task_id


async def test_empty_task_id_is_invalid_argument_naming_task_id(clients: Clients) -> None:
    calls: list[Any] = [
        clients.tasks.GetTask(pb.GetTaskRequest()),
        clients.tasks.UpdateStatus(pb.UpdateStatusRequest(status_message="x")),
        clients.tasks.Complete(pb.CompleteRequest(result=to_struct({"content": []}))),
        clients.tasks.Fail(pb.FailRequest(error="x")),
        clients.bridge.LookupTask(bpb.LookupTaskRequest(owner=OWNER)),
        clients.bridge.CancelTask(bpb.CancelTaskRequest(owner=OWNER)),
    ]
    for call in calls:
        error = await rich_error(call)
        assert error.code is grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "INVALID_ARGUMENT"
        assert error.fields == ["task_id"]


async def test_empty_task_id_of_a_stream_is_invalid_argument_naming_task_id(clients: Clients) -> None:
    watch = clients.tasks.WatchTask(pb.WatchTaskRequest())
    elicit = clients.tasks.Elicit(
        pb.ElicitRequest(message="?", requested_schema=to_struct({"type": "object"}))
    )
    for call in (watch, elicit):
        error = rich(await stream_error(call))
        assert error.code is grpc.StatusCode.INVALID_ARGUMENT
        assert error.fields == ["task_id"]


async def stream_error(call: grpc.aio.UnaryStreamCall[Any, Any]) -> grpc.aio.AioRpcError:
    return await Stream(call).error()


# ---------------------------------------------------------------------- bad payloads


@pytest.mark.parametrize(
    ("result", "field_prefix"),
    [
        pytest.param({"content": "not a list"}, "result.content", id="content-not-a-list"),
        pytest.param(
            {"content": [{"type": "hologram", "data": "x"}]}, "result.content.0.type", id="unknown-type"
        ),
        pytest.param({"content": [{"type": "text"}]}, "result.content.0", id="text-without-text"),
        pytest.param({"content": [], "isError": [True]}, "result.isError", id="isError-not-a-bool"),
        pytest.param({"content": [], "isError": "yes"}, "result.isError", id="isError-a-string"),
        pytest.param(
            {"content": [{"type": "resource_link", "uri": "file:///a.txt"}]},
            "result.content.0.ResourceLink.name",
            id="resource-link-without-name",
        ),
        pytest.param(
            {"content": [{"type": "resource", "resource": {"uri": "file:///a.txt"}}]},
            "result.content.0.EmbeddedResource.resource",
            id="resource-without-contents",
        ),
        pytest.param({"isError": False}, "result.content", id="no-content"),
    ],
)
async def test_complete_with_a_result_that_is_not_a_call_tool_result_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str, result: dict[str, Any], field_prefix: str
) -> None:
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(
            clients.tasks.Complete(pb.CompleteRequest(task_id=task_id, result=to_struct(result)))
        )
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.fields) == 1
    assert error.fields[0].startswith(field_prefix), error.fields
    assert "CallToolResult" in error.violations[0][1]


async def test_complete_without_a_result_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(clients.tasks.Complete(pb.CompleteRequest(task_id=task_id)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["result"]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_a_payload_with_nan_or_an_infinity_is_invalid_argument_naming_the_field(
    clients: Clients, svc: RunningService, task_id: str, number: float
) -> None:
    """JSON has no NaN or infinity; a Struct's doubles do. Refused where they come in, so that
    nothing stores a number it cannot give back."""
    result = struct_pb2.Struct()
    result.update({"content": [], "structuredContent": {"values": [1.5, number]}})
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(clients.tasks.Complete(pb.CompleteRequest(task_id=task_id, result=result)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["result"]
    assert "NaN or an infinity" in error.violations[0][1]
    arguments = struct_pb2.Struct()
    arguments.update({"x": number})
    error = await rich_error(
        clients.bridge.CreateTask(bpb.CreateTaskRequest(owner=OWNER, tool_name="echo", arguments=arguments))
    )
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["arguments"]


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        pytest.param(
            {
                "type": "object",
                "properties": {"address": {"type": "object", "properties": {"street": {"type": "string"}}}},
            },
            "requested_schema.properties.address.type",
            id="nested-object",
        ),
        pytest.param(
            {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
            "requested_schema.properties.tags.items",
            id="free-array",
        ),
        pytest.param({"type": "array"}, "requested_schema.type", id="not-an-object"),
        pytest.param(
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
            "requested_schema.required",
            id="required-unknown",
        ),
    ],
)
async def test_elicit_with_a_schema_mcp_does_not_allow_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str, schema: dict[str, Any], field: str
) -> None:
    async with task_unchanged(clients, svc, task_id):
        call = clients.tasks.Elicit(
            pb.ElicitRequest(task_id=task_id, message="Where?", requested_schema=to_struct(schema))
        )
        error = rich(await stream_error(call))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [field]
    stored = await svc.manager.get_task(task_id)
    assert stored.requests == ()


async def test_elicit_as_task_with_a_nested_object_property_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    schema = {"type": "object", "properties": {"who": {"type": "object"}}}
    async with task_unchanged(clients, svc, task_id):
        call = clients.tasks.ElicitAsTask(
            pb.ElicitAsTaskRequest(task_id=task_id, message="?", requested_schema=to_struct(schema))
        )
        error = rich(await stream_error(call))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["requested_schema.properties.who.type"]


TOOL_USE_THEN_WRONG_RESULT = [
    {"role": "user", "content": {"type": "text", "text": "weather?"}},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "call-1", "name": "weather", "input": {}}],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "toolUseId": "call-2", "content": []}],
    },
]
RESULT_WITHOUT_TOOL_USE = [
    {"role": "user", "content": [{"type": "tool_result", "toolUseId": "call-1", "content": []}]},
]
RESULT_MIXED_WITH_TEXT = [
    {"role": "user", "content": {"type": "text", "text": "weather?"}},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "call-1", "name": "weather", "input": {}}],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "toolUseId": "call-1", "content": []},
            {"type": "text", "text": "and also"},
        ],
    },
]


@pytest.mark.parametrize(
    ("messages", "max_tokens", "field_prefix"),
    [
        pytest.param([USER_MESSAGE], 0, "max_tokens", id="max-tokens-zero"),
        pytest.param([USER_MESSAGE], -5, "max_tokens", id="max-tokens-negative"),
        pytest.param([], 100, "messages", id="no-messages"),
        pytest.param(TOOL_USE_THEN_WRONG_RESULT, 100, "messages", id="tool-result-id-mismatch"),
        pytest.param(RESULT_WITHOUT_TOOL_USE, 100, "messages", id="tool-result-without-tool-use"),
        pytest.param(RESULT_MIXED_WITH_TEXT, 100, "messages", id="tool-result-mixed-with-text"),
        pytest.param(
            [{"role": "robot", "content": {"type": "text", "text": "x"}}],
            100,
            "messages.0",
            id="unknown-role",
        ),
    ],
)
async def test_create_message_with_bad_params_is_invalid_argument(
    clients: Clients,
    svc: RunningService,
    task_id: str,
    messages: list[dict[str, Any]],
    max_tokens: int,
    field_prefix: str,
) -> None:
    async with task_unchanged(clients, svc, task_id):
        call = clients.tasks.CreateMessage(
            pb.CreateMessageRequest(
                task_id=task_id, messages=[to_struct(m) for m in messages], max_tokens=max_tokens
            )
        )
        error = rich(await stream_error(call))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.fields) == 1
    assert error.fields[0].startswith(field_prefix), error.fields
    assert (await svc.manager.get_task(task_id)).requests == ()


@pytest.mark.parametrize(
    ("extra", "field_prefix"),
    [
        pytest.param({"include_context": "everything"}, "include_context", id="include-context"),
        pytest.param({"tool_choice": to_struct({"mode": "sometimes"})}, "tool_choice.mode", id="tool-choice"),
        pytest.param(
            {"model_preferences": to_struct({"speedPriority": "fast"})}, "model_preferences", id="prefs"
        ),
        pytest.param({"tools": [to_struct({"name": "t"})]}, "tools.0.inputSchema", id="tool-without-schema"),
    ],
)
async def test_create_message_errors_name_the_request_field(
    clients: Clients, svc: RunningService, task_id: str, extra: dict[str, Any], field_prefix: str
) -> None:
    async with task_unchanged(clients, svc, task_id):
        call = clients.tasks.CreateMessage(
            pb.CreateMessageRequest(
                task_id=task_id, messages=[to_struct(USER_MESSAGE)], max_tokens=10, **extra
            )
        )
        error = rich(await stream_error(call))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.fields) == 1
    assert error.fields[0].startswith(field_prefix), error.fields


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        pytest.param(
            task_pb2.ToolDefinition(name="t", input_schema=to_struct({"type": "string"})),
            "tools[0].input_schema.type",
            id="input-not-object",
        ),
        pytest.param(
            task_pb2.ToolDefinition(
                name="t",
                input_schema=to_struct({"type": "object"}),
                output_schema=to_struct({"type": "array"}),
            ),
            "tools[0].output_schema.type",
            id="output-not-object",
        ),
        pytest.param(task_pb2.ToolDefinition(name=""), "tools[0].name", id="no-name"),
        pytest.param(
            task_pb2.ToolDefinition(name="t", annotations=to_struct({"readOnlyHint": "maybe"})),
            "tools[0].annotations.readOnlyHint",
            id="annotation-not-a-bool",
        ),
        pytest.param(
            task_pb2.ToolDefinition(name="t", annotations=to_struct({"destructiveHint": "true"})),
            "tools[0].annotations.destructiveHint",
            id="annotation-a-string-of-a-bool",
        ),
        pytest.param(
            task_pb2.ToolDefinition(name="t", annotations=to_struct({"title": 5})),
            "tools[0].annotations.title",
            id="annotation-title-not-a-string",
        ),
        pytest.param(
            task_pb2.ToolDefinition(
                name="t", input_schema=to_struct({"type": "object", "properties": 5, "required": "x"})
            ),
            "tools[0].input_schema.properties",
            id="input-not-a-json-schema",
        ),
        pytest.param(
            task_pb2.ToolDefinition(
                name="t", output_schema=to_struct({"type": "object", "properties": {"n": {"type": "int"}}})
            ),
            "tools[0].output_schema.properties.n.type",
            id="output-not-a-json-schema",
        ),
        pytest.param(
            task_pb2.ToolDefinition(name="t", input_schema=to_struct({"type": "object", "$schema": 5})),
            "tools[0].input_schema.$schema",
            id="schema-dialect-not-a-uri",
        ),
        pytest.param(
            task_pb2.ToolDefinition(name="t", task_support=cast("task_pb2.TaskSupport", 7)),
            "tools[0].task_support",
            id="task-support-unknown",
        ),
    ],
)
async def test_register_worker_with_a_bad_tool_is_invalid_argument_and_registers_nothing(
    clients: Clients, definition: task_pb2.ToolDefinition, field: str
) -> None:
    error = await rich_error(clients.tasks.RegisterWorker(pb.RegisterWorkerRequest(tools=[definition])))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [field]
    listed = await bounded(clients.bridge.ListTools(bpb.ListToolsRequest()))
    assert list(listed.tools) == []


async def test_register_worker_names_the_index_of_the_bad_tool(clients: Clients) -> None:
    bad = task_pb2.ToolDefinition(name="bad", input_schema=to_struct({"type": "number"}))
    request = pb.RegisterWorkerRequest(tools=[tool("good"), bad])
    error = await rich_error(clients.tasks.RegisterWorker(request))
    assert error.fields == ["tools[1].input_schema.type"]


async def test_oversized_complete_result_is_resource_exhausted_naming_the_field(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    big = {"content": [{"type": "text", "text": "x" * (MAX_PAYLOAD_BYTES + 100)}]}
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(
            clients.tasks.Complete(pb.CompleteRequest(task_id=task_id, result=to_struct(big)))
        )
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "PAYLOAD_TOO_LARGE"
    assert error.fields == ["result"]
    assert str(MAX_PAYLOAD_BYTES) in error.violations[0][1]
    # Just under the limit is fine.
    fits = {"content": [{"type": "text", "text": "x" * (MAX_PAYLOAD_BYTES - 100)}]}
    assert (await clients.complete(task_id, fits)).status == task_pb2.TASK_STATUS_COMPLETED


async def test_oversized_elicit_schema_and_sampling_message_are_resource_exhausted(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    huge_text = "x" * (MAX_PAYLOAD_BYTES + 100)
    schema = {"type": "object", "properties": {"a": {"type": "string", "description": huge_text}}}
    message = {"role": "user", "content": {"type": "text", "text": huge_text}}
    async with task_unchanged(clients, svc, task_id):
        elicit = clients.tasks.Elicit(
            pb.ElicitRequest(task_id=task_id, message="?", requested_schema=to_struct(schema))
        )
        elicit_error = rich(await stream_error(elicit))
        sample = clients.tasks.CreateMessage(
            pb.CreateMessageRequest(
                task_id=task_id, messages=[to_struct(USER_MESSAGE), to_struct(message)], max_tokens=10
            )
        )
        sample_error = rich(await stream_error(sample))
    assert elicit_error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert elicit_error.fields == ["requested_schema"]
    assert sample_error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sample_error.fields == ["messages[1]"]


@pytest.mark.parametrize(
    ("answer", "field_prefix"),
    [
        pytest.param({"action": "maybe"}, "result.action", id="unknown-action"),
        pytest.param({"content": {"name": "Ada"}}, "result.action", id="no-action"),
        pytest.param(SAMPLING_ANSWER, "result.action", id="a-sampling-result"),
        pytest.param(
            {"action": "accept", "content": {"name": {"first": "Ada"}}}, "result.content", id="nested-content"
        ),
    ],
)
async def test_answer_that_is_not_an_elicit_result_is_invalid_argument_and_the_request_stays_pending(
    clients: Clients, svc: RunningService, task_id: str, answer: dict[str, Any], field_prefix: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(
            clients.bridge.AnswerRequest(
                bpb.AnswerRequestRequest(
                    owner=OWNER, task_id=task_id, request_id=pending.request_id, result=to_struct(answer)
                )
            )
        )
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.fields) == 1
    assert error.fields[0].startswith(field_prefix), error.fields
    # Still answerable, and the worker's stream gets the good answer.
    await clients.answer(task_id, pending.request_id, {"action": "decline"})
    rest = await elicit.rest()
    assert [to_dict(e.result) for e in rest] == [{"action": "decline"}]


async def test_an_overlong_view_is_invalid_argument_and_the_request_stays_pending(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    answer = bpb.AnswerRequestRequest(
        owner=OWNER,
        task_id=task_id,
        request_id=pending.request_id,
        result=to_struct({"action": "decline"}),
        view_id="v" * 129,
    )
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(clients.bridge.AnswerRequest(answer))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["view_id"]
    assert "at most 128 characters, got 129" in error.message
    events = clients.bridge.StreamTaskEvents(
        bpb.StreamTaskEventsRequest(owner=OWNER, task_id=task_id, view_id="v" * 129)
    )
    stream = rich(await stream_error(events))
    assert (stream.code, stream.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["view_id"])
    answer.view_id = "v" * 128
    await clients.bridge.AnswerRequest(answer)
    rest = await elicit.rest()
    assert [to_dict(e.result) for e in rest] == [{"action": "decline"}]


async def test_answer_without_result_or_error_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(
            clients.bridge.AnswerRequest(
                bpb.AnswerRequestRequest(owner=OWNER, task_id=task_id, request_id=pending.request_id)
            )
        )
        empty_error = await rich_error(
            clients.bridge.AnswerRequest(
                bpb.AnswerRequestRequest(
                    owner=OWNER,
                    task_id=task_id,
                    request_id=pending.request_id,
                    error=task_pb2.McpError(code=-1),
                )
            )
        )
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert empty_error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert empty_error.fields == ["error.message"]
    elicit.cancel()


# ------------------------------------------------------------ enums, numbers, capabilities


@pytest.mark.parametrize("status", [42, -1])
async def test_update_task_with_a_status_the_enum_lacks_is_invalid_argument_and_changes_nothing(
    clients: Clients, svc: RunningService, task_id: str, status: int
) -> None:
    """proto3 keeps any number in an enum field: one TaskStatus lacks is refused, not taken for
    "no change" while the message would still be applied."""
    request = pb.UpdateTaskRequest(
        task_id=task_id, status=cast("task_pb2.TaskStatus", status), status_message="changed"
    )
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(clients.tasks.UpdateTask(request))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["status"]
    assert f"{status} is not one of TASK_STATUS_WORKING" in error.message


@pytest.mark.parametrize("method", ["ElicitAsTask", "CreateMessageAsTask"])
async def test_a_negative_ttl_of_a_client_side_task_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str, method: str
) -> None:
    """The same check as CreateTask's ttl_ms; zero still means the default."""
    request: Any = (
        pb.ElicitAsTaskRequest(
            task_id=task_id, message="?", requested_schema=to_struct({"type": "object"}), ttl_ms=-5
        )
        if method == "ElicitAsTask"
        else pb.CreateMessageAsTaskRequest(
            task_id=task_id, messages=[to_struct(USER_MESSAGE)], max_tokens=10, ttl_ms=-5
        )
    )
    async with task_unchanged(clients, svc, task_id):
        error = rich(await stream_error(getattr(clients.tasks, method)(request)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["ttl_ms"]
    assert "must be positive, got -5" in error.message
    created = await rich_error(
        clients.bridge.CreateTask(bpb.CreateTaskRequest(owner=OWNER, tool_name="echo", ttl_ms=-5))
    )
    assert (created.code, created.fields, created.message) == (error.code, error.fields, error.message)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), float("-inf")])
async def test_create_message_with_a_temperature_json_cannot_carry_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str, temperature: float
) -> None:
    request = pb.CreateMessageRequest(
        task_id=task_id, messages=[to_struct(USER_MESSAGE)], max_tokens=10, temperature=temperature
    )
    async with task_unchanged(clients, svc, task_id):
        error = rich(await stream_error(clients.tasks.CreateMessage(request)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["temperature"]


@pytest.mark.parametrize(
    ("capabilities", "field"),
    [
        pytest.param({"elicitation": "yes"}, "client_capabilities.elicitation", id="elicitation-a-string"),
        pytest.param({"sampling": 5}, "client_capabilities.sampling", id="sampling-a-number"),
        pytest.param({"roots": {"listChanged": [1]}}, "client_capabilities.roots.listChanged", id="roots"),
    ],
)
async def test_create_task_with_capabilities_that_are_not_mcp_client_capabilities_is_invalid_argument(
    clients: Clients, worker_id: str, capabilities: dict[str, Any], field: str
) -> None:
    request = bpb.CreateTaskRequest(
        owner=OWNER, tool_name="echo", client_capabilities=to_struct(capabilities)
    )
    error = await rich_error(clients.bridge.CreateTask(request))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [field]
    assert "ClientCapabilities" in error.message
    listed = await bounded(clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER)))
    assert list(listed.tasks) == []


async def test_capabilities_stored_before_they_were_checked_fail_a_question_with_internal(
    clients: Clients, svc: RunningService, worker_id: str
) -> None:
    """A stored payload that does not fit MCP's model is the service's problem: INTERNAL, with
    what did not fit, never UNKNOWN "Unexpected ValidationError"."""
    created = await bounded(
        clients.bridge.CreateTask(
            bpb.CreateTaskRequest(
                owner=OWNER, tool_name="echo", client_capabilities=to_struct({"elicitation": {}})
            )
        )
    )
    task_id = created.task.task_id
    await svc.manager.store.update_task(
        task_id, lambda task: task.replace(client_capabilities={"elicitation": "yes"})
    )
    async with task_unchanged(clients, svc, task_id):
        error = rich(await clients.elicit(task_id).error())
    assert error.code is grpc.StatusCode.INTERNAL
    assert error.reason == "STORED_DATA_INVALID"
    assert "client_capabilities.elicitation" in error.message


async def test_a_validation_error_no_check_caught_is_internal_not_unknown() -> None:
    """The net under every handler: a pydantic error that no check of mcp_payloads turned into
    a domain error still ends the call with INTERNAL and what did not fit."""

    async def handler(request: pb.GetTaskRequest, context: Any) -> pb.GetTaskResponse:
        async with grpc_errors(context):
            types.ClientCapabilities.model_validate({"elicitation": "yes"})
        return pb.GetTaskResponse()

    status = await call_locally(handler, pb.GetTaskRequest(task_id="t"))
    assert isinstance(status, status_pb2.Status)
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert "ClientCapabilities" in status.message
    assert "elicitation" in status.message
