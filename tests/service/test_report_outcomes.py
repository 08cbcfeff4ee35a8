"""ReportOutcomes: a worker's Complete and Fail on one stream, each handled and answered as the
unary call would be, refusals included, and the stream ending cleanly on either side."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from google.rpc import status_pb2
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.grpc_api.streams import StreamRegistry
from taskservice.grpc_api.task_servicer import TaskServicer
from taskservice.testing import RunningService

from .support import OWNER, TOOL_RESULT, WAIT, Clients, bounded, bpb, pb, rich, rpc_error, to_struct


def _complete(report_id: str, task_id: str, result: dict[str, Any] = TOOL_RESULT) -> pb.ReportOutcomesRequest:
    return pb.ReportOutcomesRequest(
        report_id=report_id, complete=pb.CompleteRequest(task_id=task_id, result=to_struct(result))
    )


def _fail(report_id: str, task_id: str, error: str) -> pb.ReportOutcomesRequest:
    return pb.ReportOutcomesRequest(report_id=report_id, fail=pb.FailRequest(task_id=task_id, error=error))


Call = grpc.aio.StreamStreamCall[pb.ReportOutcomesRequest, pb.ReportOutcomesResponse]


def _open(clients: Clients) -> Call:
    return cast("Call", cast("Any", clients.tasks).ReportOutcomes())


async def _read(call: Call) -> pb.ReportOutcomesResponse:
    answer = await bounded(call.read())
    assert isinstance(answer, pb.ReportOutcomesResponse), answer
    return answer


def _status(answer: pb.ReportOutcomesResponse) -> status_pb2.Status:
    assert answer.WhichOneof("answer") == "error", answer
    return status_pb2.Status.FromString(answer.error.SerializeToString())


async def test_outcomes_on_one_stream_are_stored_and_answered_by_id(clients: Clients, worker_id: str) -> None:
    first = (await clients.create()).task_id
    second = (await clients.create()).task_id
    call = _open(clients)
    await call.write(_complete("r1", first))
    await call.write(_fail("r2", second, "it broke"))
    answers = {a.report_id: a for a in [await _read(call), await _read(call)]}
    assert answers["r1"].complete.task.status == task_pb2.TASK_STATUS_COMPLETED
    assert answers["r2"].fail.task.status == task_pb2.TASK_STATUS_FAILED
    assert answers["r2"].fail.task.status_message == "it broke"
    # Stored, as the unary calls store them: the result too.
    assert (await clients.get(first)).status == task_pb2.TASK_STATUS_COMPLETED
    result = await clients.bridge.GetTaskResult(bpb.GetTaskResultRequest(owner=clients.owner, task_id=first))
    assert result.result == to_struct(TOOL_RESULT)
    await call.done_writing()
    assert await bounded(call.read()) is cast("Any", grpc.aio).EOF  # missing from grpc-stubs
    assert await call.code() is grpc.StatusCode.OK


async def test_a_slow_outcome_holds_back_none_behind_it(
    svc: RunningService, clients: Clients, worker_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each outcome is handled as it is read: one whose store write waits (a slow Redis, say)
    leaves the next on the stream to be stored and answered meanwhile, and is answered after."""
    slow = (await clients.create()).task_id
    quick = (await clients.create()).task_id
    release = asyncio.Event()
    complete = svc.manager.complete

    async def held(task_id: str, result: Any, **kwargs: Any) -> Any:
        if task_id == slow:
            await release.wait()
        return await complete(task_id, result, **kwargs)

    monkeypatch.setattr(svc.manager, "complete", held)
    call = _open(clients)
    await call.write(_complete("r1", slow))
    await call.write(_complete("r2", quick))
    first = await _read(call)
    assert first.report_id == "r2"
    assert first.complete.task.status == task_pb2.TASK_STATUS_COMPLETED
    assert (await clients.get(slow)).status == task_pb2.TASK_STATUS_WORKING
    release.set()
    second = await _read(call)
    assert second.report_id == "r1"
    assert second.complete.task.status == task_pb2.TASK_STATUS_COMPLETED
    await call.done_writing()
    assert await bounded(call.read()) is cast("Any", grpc.aio).EOF
    assert await call.code() is grpc.StatusCode.OK


async def test_the_workers_confirmation_goes_after_the_waiters_the_outcome_woke(
    svc: RunningService, task_id: str
) -> None:
    """The client's tasks/result (a waiter on the task) has its turn before the worker's answer
    is queued for its gRPC write: the write is not on the way to the client's result."""
    order: list[str] = []

    async def waiter() -> None:
        await svc.manager.wait_finished(OWNER, task_id)
        order.append("waiter")

    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # it waits
    answers: asyncio.Queue[pb.ReportOutcomesResponse | None] = asyncio.Queue()
    servicer = TaskServicer(svc.manager, StreamRegistry())
    await servicer._report(_complete("r1", task_id), answers)
    for _ in range(10):  # turn by turn, until the answer is queued
        if not answers.empty():
            break
        await asyncio.sleep(0)
    order.append("answer")
    assert order == ["waiter", "answer"]
    answer = answers.get_nowait()
    assert answer is not None
    await bounded(waiting)
    assert answer.complete.task.status == task_pb2.TASK_STATUS_COMPLETED


async def test_a_refused_outcome_answers_the_unary_calls_error_and_the_stream_goes_on(
    clients: Clients, task_id: str
) -> None:
    call = _open(clients)
    bad_result = {"content": [{"type": "nonsense"}]}
    cases = {
        "unknown": _complete("unknown", "no-such-task"),
        "bad": _complete("bad", task_id, bad_result),
        "empty": pb.ReportOutcomesRequest(report_id="empty"),
    }
    for request in cases.values():
        await call.write(request)
    answers = {a.report_id: a for a in [await _read(call) for _ in cases]}

    unknown = _status(answers["unknown"])
    unary = rich(
        await rpc_error(
            clients.tasks.Complete(pb.CompleteRequest(task_id="no-such-task", result=to_struct(TOOL_RESULT)))
        )
    )
    assert unknown.code == grpc.StatusCode.NOT_FOUND.value[0] == unary.code.value[0]
    assert unknown.message == unary.message
    assert unknown.details  # ErrorInfo and ResourceInfo, as the unary call's trailer carries them

    bad = _status(answers["bad"])
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "result.content.0" in bad.message
    empty = _status(answers["empty"])
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "outcome" in empty.message

    # Nothing was stored by the refusals; the stream still takes outcomes.
    assert (await clients.get(task_id)).status == task_pb2.TASK_STATUS_WORKING
    await call.write(_complete("good", task_id))
    good = await _read(call)
    assert good.report_id == "good"
    assert good.complete.task.status == task_pb2.TASK_STATUS_COMPLETED
    # A second outcome for an ended task: what the unary call answers, FAILED_PRECONDITION.
    await call.write(_fail("late", task_id, "too late"))
    assert _status(await _read(call)).code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    call.cancel()


async def test_shutdown_ends_an_open_stream_with_unavailable(svc: RunningService, clients: Clients) -> None:
    call = _open(clients)
    await call.write(pb.ReportOutcomesRequest(report_id="empty"))
    assert _status(await _read(call)).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # The service ends its own streams first: stop does not wait out the grace for this one.
    await bounded(svc.server.stop(grace=WAIT * 2))
    assert await bounded(call.code()) is grpc.StatusCode.UNAVAILABLE
