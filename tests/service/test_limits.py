"""The service's limits on what comes in (how deep a payload nests, how long a text or a name is,
how many tools a worker declares) and on what an error sends back, whatever the input."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError, Message
from grpc_status import rpc_status
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain import errors
from taskservice.domain.service import (
    MAX_NAME_LENGTH,
    MAX_OWNER_LENGTH,
    MAX_STATUS_MESSAGE_BYTES,
    MAX_TOOLS_PER_WORKER,
)
from taskservice.grpc_api.convert import MAX_PAYLOAD_DEPTH
from taskservice.grpc_api.errors import status_for
from taskservice.testing import RunningService

from .conftest import MAX_PAYLOAD_BYTES
from .support import (
    ELICIT_SCHEMA,
    OWNER,
    SAMPLING_ANSWER,
    TOOL,
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
from .test_errors import stream_error, task_unchanged

DECODER_LEVELS = 100
"""How many levels of nested messages protobuf decoders take (upb's, C++'s and Java's default)."""
ROOM = 20
"""The levels every message the service sends keeps to spare, its payloads as deep as accepted."""


def nested(levels: int, leaf: Any = "end") -> Any:
    """`leaf` inside `levels` objects: {"a": {"a": ... leaf}}."""
    data = leaf
    for _ in range(levels):
        data = {"a": data}
    return data


def depth(data: Any) -> int:
    """How many objects and arrays deep `data` nests (a scalar: 0)."""
    if isinstance(data, dict):
        return 1 + max((depth(item) for item in data.values()), default=0)
    if isinstance(data, list):
        return 1 + max((depth(item) for item in data), default=0)
    return 0


def nesting(message: Message) -> int:
    """How many levels of messages a decoder goes down into `message` (a map's entry is one)."""
    deepest = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            below = [2 + nesting(item) if isinstance(item, Message) else 1 for item in value.values()]
        elif field.is_repeated:
            below = [1 + nesting(item) for item in value]
        else:
            below = [1 + nesting(value)]
        deepest = max([deepest, *below])
    return deepest


M = TypeVar("M", bound=Message)


def roomy(message: M) -> M:
    """`message`, checked to be well within what a decoder takes."""
    assert nesting(message) <= DECODER_LEVELS - ROOM, (type(message).__name__, nesting(message))
    return message


# ---------------------------------------------------------------- how deep a payload nests


def test_protobuf_decodes_100_levels_of_messages_and_no_more() -> None:
    """What MAX_PAYLOAD_DEPTH's margin counts on: a Struct nests three messages a level."""
    fits, too_deep = struct_pb2.Struct(), struct_pb2.Struct()
    fits.update(nested(33, {}))  # the innermost empty Struct 99 levels down
    too_deep.update(nested(34, {}))
    assert nesting(fits) == 99
    struct_pb2.Struct.FromString(fits.SerializeToString())
    assert nesting(too_deep) == 102
    with pytest.raises(DecodeError):
        struct_pb2.Struct.FromString(too_deep.SerializeToString())
    wrapped = pb.CompleteRequest(result=fits)
    assert nesting(wrapped) == DECODER_LEVELS
    pb.CompleteRequest.FromString(wrapped.SerializeToString())
    with pytest.raises(DecodeError):
        pb.ReportOutcomesRequest.FromString(pb.ReportOutcomesRequest(complete=wrapped).SerializeToString())


async def test_payloads_as_deep_as_accepted_go_out_in_every_message_with_room_to_spare(
    clients: Clients, svc: RunningService
) -> None:
    """Each payload at MAX_PAYLOAD_DEPTH, read back (by a default client) through every message that
    carries one, the deepest being a sampling message or tool inside a question's params."""
    limit = MAX_PAYLOAD_DEPTH
    input_schema = {"type": "object", "properties": nested(limit - 1)}
    arguments, meta = nested(limit), nested(limit)
    schema = {"type": "object", "properties": {"p": {"type": "string", "x": nested(limit - 3)}}}
    message = {"role": "user", "content": {"type": "text", "text": "hi", "_meta": nested(limit - 2)}}
    sampling_tool = {"name": "lookup", "inputSchema": {"type": "object", "properties": nested(limit - 2)}}
    elicit_answer = {"action": "accept", "content": {"p": "v"}, "_meta": nested(limit - 1)}
    sampling_answer = {**SAMPLING_ANSWER, "_meta": nested(limit - 1)}
    result = {"content": [], "structuredContent": nested(limit - 1), "isError": False}
    for payload in (input_schema, arguments, schema, message, sampling_tool, elicit_answer, result):
        assert depth(payload) == limit

    watch = Stream(clients.bridge.WatchTools(bpb.WatchToolsRequest()))
    await watch.next()  # no tools yet
    worker_id = await clients.register(
        task_pb2.ToolDefinition(name=TOOL, input_schema=to_struct(input_schema))
    )
    listed = roomy(await bounded(clients.bridge.ListTools(bpb.ListToolsRequest())))
    assert isinstance(listed, bpb.ListToolsResponse)
    assert to_dict(listed.tools[0].input_schema) == input_schema
    roomy(await watch.next())
    watch.cancel()

    create = bpb.CreateTaskRequest(
        owner=OWNER, tool_name=TOOL, arguments=to_struct(arguments), meta=to_struct(meta)
    )
    task_id = (await bounded(clients.bridge.CreateTask(create))).task.task_id
    work = Stream(clients.tasks.StreamAssignments(pb.StreamAssignmentsRequest(worker_id=worker_id)))
    assignment = roomy(await work.next()).assignment
    work.cancel()
    assert (to_dict(assignment.arguments), to_dict(assignment.meta)) == (arguments, meta)

    events = clients.events(task_id)
    elicit = Stream(
        clients.tasks.Elicit(
            pb.ElicitRequest(task_id=task_id, message="?", requested_schema=to_struct(schema))
        )
    )
    pending = roomy(await elicit.next()).pending
    assert to_dict(pending.params)["requestedSchema"] == schema
    assert roomy(await first_request(events)).request.request_id == pending.request_id
    await clients.answer(task_id, pending.request_id, elicit_answer)
    answered = roomy(await elicit.next())
    assert to_dict(answered.result)["_meta"] == elicit_answer["_meta"]

    refused = Stream(
        clients.tasks.Elicit(
            pb.ElicitRequest(task_id=task_id, message="?", requested_schema=to_struct(ELICIT_SCHEMA))
        )
    )
    pending = (await refused.next()).pending
    data = struct_pb2.Value()
    data.struct_value.update(nested(limit))
    await clients.answer(
        task_id, pending.request_id, error=task_pb2.McpError(code=-1, message="no", data=data)
    )
    assert (await first_request(events)).request.request_id == pending.request_id
    error = roomy(await refused.next()).error
    assert to_dict(error.data.struct_value) == nested(limit)

    sample = Stream(
        clients.tasks.CreateMessage(
            pb.CreateMessageRequest(
                task_id=task_id,
                messages=[to_struct(message)],
                max_tokens=10,
                metadata=to_struct(nested(limit)),
                tools=[to_struct(sampling_tool)],
            )
        )
    )
    pending = roomy(await sample.next()).pending
    params = to_dict(pending.params)
    assert (params["messages"], params["tools"][0]["inputSchema"]) == (
        [message],
        sampling_tool["inputSchema"],
    )
    assert roomy(await first_request(events)).request.request_id == pending.request_id
    await clients.answer(task_id, pending.request_id, sampling_answer)
    assert to_dict(roomy(await sample.next()).result)["_meta"] == sampling_answer["_meta"]

    await clients.complete(task_id, result)
    finished = [event for event in await events.rest() if event.WhichOneof("event") == "outcome"]
    assert to_dict(roomy(finished[0]).outcome.result) == result
    got = roomy(
        await bounded(clients.bridge.GetTaskResult(bpb.GetTaskResultRequest(owner=OWNER, task_id=task_id)))
    )
    assert isinstance(got, bpb.GetTaskResultResponse)
    assert to_dict(got.result) == result


async def first_request(events: Stream[bpb.StreamTaskEventsResponse]) -> bpb.StreamTaskEventsResponse:
    while True:
        event = await events.next()
        if event.WhichOneof("event") == "request":
            return event


@contextlib.asynccontextmanager
async def no_task_created(clients: Clients) -> AsyncIterator[None]:
    before = await bounded(clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER)))
    yield
    assert await bounded(clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER))) == before


