"""Task transitions over gRPC.

Legal ones change the task; illegal ones answer a status code and change nothing.
"""

from __future__ import annotations

import grpc
from taskservice_client._proto.mcptasks.v1 import task_pb2

from .support import TOOL_RESULT, Clients, bpb, pb, rich_error, to_dict, to_struct

WORKING = task_pb2.TASK_STATUS_WORKING
INPUT_REQUIRED = task_pb2.TASK_STATUS_INPUT_REQUIRED
COMPLETED = task_pb2.TASK_STATUS_COMPLETED
FAILED = task_pb2.TASK_STATUS_FAILED
CANCELLED = task_pb2.TASK_STATUS_CANCELLED


async def test_update_status_keeps_working_and_sets_the_message(clients: Clients, task_id: str) -> None:
    before = await clients.get(task_id)
    response = await clients.tasks.UpdateStatus(
        pb.UpdateStatusRequest(task_id=task_id, status_message="half way", notify=False)
    )
    assert response.task.status == WORKING
    assert response.task.status_message == "half way"
    assert response.task.last_updated_at.ToMilliseconds() >= before.last_updated_at.ToMilliseconds()
    assert await clients.get(task_id) == response.task


async def test_complete_stores_the_result_readable_by_the_bridge(clients: Clients, task_id: str) -> None:
    task = await clients.complete(task_id)
    assert task.status == COMPLETED
    result = await clients.bridge.GetTaskResult(
        bpb.GetTaskResultRequest(owner=clients.owner, task_id=task_id)
    )
    assert result.task == task
    assert to_dict(result.result) == TOOL_RESULT


async def test_fail_sets_the_error_as_the_status_message(clients: Clients, task_id: str) -> None:
    task = await clients.fail(task_id, "disk full")
    assert (task.status, task.status_message) == (FAILED, "disk full")
    result = await clients.bridge.GetTaskResult(
        bpb.GetTaskResultRequest(owner=clients.owner, task_id=task_id)
    )
    assert not result.HasField("result")


async def test_get_task_result_of_a_running_task_is_failed_precondition(
    clients: Clients, task_id: str
) -> None:
    error = await rich_error(
        clients.bridge.GetTaskResult(bpb.GetTaskResultRequest(owner=clients.owner, task_id=task_id))
    )
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION


async def test_complete_or_fail_after_cancel_is_failed_precondition_and_changes_nothing(
    clients: Clients, task_id: str
) -> None:
    cancelled = await clients.cancel(task_id, "user said stop")
    assert (cancelled.status, cancelled.status_message) == (CANCELLED, "user said stop")
    complete = await rich_error(
        clients.tasks.Complete(pb.CompleteRequest(task_id=task_id, result=to_struct(TOOL_RESULT)))
    )
    fail = await rich_error(clients.tasks.Fail(pb.FailRequest(task_id=task_id, error="late")))
    status = await rich_error(
        clients.tasks.UpdateStatus(pb.UpdateStatusRequest(task_id=task_id, status_message="late"))
    )
    for error in (complete, fail, status):
        assert error.code is grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "INVALID_TRANSITION"
    assert "cancelled" in complete.message
    assert await clients.get(task_id) == cancelled
    result = await clients.bridge.GetTaskResult(
        bpb.GetTaskResultRequest(owner=clients.owner, task_id=task_id)
    )
    assert not result.HasField("result")


async def test_complete_twice_is_failed_precondition_and_keeps_the_first_result(
    clients: Clients, task_id: str
) -> None:
    first = await clients.complete(task_id)
    second = {"content": [{"type": "text", "text": "second"}]}
    error = await rich_error(
        clients.tasks.Complete(pb.CompleteRequest(task_id=task_id, result=to_struct(second)))
    )
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert await clients.get(task_id) == first
    result = await clients.bridge.GetTaskResult(
        bpb.GetTaskResultRequest(owner=clients.owner, task_id=task_id)
    )
    assert to_dict(result.result) == TOOL_RESULT


async def test_fail_after_complete_and_complete_after_fail_are_failed_precondition(
    clients: Clients, worker_id: str
) -> None:
    done = await clients.complete((await clients.create()).task_id)
    failed = await clients.fail((await clients.create()).task_id)
    error = await rich_error(clients.tasks.Fail(pb.FailRequest(task_id=done.task_id, error="x")))
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    error = await rich_error(
        clients.tasks.Complete(pb.CompleteRequest(task_id=failed.task_id, result=to_struct(TOOL_RESULT)))
    )
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert await clients.get(done.task_id) == done
    assert await clients.get(failed.task_id) == failed


async def test_cancel_of_a_terminal_task_is_failed_precondition(clients: Clients, worker_id: str) -> None:
    done = await clients.complete((await clients.create()).task_id)
    failed = await clients.fail((await clients.create()).task_id)
    cancelled = await clients.cancel((await clients.create()).task_id)
    for task in (done, failed, cancelled):
        error = await rich_error(
            clients.bridge.CancelTask(bpb.CancelTaskRequest(owner=clients.owner, task_id=task.task_id))
        )
        assert error.code is grpc.StatusCode.FAILED_PRECONDITION
        assert await clients.get(task.task_id) == task


async def test_input_required_goes_back_to_working_when_answered(clients: Clients, task_id: str) -> None:
    elicit = clients.elicit(task_id)
    asked = await elicit.next()
    assert asked.task.status == INPUT_REQUIRED
    assert (await clients.get(task_id)).status == INPUT_REQUIRED
    answered = await clients.answer(task_id, asked.pending.request_id)
    assert answered.status == WORKING
    assert (await elicit.next()).task.status == WORKING
    # A task waiting for input can still complete, fail or be cancelled like a working one.
    assert (await clients.complete(task_id)).status == COMPLETED


async def test_an_input_required_task_can_be_failed(clients: Clients, task_id: str) -> None:
    elicit = clients.elicit(task_id)
    await elicit.next()
    failed = await clients.fail(task_id, "gave up waiting")
    assert failed.status == FAILED
    error = await elicit.error()
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_answer_twice_is_already_exists_and_keeps_the_first_answer(
    clients: Clients, task_id: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    await clients.answer(task_id, pending.request_id, {"action": "decline"})
    before = await clients.get(task_id)
    error = await rich_error(
        clients.bridge.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=clients.owner,
                task_id=task_id,
                request_id=pending.request_id,
                result=to_struct({"action": "accept", "content": {"name": "Eve"}}),
            )
        )
    )
    assert error.code is grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "ALREADY_ANSWERED"
    error_answer = await rich_error(
        clients.bridge.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=clients.owner,
                task_id=task_id,
                request_id=pending.request_id,
                error=task_pb2.McpError(code=-32600, message="too late"),
            )
        )
    )
    assert error_answer.code is grpc.StatusCode.ALREADY_EXISTS
    assert await clients.get(task_id) == before
    [last] = await elicit.rest()
    assert to_dict(last.result) == {"action": "decline"}
