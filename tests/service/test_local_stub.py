"""The in-process BridgeService stub (`TaskServiceServer.local_bridge`, used by `taskservice serve`'s
bridge) answers like the same call over a channel: the same responses, and on failure the same
status code, message and `google.rpc.Status` details, raised as `grpc.aio.AioRpcError`."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2_grpc, task_pb2

from taskservice.grpc_api.local import LocalStub
from taskservice.testing import RunningService

from .support import OWNER, Clients, bounded, bpb, rich, rpc_error, to_dict

if TYPE_CHECKING:
    from taskservice_client._proto.mcptasks.v1.bridge_service_pb2_grpc import BridgeServiceAsyncStub as Stub


@pytest.fixture
def local(svc: RunningService) -> Stub:
    return svc.server.local_bridge()


async def _same_error(
    clients: Clients, local: Stub, call: Callable[[Stub], Awaitable[Any]]
) -> grpc.StatusCode:
    over_channel = rich(await rpc_error(call(clients.bridge)))
    in_process = rich(await rpc_error(call(local)))
    assert in_process == over_channel
    return in_process.code


async def _first(stream: AsyncIterable[Any]) -> Any:
    async for item in stream:
        return item
    raise AssertionError("the stream ended without a message")


async def _drain(stream: AsyncIterable[Any]) -> None:
    async for _ in stream:
        pass


async def test_unary_calls_answer_alike(clients: Clients, local: Stub, worker_id: str, task_id: str) -> None:
    lookup = bpb.LookupTaskRequest(owner=OWNER, task_id=task_id)
    found = await bounded(local.LookupTask(lookup))
    assert found.task.task_id == task_id
    assert found == await bounded(clients.bridge.LookupTask(lookup))
    tools = await bounded(local.ListTools(bpb.ListToolsRequest()))
    assert [t.name for t in tools.tools] == ["echo"]
    assert tools == await bounded(clients.bridge.ListTools(bpb.ListToolsRequest()))
    created = await bounded(local.CreateTask(bpb.CreateTaskRequest(owner=OWNER, tool_name="echo")))
    # What the in-process stub stored, a channel reads back.
    assert (await clients.lookup(created.task.task_id)) == created.task


async def test_unknown_task_is_the_same_not_found(clients: Clients, local: Stub) -> None:
    code = await _same_error(
        clients, local, lambda stub: stub.LookupTask(bpb.LookupTaskRequest(owner=OWNER, task_id="no-such"))
    )
    assert code is grpc.StatusCode.NOT_FOUND


async def test_missing_field_is_the_same_invalid_argument(clients: Clients, local: Stub) -> None:
    code = await _same_error(clients, local, lambda stub: stub.CancelTask(bpb.CancelTaskRequest(owner=OWNER)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_that_fails_at_once_raises_alike(clients: Clients, local: Stub) -> None:
    def events(stub: Stub) -> Awaitable[Any]:
        return _first(stub.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=OWNER, task_id="no-such")))

    code = await _same_error(clients, local, events)
    assert code is grpc.StatusCode.NOT_FOUND


async def test_a_stream_delivers_then_ends_with_the_outcome(
    clients: Clients, local: Stub, worker_id: str, task_id: str
) -> None:
    events = aiter(local.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=OWNER, task_id=task_id)))
    first = await bounded(anext(events))
    assert first.task.task_id == task_id
    await clients.complete(task_id, {"content": []})

    async def rest() -> list[Any]:
        return [event async for event in events]  # ends by itself after the outcome

    last = (await bounded(rest()))[-1]
    assert last.WhichOneof("event") == "outcome"
    assert last.outcome.task.status == task_pb2.TASK_STATUS_COMPLETED
    assert to_dict(last.outcome.result)["content"] == []
    # The same outcome as a stream over a channel ends with.
    assert last.outcome == (await clients.events(task_id).rest())[-1].outcome


async def test_a_deadline_ends_a_waiting_stream_with_deadline_exceeded(
    clients: Clients, local: Stub, worker_id: str, task_id: str
) -> None:
    for stub in (clients.bridge, local):
        stream = stub.FollowTask(bpb.FollowTaskRequest(owner=OWNER, task_id=task_id), timeout=0.2)
        error = await rpc_error(_drain(stream))
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_shutdown_ends_an_in_process_stream_with_unavailable(
    svc: RunningService, local: Stub, worker_id: str, task_id: str
) -> None:
    # One task reads the whole stream, as the bridge does: an in-process stream's handler runs
    # in the task that reads it, and that is the task shutdown cancels.
    seen: list[Any] = []

    async def follow() -> None:
        async for task in local.FollowTask(bpb.FollowTaskRequest(owner=OWNER, task_id=task_id)):
            seen.append(task)

    following = asyncio.ensure_future(follow())

    async def first_message() -> None:
        while not seen:
            assert not following.done(), following  # it ended (or failed) before its first message
            await asyncio.sleep(0.01)

    await bounded(first_message())
    assert len(svc.server.streams) == 1
    await asyncio.wait_for(svc.server.streams.close_all(), 1.0)
    error = await rpc_error(asyncio.wait_for(following, 1.0))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the service is shutting down; reconnect"


async def test_leaving_a_stream_early_closes_its_handler(
    svc: RunningService, local: Stub, worker_id: str, task_id: str
) -> None:
    stream = cast("Any", local.FollowTask(bpb.FollowTaskRequest(owner=OWNER, task_id=task_id)))
    await bounded(anext(stream))
    assert len(svc.server.streams) == 1
    await stream.aclose()  # what leaving an `async for` early comes to (at garbage collection)
    assert len(svc.server.streams) == 0


class _BrokenServicer:
    async def LookupTask(self, request: Any, context: Any) -> Any:
        raise RuntimeError("a bug")

    def __getattr__(self, name: str) -> Any:
        return self.LookupTask


async def test_an_unexpected_exception_is_unknown_as_over_grpc() -> None:
    service = bpb.DESCRIPTOR.services_by_name["BridgeService"]
    stub = cast("Stub", LocalStub(_BrokenServicer(), service))
    error = await rpc_error(stub.LookupTask(bpb.LookupTaskRequest()))
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert "RuntimeError: a bug" in (error.details() or "")

    # The same servicer behind a real server: gRPC answers the same code.
    server = grpc.aio.server()
    bridge_service_pb2_grpc.add_BridgeServiceServicer_to_server(cast("Any", _BrokenServicer()), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            over_grpc = cast("Stub", bridge_service_pb2_grpc.BridgeServiceStub(channel))
            expected = await rpc_error(over_grpc.LookupTask(bpb.LookupTaskRequest()))
    finally:
        await server.stop(None)
    assert error.code() is expected.code()
    assert "a bug" in (expected.details() or "")


def test_client_streaming_methods_are_refused() -> None:
    method = types.SimpleNamespace(name="Upload", client_streaming=True, server_streaming=False)
    service = types.SimpleNamespace(full_name="example.Uploads", methods=[method])
    with pytest.raises(ValueError, match=r"example\.Uploads\.Upload: client streams are not supported"):
        LocalStub(object(), cast("Any", service))


async def test_tasks_result_closes_its_event_stream_at_the_outcome(
    svc: RunningService, clients: Clients, local: Stub, worker_id: str, task_id: str
) -> None:
    # The bridge stops reading StreamTaskEvents at the outcome: the stream's generators (the
    # stub's, the servicer's, the domain's) are closed then, none is left for the garbage
    # collector, which would have the event loop close it later in a task of its own.
    from taskservice.bridge.server import McpBridge

    left: list[str] = []
    hooks = sys.get_asyncgen_hooks()

    def finalizer(agen: Any) -> None:
        left.append(agen.__qualname__)
        assert hooks.finalizer is not None
        hooks.finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        bridge = McpBridge(local)
        waiting = asyncio.ensure_future(bridge._run_to_outcome(cast("Any", None), OWNER, task_id, 1))

        async def stream_open() -> None:
            while len(svc.server.streams) == 0:
                assert not waiting.done(), waiting  # it ended (or failed) before the stream opened
                await asyncio.sleep(0.01)

        await bounded(stream_open())
        await clients.complete(task_id, {"content": []})
        outcome = await bounded(waiting)
        await asyncio.sleep(0.05)
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=hooks.finalizer)
    assert outcome.task.status == task_pb2.TASK_STATUS_COMPLETED
    assert len(svc.server.streams) == 0
    stream_generators = {"_stream", "BridgeServicer.StreamTaskEvents", "TaskManager.events"}
    assert stream_generators.isdisjoint(left)