def assert_too_deep(error: Any, field: str) -> None:
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [field]
    assert f"nests deeper than {MAX_PAYLOAD_DEPTH} levels" in error.message


@pytest.mark.parametrize("field", ["arguments", "meta"])
async def test_a_task_created_with_a_payload_too_deep_is_invalid_argument_and_not_created(
    clients: Clients, worker_id: str, field: str
) -> None:
    create = bpb.CreateTaskRequest(owner=OWNER, tool_name=TOOL)
    getattr(create, field).CopyFrom(to_struct(nested(MAX_PAYLOAD_DEPTH + 1)))
    async with no_task_created(clients):
        error = await rich_error(clients.bridge.CreateTask(create))
    assert_too_deep(error, field)


async def test_a_worker_payload_too_deep_is_invalid_argument_and_changes_nothing(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    deep = nested(MAX_PAYLOAD_DEPTH)  # one level more inside any payload
    async with task_unchanged(clients, svc, task_id):
        result = to_struct({"content": [], "structuredContent": deep})
        assert_too_deep(
            await rich_error(clients.tasks.Complete(pb.CompleteRequest(task_id=task_id, result=result))),
            "result",
        )
        schema = to_struct({**ELICIT_SCHEMA, "x": deep})
        elicit = clients.tasks.Elicit(pb.ElicitRequest(task_id=task_id, message="?", requested_schema=schema))
        assert_too_deep(rich(await stream_error(elicit)), "requested_schema")
        cases: dict[str, dict[str, Any]] = {
            "messages[1]": {
                "messages": [to_struct(USER_MESSAGE), to_struct({**USER_MESSAGE, "_meta": deep})]
            },
            "metadata": {"messages": [to_struct(USER_MESSAGE)], "metadata": to_struct({"x": deep})},
            "tools[0]": {
                "messages": [to_struct(USER_MESSAGE)],
                "tools": [to_struct({"name": "t", "inputSchema": {"type": "object", "x": deep}})],
            },
        }
        for field, fields in cases.items():
            sample = clients.tasks.CreateMessage(
                pb.CreateMessageRequest(task_id=task_id, max_tokens=5, **fields)
            )
            assert_too_deep(rich(await stream_error(sample)), field)
    definition = task_pb2.ToolDefinition(name="deep", input_schema=to_struct({"type": "object", "x": deep}))
    error = await rich_error(clients.tasks.RegisterWorker(pb.RegisterWorkerRequest(tools=[definition])))
    assert_too_deep(error, error.fields[0])
    assert error.fields[0].endswith("input_schema")
    assert "deep" not in [
        t.name for t in (await bounded(clients.bridge.ListTools(bpb.ListToolsRequest()))).tools
    ]


async def test_an_answer_too_deep_is_invalid_argument_and_the_request_stays_pending(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    deep = nested(MAX_PAYLOAD_DEPTH)
    answer = bpb.AnswerRequestRequest(owner=OWNER, task_id=task_id, request_id=pending.request_id)
    async with task_unchanged(clients, svc, task_id):
        answer.result.CopyFrom(to_struct({"action": "decline", "_meta": deep}))
        assert_too_deep(await rich_error(clients.bridge.AnswerRequest(answer)), "result")
        answer.error.CopyFrom(task_pb2.McpError(code=-1, message="no"))
        answer.error.data.list_value.values.add().struct_value.update(deep)
        assert_too_deep(await rich_error(clients.bridge.AnswerRequest(answer)), "error.data")
    await clients.answer(task_id, pending.request_id, {"action": "decline"})
    assert [to_dict(e.result) for e in await elicit.rest()] == [{"action": "decline"}]


async def test_a_request_protobuf_cannot_decode_is_invalid_argument(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    """Past the decoder's own limit (about 33 levels of objects) grpc.aio would answer UNKNOWN."""
    deep = struct_pb2.Struct()
    deep.update(nested(40))
    create = bpb.CreateTaskRequest(owner=OWNER, tool_name=TOOL)
    create.arguments.CopyFrom(deep)  # the constructor would decode what it copies, and fail
    async with no_task_created(clients):
        error = await rich_error(clients.bridge.CreateTask(create))
    assert (error.code, error.fields, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["request"],
        "INVALID_ARGUMENT",
    )
    assert "mcptasks.v1.CreateTaskRequest" in error.message
    assert f"nest at most {MAX_PAYLOAD_DEPTH} levels" in error.message
    elicit = pb.ElicitRequest(task_id=task_id, message="?")
    elicit.requested_schema.CopyFrom(deep)
    async with task_unchanged(clients, svc, task_id):
        stream = rich(await stream_error(clients.tasks.Elicit(elicit)))
    assert (stream.code, stream.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["request"])
    # The same calls, decodable, still work on the same channel.
    assert (await clients.create(arguments=nested(3))).status == task_pb2.TASK_STATUS_WORKING


# ------------------------------------------------------------------ texts, names, tools


async def test_a_status_message_over_its_limit_is_resource_exhausted_and_changes_nothing(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    at_limit = "é" * (MAX_STATUS_MESSAGE_BYTES // 2)  # two bytes each in UTF-8
    over = at_limit + "x"
    calls: dict[str, Callable[[str], Awaitable[Any]]] = {
        "status_message": lambda text: clients.tasks.UpdateStatus(
            pb.UpdateStatusRequest(task_id=task_id, status_message=text)
        ),
        "error": lambda text: clients.tasks.Fail(pb.FailRequest(task_id=task_id, error=text)),
        "reason": lambda text: clients.bridge.CancelTask(
            bpb.CancelTaskRequest(owner=OWNER, task_id=task_id, reason=text)
        ),
    }
    async with task_unchanged(clients, svc, task_id):
        for field, call in calls.items():
            error = await rich_error(call(over))
            assert (error.code, error.reason, error.fields) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "PAYLOAD_TOO_LARGE",
                [field],
            )
            assert (
                f"{MAX_STATUS_MESSAGE_BYTES + 1} bytes, over the limit of {MAX_STATUS_MESSAGE_BYTES}"
                in error.message
            )
        update = pb.UpdateTaskRequest(task_id=task_id, status_message=over)
        assert (await rich_error(clients.tasks.UpdateTask(update))).fields == ["status_message"]
    assert (await clients.get(task_id)).status_message != at_limit
    updated = await bounded(
        clients.tasks.UpdateStatus(pb.UpdateStatusRequest(task_id=task_id, status_message=at_limit))
    )
    assert updated.task.status_message == at_limit
    assert (await clients.fail(task_id, at_limit)).status_message == at_limit


async def test_a_question_over_the_payload_limit_as_a_whole_is_resource_exhausted(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    """A question's text goes to the client in its params, one payload: held to --max-payload-bytes."""
    long = "q" * MAX_PAYLOAD_BYTES
    half = "q" * (MAX_PAYLOAD_BYTES // 2)
    schema = to_struct({**ELICIT_SCHEMA, "description": half})
    questions: list[grpc.aio.UnaryStreamCall[Any, Any]] = [
        clients.tasks.Elicit(
            pb.ElicitRequest(task_id=task_id, message=long, requested_schema=to_struct(ELICIT_SCHEMA))
        ),
        clients.tasks.Elicit(pb.ElicitRequest(task_id=task_id, message=half, requested_schema=schema)),
        clients.tasks.ElicitUrl(
            pb.ElicitUrlRequest(
                task_id=task_id, message="?", url=f"https://example.com/{long}", elicitation_id="e"
            )
        ),
        clients.tasks.CreateMessage(
            pb.CreateMessageRequest(
                task_id=task_id, messages=[to_struct(USER_MESSAGE)], max_tokens=5, system_prompt=long
            )
        ),
    ]
    async with task_unchanged(clients, svc, task_id):
        for question in questions:
            error = rich(await stream_error(question))
            assert (error.code, error.reason, error.fields) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "PAYLOAD_TOO_LARGE",
                ["params"],
            )
            assert f"over the limit of {MAX_PAYLOAD_BYTES} bytes" in error.message


async def test_an_answer_error_message_over_the_payload_limit_is_resource_exhausted(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    huge = task_pb2.McpError(code=-1, message="n" * (MAX_PAYLOAD_BYTES + 1))
    async with task_unchanged(clients, svc, task_id):
        error = await rich_error(clients.answer(task_id, pending.request_id, error=huge))
    assert (error.code, error.fields) == (grpc.StatusCode.RESOURCE_EXHAUSTED, ["error.message"])
    elicit.cancel()


async def test_names_over_their_limits_are_invalid_argument(clients: Clients, worker_id: str) -> None:
    cases: list[tuple[str, int, Callable[[str], Awaitable[Any]]]] = [
        (
            "owner",
            MAX_OWNER_LENGTH,
            lambda name: clients.bridge.CreateTask(bpb.CreateTaskRequest(owner=name, tool_name=TOOL)),
        ),
        (
            "owner",
            MAX_OWNER_LENGTH,
            lambda name: clients.tasks.CreateStoredTask(pb.CreateStoredTaskRequest(owner=name)),
        ),
        (
            "name",
            MAX_NAME_LENGTH,
            lambda name: clients.tasks.RegisterWorker(pb.RegisterWorkerRequest(name=name, tools=[tool()])),
        ),
        (
            "tools[1].name",
            MAX_NAME_LENGTH,
            lambda name: clients.tasks.RegisterWorker(pb.RegisterWorkerRequest(tools=[tool(), tool(name)])),
        ),
    ]
    for field, limit, call in cases:
        error = await rich_error(call("n" * (limit + 1)))
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
        assert f"at most {limit} characters, got {limit + 1}" in error.message
        await bounded(call("n" * limit))
    assert "n" * (MAX_NAME_LENGTH + 1) not in [
        t.name for t in (await bounded(clients.bridge.ListTools(bpb.ListToolsRequest()))).tools
    ]


async def test_a_worker_with_too_many_tools_or_too_many_bytes_of_them_is_refused(clients: Clients) -> None:
    many = [task_pb2.ToolDefinition(name=f"t{index}") for index in range(MAX_TOOLS_PER_WORKER + 1)]
    error = await rich_error(clients.tasks.RegisterWorker(pb.RegisterWorkerRequest(tools=many)))
    assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["tools"])
    assert f"at most {MAX_TOOLS_PER_WORKER} per worker, got {MAX_TOOLS_PER_WORKER + 1}" in error.message
    big = [tool(f"tool-{index}", title="t" * (MAX_PAYLOAD_BYTES // 4)) for index in range(4)]
    error = await rich_error(clients.tasks.RegisterWorker(pb.RegisterWorkerRequest(tools=big)))
    assert (error.code, error.reason, error.fields) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PAYLOAD_TOO_LARGE",
        ["tools"],
    )
    assert list((await bounded(clients.bridge.ListTools(bpb.ListToolsRequest()))).tools) == []


# ------------------------------------------------------------ what an error sends back

TRAILERS_BUDGET = 4096
"""What a status's trailers may take at most, well under gRPC's 8 KiB (the first clients refuse)."""


def trailer_bytes(message: str, details: bytes) -> int:
    """The bytes of grpc-message (percent-encoded as gRPC sends it) and grpc-status-details-bin (base64)."""
    encoded = sum(1 if 0x20 <= byte <= 0x7E and byte != 0x25 else 3 for byte in message.encode())
    return encoded + len(base64.b64encode(details))


LONG_INPUTS = [
    pytest.param("a" * 4000, id="4000-ascii"),
    pytest.param("é" * 1000, id="1000-e-acute"),
    pytest.param("\U0001f600" * 900, id="900-emoji"),
]


@pytest.mark.parametrize("text", LONG_INPUTS)
async def test_errors_about_long_input_keep_their_code_and_small_trailers(
    clients: Clients, worker_id: str, text: str
) -> None:
    calls: list[tuple[grpc.StatusCode, Awaitable[Any]]] = [
        (grpc.StatusCode.NOT_FOUND, clients.tasks.GetTask(pb.GetTaskRequest(task_id=text))),
        (
            grpc.StatusCode.NOT_FOUND,
            clients.bridge.LookupTask(bpb.LookupTaskRequest(owner=OWNER, task_id=text)),
        ),
        (
            grpc.StatusCode.NOT_FOUND,
            clients.tasks.Complete(pb.CompleteRequest(task_id=text, result=to_struct({"content": []}))),
        ),
        (grpc.StatusCode.NOT_FOUND, clients.tasks.Heartbeat(pb.HeartbeatRequest(worker_id=text))),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER, page_token=text)),
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            clients.bridge.CreateTask(bpb.CreateTaskRequest(owner=OWNER, tool_name=text)),
        ),
    ]
    task_id = (await clients.create()).task_id
    schema = {"type": "object", "properties": {text: {"type": "object"}}}  # a field path with the key in it
    elicit = clients.tasks.Elicit(
        pb.ElicitRequest(task_id=task_id, message="?", requested_schema=to_struct(schema))
    )
    for code, call in [*calls, (grpc.StatusCode.INVALID_ARGUMENT, Stream(elicit).rest())]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bounded(call)
        error = caught.value
        assert error.code() is code, error.details()
        status = rpc_status.from_call(cast("grpc.Call", error))  # grpc-status-details-bin, decoded
        assert status is not None
        assert trailer_bytes(error.details() or "", status.SerializeToString()) <= TRAILERS_BUDGET


@pytest.mark.parametrize("text", LONG_INPUTS)
def test_every_domain_error_fits_the_trailers_budget(text: str) -> None:
    made = [
        errors.TaskNotFound(text),
        errors.TaskExists(text),
        errors.RequestNotFound(text, text),
        errors.WorkerNotFound(text),
        errors.ToolNotServed(text),
        errors.InvalidTransition(text, "working", text, text),
        errors.TaskCancelled(text),
        errors.AlreadyAnswered(text),
        errors.RequestWithdrawn(text, text),
        errors.LeaseNotHeld(text, text),
        errors.InvalidArgument(text, text),
        errors.PayloadTooLarge(text, 10**9, 10**6),
        errors.StoreUnavailable(text),
    ]
    for error in made:
        status = status_for(error)
        assert trailer_bytes(status.message, status.SerializeToString()) <= TRAILERS_BUDGET, type(
            error
        ).__name__
        assert status.message  # still says what went wrong
    assert status_for(errors.TaskNotFound("abc")).message == "task 'abc' not found"
    # A long id is quoted by its start, so that the message still ends saying what went wrong.
    long = status_for(errors.RequestNotFound("t" * 4000, "r" * 4000)).message
    assert (
        long
        == f"request {'r' * 128!r}... (4000 characters) of task {'t' * 128!r}... (4000 characters) not found"
    )
