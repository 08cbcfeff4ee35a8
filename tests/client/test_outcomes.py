"""The worker's outcomes over ReportOutcomes (taskservice_client._outcomes): answered and refused
as the unary calls are, retried after the stream breaks, and unary with a service without it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import anyio
import grpc
import grpc.aio
import pytest
from mcp import types
from taskservice_client import TaskServiceRejected
from taskservice_client._client import ServiceClient
from taskservice_client._convert import model_struct
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2

from taskservice.domain.service import TaskManager
from taskservice.grpc_api.server import TaskServiceServer
from taskservice.testing import RunningService, running_service

from .conftest import FAST_RETRY, WAIT

pb = task_service_pb2
RESULT = model_struct(types.CallToolResult(content=[types.TextContent(type="text", text="done")]))


def not_called(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError("the unary call was made although the outcome stream was open")


@pytest.fixture
async def service() -> AsyncIterator[RunningService]:
    async with running_service() as svc:
        yield svc


async def _stored_task(client: ServiceClient) -> str:
    created = await client.unary(
        client.tasks.CreateStoredTask, pb.CreateStoredTaskRequest(), pb.CreateStoredTaskResponse
    )
    return created.task.task_id


async def _until_open(client: ServiceClient) -> None:
    with anyio.fail_after(WAIT):
        while not client.outcomes.is_open:  # noqa: ASYNC110 (a state of the stream, no event to wait on)
            await anyio.sleep(0.01)


async def test_complete_and_fail_travel_on_the_open_stream(service: RunningService) -> None:
    client = ServiceClient(service.target, retry=FAST_RETRY)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(client.outcomes.run)
            await _until_open(client)
            done, failed = await _stored_task(client), await _stored_task(client)
            # Both at once: each answer finds its caller by report_id.
            completed, failing = await asyncio.gather(
                client.unary(
                    not_called, pb.CompleteRequest(task_id=done, result=RESULT), pb.CompleteResponse
                ),
                client.unary(not_called, pb.FailRequest(task_id=failed, error="it broke"), pb.FailResponse),
            )
            assert completed.task.status == task_pb2.TASK_STATUS_COMPLETED
            assert failing.task.status_message == "it broke"
            stored = await service.manager.get_task(done)
            assert stored.result == types.CallToolResult.model_validate(
                {"content": [{"type": "text", "text": "done"}]}
            ).model_dump(mode="json", by_alias=True, exclude_none=True)
            group.cancel_scope.cancel()
    finally:
        await client.close()


async def test_a_refusal_raises_what_the_unary_call_raises(service: RunningService) -> None:
    client = ServiceClient(service.target, retry=FAST_RETRY)
    try:
        unknown = pb.CompleteRequest(task_id="no-such-task", result=RESULT)
        with pytest.raises(TaskServiceRejected) as unary:
            await client.unary(client.tasks.Complete, unknown, pb.CompleteResponse)
        async with anyio.create_task_group() as group:
            group.start_soon(client.outcomes.run)
            await _until_open(client)
            with pytest.raises(TaskServiceRejected) as streamed:
                await client.unary(not_called, unknown, pb.CompleteResponse)
            group.cancel_scope.cancel()
        assert streamed.value.code is unary.value.code is grpc.StatusCode.NOT_FOUND
        assert streamed.value.message == unary.value.message
    finally:
        await client.close()


async def test_an_outcome_made_while_the_service_restarts_is_stored_once_it_is_back() -> None:
    """The service goes away under an open stream: the outcome made meanwhile (on the stream
    opened again, or unary) is stored by the next service on the same store."""
    async with running_service() as first:
        port = first.port
        client = ServiceClient(first.target, retry=FAST_RETRY)
        task_id = await _stored_task(client)
        store = first.manager.store
        second = TaskServiceServer(TaskManager(store), f"127.0.0.1:{port}")
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(client.outcomes.run)
                await _until_open(client)
                await first.server.stop(0)  # its store stays: the same tasks come back with the next
                outcome = asyncio.ensure_future(
                    client.unary(
                        client.tasks.Complete,
                        pb.CompleteRequest(task_id=task_id, result=RESULT),
                        pb.CompleteResponse,
                    )
                )
                await anyio.sleep(0.2)
                await second.start()
                with anyio.fail_after(WAIT):
                    answered = await outcome
                assert answered.task.status == task_pb2.TASK_STATUS_COMPLETED
                group.cancel_scope.cancel()
        finally:
            # Outside the cancelled scope: inside it, anyio would cancel the stop at its first await.
            await second.stop(0)
            await client.close()


async def test_a_service_without_report_outcomes_gets_the_unary_calls() -> None:
    calls: list[str] = []

    async def complete(request: pb.CompleteRequest, context: Any) -> pb.CompleteResponse:
        calls.append(request.task_id)
        return pb.CompleteResponse(task=task_pb2.Task(task_id=request.task_id))

    handler = grpc.method_handlers_generic_handler(
        "mcptasks.v1.TaskService",
        {
            "Complete": grpc.unary_unary_rpc_method_handler(
                complete,
                request_deserializer=pb.CompleteRequest.FromString,
                response_serializer=pb.CompleteResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = ServiceClient(f"127.0.0.1:{port}", retry=FAST_RETRY)
    try:
        with anyio.fail_after(WAIT):
            await client.outcomes.run()  # ends by itself: UNIMPLEMENTED
        assert not client.outcomes.supported
        assert not client.outcomes.is_open
        answered = await client.unary(
            client.tasks.Complete, pb.CompleteRequest(task_id="t1", result=RESULT), pb.CompleteResponse
        )
        assert answered.task.task_id == "t1"
        assert calls == ["t1"]
    finally:
        await client.close()
        await server.stop(0)
