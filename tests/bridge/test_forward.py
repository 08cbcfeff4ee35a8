"""McpBridge._forward over a real ServerSession of mcp 1.30: one queued question to the client and
its answer to the service, whatever the client does.

The test plays the client on the session's streams. The SDK answers every request still waiting
with its own CONNECTION_CLOSED error when the session's streams close, with the code (-32000) a
client may send itself: the bridge tells them apart, leaving the question pending for the
former only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import anyio
import grpc
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from google.protobuf import struct_pb2
from mcp import types
from mcp.server.session import ServerSession
from mcp.shared.experimental.tasks import polling
from mcp.shared.message import SessionMessage
from taskservice_client._convert import struct_to_dict
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice.bridge.server import CLIENT_POLL_MIN_MS, McpBridge, _Asked
from taskservice.grpc_api.local import rpc_error

pb = bridge_service_pb2
TIMEOUT = 5.0


class _Service:
    """AnswerRequest only, refusing the first `refuse` answers as the service refuses one."""

    def __init__(self, refuse: int = 0) -> None:
        self.answers: list[pb.AnswerRequestRequest] = []
        self.refuse = refuse

    async def AnswerRequest(self, request: pb.AnswerRequestRequest) -> pb.AnswerRequestResponse:
        answer = pb.AnswerRequestRequest()
        answer.CopyFrom(request)
        self.answers.append(answer)
        if len(self.answers) <= self.refuse:
            raise rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "error.data is 2000000 bytes, over the limit")
        return pb.AnswerRequestResponse()


class _Client:
    """The client's ends of a ServerSession's streams."""

    def __init__(
        self,
        outgoing: MemoryObjectSendStream[SessionMessage | Exception],
        incoming: MemoryObjectReceiveStream[SessionMessage],
    ) -> None:
        self.outgoing = outgoing
        self.incoming = incoming

    async def request(self) -> types.JSONRPCRequest:
        """The next request the server sends."""
        with anyio.fail_after(TIMEOUT):
            message = await self.incoming.receive()
        root = message.message.root
        assert isinstance(root, types.JSONRPCRequest), root
        return root

    async def answer(self, request_id: types.RequestId, result: dict[str, Any]) -> None:
        response = types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result)
        await self.outgoing.send(SessionMessage(types.JSONRPCMessage(response)))

    async def error(self, request_id: types.RequestId, code: int, message: str) -> None:
        error = types.ErrorData(code=code, message=message)
        response = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
        await self.outgoing.send(SessionMessage(types.JSONRPCMessage(response)))


def _question(*, as_task: bool = False) -> task_pb2.PendingRequest:
    params = struct_pb2.Struct()
    params.update({"message": "Proceed?", "requestedSchema": {"type": "object", "properties": {}}})
    if as_task:
        params.update({"task": {"ttl": 60_000}})
    return task_pb2.PendingRequest(task_id="t1", request_id="r1", method="elicitation/create", params=params)


@contextlib.asynccontextmanager
async def _forwarding(
    service: _Service, question: task_pb2.PendingRequest | None = None
) -> AsyncIterator[tuple[McpBridge, _Client, anyio.abc.TaskGroup]]:
    """A bridge forwarding `question` (the first request, started at once) on a real session."""
    bridge = McpBridge(cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", service))
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    session = ServerSession(server_reads, server_writes, bridge.initialization_options())
    try:
        async with session, anyio.create_task_group() as group:
            group.start_soon(
                bridge._forward, session, "owner", question or _question(), 7, _Asked(), "view"
            )
            yield bridge, _Client(to_server, from_server), group
    finally:
        await bridge.close()


def _task(status: types.TaskStatus, poll_interval: int | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    task = types.Task(
        taskId="client-1",
        status=status,
        createdAt=now,
        lastUpdatedAt=now,
        ttl=60_000,
        pollInterval=poll_interval,
    )
    return task.model_dump(by_alias=True, mode="json", exclude_none=True)


async def test_a_session_that_closes_leaves_the_question_pending() -> None:
    service = _Service()
    async with _forwarding(service) as (_, client, _):
        assert (await client.request()).method == "elicitation/create"
        await client.outgoing.aclose()  # the client left: the session's streams close
    assert service.answers == []  # nobody answered: the next tasks/result asks again


async def test_a_client_error_with_the_connection_closed_code_is_its_answer() -> None:
    service = _Service()
    async with _forwarding(service) as (_, client, _):
        question = await client.request()
        await client.error(question.id, types.CONNECTION_CLOSED, "Connection closed")
    [answer] = service.answers
    assert answer.error == task_pb2.McpError(code=types.CONNECTION_CLOSED, message="Connection closed")


@pytest.mark.parametrize("answered", ["result", "error"])
async def test_an_answer_the_service_refuses_becomes_an_error_it_takes(answered: str) -> None:
    service = _Service(refuse=1)
    async with _forwarding(service) as (_, client, _):
        question = await client.request()
        if answered == "result":
            await client.answer(question.id, {"action": "accept", "content": {}})
        else:
            await client.error(question.id, -32042, "the user closed the dialog")
    refused, told = service.answers
    assert refused.WhichOneof("answer") == answered
    assert told.error == task_pb2.McpError(
        code=types.INVALID_PARAMS,
        message="The client's answer to elicitation/create is not valid:"
        " error.data is 2000000 bytes, over the limit",
    )


async def test_an_unexpected_failure_is_an_error_for_the_worker_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any) -> types.Result:
        raise RuntimeError("a bug")

    service = _Service()
    monkeypatch.setattr(McpBridge, "_ask", broken)
    async with _forwarding(service):
        pass  # the forward ends by itself, without raising into the task group
    [answer] = service.answers
    assert answer.error.code == types.INTERNAL_ERROR
    assert answer.error.message == (
        "The bridge could not pass on the client's answer to elicitation/create: RuntimeError('a bug')"
    )


async def test_a_poll_interval_of_zero_is_raised_to_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client runs the question as a task of its own and says to poll it without a pause."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(polling, "anyio", SimpleNamespace(sleep=sleep))  # poll_until_terminal's waits
    service = _Service()
    async with _forwarding(service, _question(as_task=True)) as (_, client, _):
        question = await client.request()
        await client.answer(question.id, {"task": _task("working", 0)})
        for status in ("working", "working", "completed"):
            poll = await client.request()
            assert poll.method == "tasks/get"
            await client.answer(poll.id, _task(status, 0))
        fetch = await client.request()
        assert fetch.method == "tasks/result"
        await client.answer(fetch.id, {"action": "accept", "content": {}})
    assert waits == [CLIENT_POLL_MIN_MS / 1000] * 2  # after each poll that found it working
    [answer] = service.answers
    assert struct_to_dict(answer.result) == {"action": "accept", "content": {}}
