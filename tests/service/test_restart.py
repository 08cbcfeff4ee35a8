"""kill -9 of `taskservice serve` on SQLite: after a restart every task is there, unchanged, and a
pending elicitation is still answerable by re-attaching to it."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from taskservice_client._proto.mcptasks.v1 import task_pb2

from ..processes import free_port
from .support import (
    ELICIT_ANSWER,
    OWNER,
    Clients,
    ServeProcess,
    bounded,
    bpb,
    pb,
    to_dict,
)

RESULT = {
    "content": [{"type": "text", "text": "the report"}],
    "structuredContent": {"pages": 3, "title": "Q3"},
    "isError": False,
}


@pytest.fixture
async def processes() -> AsyncIterator[list[ServeProcess]]:
    """The serve processes a test starts; any still running at the end are killed."""
    started: list[ServeProcess] = []
    try:
        yield started
    finally:
        for process in started:
            await process.ensure_stopped()


async def serve(processes: list[ServeProcess], tmp_path: Path, db: Path, port: int) -> ServeProcess:
    process = await ServeProcess.start(
        tmp_path / "serve.log",
        "--no-mcp",
        "--store",
        f"sqlite:///{db}",  # an absolute path: sqlite:////...
        "--grpc-listen",
        f"127.0.0.1:{port}",
        # The worker registered before the kill must not lapse while the test runs.
        "--lease-ttl-ms",
        "600000",
        "--log-level",
        "warning",
    )
    processes.append(process)
    await process.wait_until_serving(f"127.0.0.1:{port}")
    return process


async def snapshot(clients: Clients, task_ids: list[str]) -> dict[str, tuple[task_pb2.Task, object]]:
    """Each task as the bridge reads it, and its result where it has one."""
    seen: dict[str, tuple[task_pb2.Task, object]] = {}
    for task_id in task_ids:
        task = await clients.lookup(task_id)
        result: object = None
        if task.status in (
            task_pb2.TASK_STATUS_COMPLETED,
            task_pb2.TASK_STATUS_FAILED,
            task_pb2.TASK_STATUS_CANCELLED,
        ):
            response = await bounded(
                clients.bridge.GetTaskResult(bpb.GetTaskResultRequest(owner=OWNER, task_id=task_id))
            )
            result = to_dict(response.result) if response.HasField("result") else None
        seen[task_id] = (task, result)
    return seen


async def test_kill_9_then_restart_keeps_every_task_and_the_pending_elicitation(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    db = tmp_path / "state" / "tasks.db"
    port = free_port()
    target = f"127.0.0.1:{port}"
    first = await serve(processes, tmp_path, db, port)

    clients = Clients(target)
    try:
        await clients.register(name="before-the-crash")
        working = (await clients.create(arguments={"n": 1})).task_id
        await clients.tasks.UpdateStatus(
            pb.UpdateStatusRequest(task_id=working, status_message="step 2 of 5")
        )
        asking = (await clients.create(arguments={"n": 2})).task_id
        elicit = clients.elicit(asking)
        pending = (await elicit.next()).pending
        elicit.cancel()  # the worker's stream is cut (its process would die with the service's)
        completed = (await clients.create(arguments={"n": 3})).task_id
        await clients.complete(completed, RESULT)
        failed = (await clients.create(arguments={"n": 4})).task_id
        await clients.fail(failed, "the disk was full")
        cancelled = (await clients.create(arguments={"n": 5})).task_id
        await clients.cancel(cancelled, "the user changed their mind")
        ids = [working, asking, completed, failed, cancelled]
        before = await snapshot(clients, ids)
        listed_before = await clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER))
    finally:
        await clients.close()
    statuses = [before[i][0].status for i in ids]
    assert statuses == [
        task_pb2.TASK_STATUS_WORKING,
        task_pb2.TASK_STATUS_INPUT_REQUIRED,
        task_pb2.TASK_STATUS_COMPLETED,
        task_pb2.TASK_STATUS_FAILED,
        task_pb2.TASK_STATUS_CANCELLED,
    ]

    assert await first.signal(signal.SIGKILL) == -signal.SIGKILL

    second = await serve(processes, tmp_path, db, port)
    clients = Clients(target)
    try:
        # Every task, unchanged: status, message, timestamps, ttl, result.
        assert await snapshot(clients, ids) == before
        assert before[completed][1] == RESULT
        assert await clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER)) == listed_before
        for task_id in ids:
            assert await clients.get(task_id) == before[task_id][0]

        # The pending elicitation is still pending, once, for the bridge...
        assert await clients.next_request(asking) == pending
        # ...and the worker re-attaches by its id and gets the answer given after the restart.
        again = clients.elicit(asking, request_id=pending.request_id)
        reported = await again.next()
        assert reported.pending == pending
        assert reported.task.status == task_pb2.TASK_STATUS_INPUT_REQUIRED
        answered = await clients.answer(asking, pending.request_id)
        assert answered.status == task_pb2.TASK_STATUS_WORKING
        [last] = await again.rest()
        assert to_dict(last.result) == ELICIT_ANSWER
        assert last.task.status == task_pb2.TASK_STATUS_WORKING
    finally:
        await clients.close()

    assert await second.signal(signal.SIGTERM) == 0
