"""Work dispatch over gRPC: registration, assignments, acks, heartbeats, lost leases; listing and owners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain.service import ServiceLimits

from .support import (
    OWNER,
    TOOL,
    Clients,
    Stream,
    bounded,
    bpb,
    pb,
    rich_error,
    to_dict,
    to_struct,
    tool,
)

WORKING = task_pb2.TASK_STATUS_WORKING
FAILED = task_pb2.TASK_STATUS_FAILED
CANCELLED = task_pb2.TASK_STATUS_CANCELLED

# Leases that run out fast, swept often: a silent worker is lost within moments.
FAST_LEASES = ServiceLimits(lease_ttl_ms=300, sweep_interval_ms=50)


def assignments(clients: Clients, worker_id: str) -> Stream[pb.StreamAssignmentsResponse]:
    return Stream(clients.tasks.StreamAssignments(pb.StreamAssignmentsRequest(worker_id=worker_id)))


class Heartbeats:
    """Keeps a worker alive (a heartbeat every 50 ms) until `stop`: then it goes silent."""

    def __init__(self, clients: Clients, worker_id: str) -> None:
        self._beating = asyncio.create_task(self._beat(clients, worker_id))

    @staticmethod
    async def _beat(clients: Clients, worker_id: str) -> None:
        while True:
            await clients.tasks.Heartbeat(pb.HeartbeatRequest(worker_id=worker_id))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._beating


@contextlib.asynccontextmanager
async def heartbeating(clients: Clients, worker_id: str) -> AsyncIterator[Heartbeats]:
    beats = Heartbeats(clients, worker_id)
    try:
        yield beats
    finally:
        await beats.stop()


async def watch_until_terminal(clients: Clients, task_id: str) -> task_pb2.Task:
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=task_id)))
    events = await watch.rest()
    return events[-1].task


# ----------------------------------------------------------------------- assignments


async def test_a_created_task_is_assigned_with_its_arguments_and_acknowledged(
    clients: Clients, worker_id: str
) -> None:
    stream = assignments(clients, worker_id)
    created = (
        await clients.bridge.CreateTask(
            bpb.CreateTaskRequest(
                owner=OWNER,
                tool_name=TOOL,
                arguments=to_struct({"text": "hello", "n": 3, "nested": {"list": [1, "two"]}}),
                meta=to_struct({"progressToken": "p-7"}),
                ttl_ms=120_000,
            )
        )
    ).task
    assert created.status == WORKING
    assert created.ttl_ms == 120_000
    assert created.tool_name == TOOL

    assignment = (await stream.next()).assignment
    assert assignment.task.task_id == created.task_id
    assert assignment.tool_name == TOOL
    assert to_dict(assignment.arguments) == {"text": "hello", "n": 3, "nested": {"list": [1, "two"]}}
    assert to_dict(assignment.meta) == {"progressToken": "p-7"}
    assert assignment.lease_id
    assert assignment.lease_expires_at.ToMilliseconds() > 0

    acked = await bounded(
        clients.tasks.AckAssignment(
            pb.AckAssignmentRequest(
                worker_id=worker_id, task_id=created.task_id, lease_id=assignment.lease_id
            )
        )
    )
    assert acked.task.status == WORKING
    # Acknowledging again is harmless; a wrong lease is refused.
    await clients.tasks.AckAssignment(
        pb.AckAssignmentRequest(worker_id=worker_id, task_id=created.task_id, lease_id=assignment.lease_id)
    )
    error = await rich_error(
        clients.tasks.AckAssignment(
            pb.AckAssignmentRequest(worker_id=worker_id, task_id=created.task_id, lease_id="stolen")
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LEASE_NOT_HELD")
    stream.cancel()


async def test_an_unacknowledged_assignment_comes_again_on_reconnect(
    clients: Clients, worker_id: str
) -> None:
    task_id = (await clients.create()).task_id
    first = assignments(clients, worker_id)
    offered = (await first.next()).assignment
    first.cancel()
    second = assignments(clients, worker_id)
    again = (await second.next()).assignment
    assert (again.task.task_id, again.lease_id) == (task_id, offered.lease_id)
    second.cancel()


async def test_a_task_waits_for_room_on_the_worker(clients: Clients, worker_id: str) -> None:
    # The worker runs one task at a time: the second is offered once the first is done.
    one = (await clients.create()).task_id
    two = (await clients.create()).task_id
    stream = assignments(clients, worker_id)
    first = (await stream.next()).assignment
    # Oldest first; two tasks created in the same millisecond are ordered by id.
    assert first.task.task_id in (one, two)
    await clients.tasks.AckAssignment(
        pb.AckAssignmentRequest(worker_id=worker_id, task_id=first.task.task_id, lease_id=first.lease_id)
    )
    waiting = asyncio.ensure_future(stream.next())
    await asyncio.sleep(0.05)  # a chance to offer the second task too early (it must not be)
    assert not waiting.done()
    await clients.complete(first.task.task_id)
    assert (await waiting).assignment.task.task_id == ({one, two} - {first.task.task_id}).pop()
    stream.cancel()


async def test_create_task_for_a_tool_nobody_serves_is_failed_precondition(clients: Clients) -> None:
    error = await rich_error(
        clients.bridge.CreateTask(bpb.CreateTaskRequest(owner=OWNER, tool_name="nobody"))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TOOL_NOT_SERVED")


async def test_released_assignment_goes_to_another_worker(clients: Clients, worker_id: str) -> None:
    task_id = (await clients.create()).task_id
    first = assignments(clients, worker_id)
    offered = (await first.next()).assignment
    other = await clients.register(name="worker-2")
    second = assignments(clients, other)
    released = await clients.tasks.ReleaseAssignment(
        pb.ReleaseAssignmentRequest(
            worker_id=worker_id, task_id=task_id, lease_id=offered.lease_id, reason="bye"
        )
    )
    assert released.task.status == WORKING
    # Either worker may take it (the first has room again); it is offered once, under a new lease.
    taken = await asyncio.wait(
        [asyncio.ensure_future(first.next()), asyncio.ensure_future(second.next())],
        return_when=asyncio.FIRST_COMPLETED,
    )
    [event] = [f.result() for f in taken[0]]
    assert event.assignment.task.task_id == task_id
    assert event.assignment.lease_id != offered.lease_id
    for pending in taken[1]:
        pending.cancel()
    first.cancel()
    second.cancel()


# ---------------------------------------------------------------------- heartbeats


async def test_heartbeat_reports_a_cancelled_task(clients: Clients, worker_id: str) -> None:
    running = (await clients.create()).task_id
    stream = assignments(clients, worker_id)
    assignment = (await stream.next()).assignment
    await clients.tasks.AckAssignment(
        pb.AckAssignmentRequest(worker_id=worker_id, task_id=running, lease_id=assignment.lease_id)
    )
    beat = await clients.tasks.Heartbeat(pb.HeartbeatRequest(worker_id=worker_id, task_ids=[running]))
    assert list(beat.cancelled_task_ids) == []
    await clients.cancel(running)
    beat = await clients.tasks.Heartbeat(pb.HeartbeatRequest(worker_id=worker_id, task_ids=[running, "gone"]))
    assert sorted(beat.cancelled_task_ids) == sorted([running, "gone"])
    assert beat.lease_expires_at.ToMilliseconds() > 0
    stream.cancel()


async def test_heartbeat_of_an_unknown_worker_is_not_found(clients: Clients) -> None:
    error = await rich_error(clients.tasks.Heartbeat(pb.HeartbeatRequest(worker_id="ghost")))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "WORKER_NOT_FOUND")
    assert error.resource is not None
    assert error.resource.resource_type == "worker"


@pytest.mark.parametrize("limits", [FAST_LEASES])
async def test_a_worker_that_stops_heartbeating_loses_its_task(clients: Clients) -> None:
    worker_id = await clients.register(name="flaky-worker")
    async with heartbeating(clients, worker_id):
        task_id = (await clients.create()).task_id
        stream = assignments(clients, worker_id)
        assignment = (await stream.next()).assignment
        await clients.tasks.AckAssignment(
            pb.AckAssignmentRequest(worker_id=worker_id, task_id=task_id, lease_id=assignment.lease_id)
        )
    # Silent from here on: the sweeper finds the lease run out and fails the task.
    final = await watch_until_terminal(clients, task_id)
    assert final.status == FAILED
    assert "worker" in final.status_message
    assert "lost" in final.status_message
    assert "flaky-worker" in final.status_message
    assert worker_id not in final.status_message
    # The lost worker's assignment stream ends (cleanly); a reconnect is told to register again.
    assert await stream.rest() == []
    assert (await assignments(clients, worker_id).error()).code() is grpc.StatusCode.NOT_FOUND
    beat = await rich_error(clients.tasks.Heartbeat(pb.HeartbeatRequest(worker_id=worker_id)))
    assert beat.reason == "WORKER_NOT_FOUND"
    tools = await clients.bridge.ListTools(bpb.ListToolsRequest())
    assert list(tools.tools) == []


@pytest.mark.parametrize("limits", [FAST_LEASES])
async def test_a_retry_safe_task_of_a_lost_worker_is_offered_to_another(clients: Clients) -> None:
    lost = await clients.register(tool("idempotent", retry_safe=True), name="lost")
    healthy = await clients.register(tool("idempotent", retry_safe=True), name="healthy")
    async with heartbeating(clients, healthy), heartbeating(clients, lost) as lost_beats:
        task_id = (await clients.create("idempotent", {"x": 1})).task_id
        first = assignments(clients, lost)
        assignment = (await first.next()).assignment
        await clients.tasks.AckAssignment(
            pb.AckAssignmentRequest(worker_id=lost, task_id=task_id, lease_id=assignment.lease_id)
        )
        second = assignments(clients, healthy)
        # The first worker goes silent; the healthy one keeps beating and is offered the task.
        await lost_beats.stop()
        again = (await second.next()).assignment
        assert again.task.task_id == task_id
        assert again.lease_id != assignment.lease_id
        assert to_dict(again.arguments) == {"x": 1}
        assert again.task.status == WORKING
        await clients.tasks.AckAssignment(
            pb.AckAssignmentRequest(worker_id=healthy, task_id=task_id, lease_id=again.lease_id)
        )
        # The old lease is dead: the lost worker cannot act on it any more.
        error = await rich_error(
            clients.tasks.AckAssignment(
                pb.AckAssignmentRequest(worker_id=lost, task_id=task_id, lease_id=assignment.lease_id)
            )
        )
        assert error.code is grpc.StatusCode.NOT_FOUND  # the lost worker is gone altogether
        assert (await clients.complete(task_id)).status == task_pb2.TASK_STATUS_COMPLETED
        second.cancel()
        first.cancel()


@pytest.mark.parametrize("limits", [FAST_LEASES])
async def test_an_offer_never_acknowledged_goes_back_to_the_queue(clients: Clients) -> None:
    worker_id = await clients.register()
    async with heartbeating(clients, worker_id):
        task_id = (await clients.create()).task_id
        stream = assignments(clients, worker_id)
        offered = (await stream.next()).assignment
        stream.cancel()
        # Not acknowledged within the lease: offered again (to the same live worker) under a new lease.
        again = assignments(clients, worker_id)
        nxt = (await again.next()).assignment
        if nxt.lease_id == offered.lease_id:  # the unacknowledged offer re-sent on reconnect
            nxt = (await again.next()).assignment
        assert nxt.task.task_id == task_id
        assert nxt.lease_id != offered.lease_id
        again.cancel()


async def test_unregistering_a_worker_fails_its_running_task(clients: Clients, worker_id: str) -> None:
    task_id = (await clients.create()).task_id
    stream = assignments(clients, worker_id)
    assignment = (await stream.next()).assignment
    await clients.tasks.AckAssignment(
        pb.AckAssignmentRequest(worker_id=worker_id, task_id=task_id, lease_id=assignment.lease_id)
    )
    await clients.tasks.UnregisterWorker(pb.UnregisterWorkerRequest(worker_id=worker_id))
    task = await clients.get(task_id)
    assert task.status == FAILED
    assert "withdrew" in task.status_message
    assert await stream.rest() == []
    assert (await assignments(clients, worker_id).error()).code() is grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------- tools


async def test_list_tools_lists_every_declared_tool_once(clients: Clients) -> None:
    assert list((await clients.bridge.ListTools(bpb.ListToolsRequest())).tools) == []
    rich_tool = task_pb2.ToolDefinition(
        name="report",
        title="Report",
        description="writes a report",
        input_schema=to_struct({"type": "object", "properties": {"topic": {"type": "string"}}}),
        output_schema=to_struct({"type": "object", "properties": {"pages": {"type": "integer"}}}),
        task_support=task_pb2.TASK_SUPPORT_REQUIRED,
        retry_safe=True,
        annotations=to_struct({"readOnlyHint": True}),
    )
    await clients.register(tool("echo"), rich_tool, name="one")
    await clients.register(tool("echo"), tool("other"), name="two")
    listed = (await clients.bridge.ListTools(bpb.ListToolsRequest())).tools
    by_name = {t.name: t for t in listed}
    assert sorted(t.name for t in listed) == ["echo", "other", "report"]
    assert by_name["report"] == rich_tool
    assert by_name["echo"].description == "the echo tool"


async def test_a_tool_declared_without_schema_gets_an_empty_object_schema(clients: Clients) -> None:
    await clients.register(task_pb2.ToolDefinition(name="bare"))
    [listed] = (await clients.bridge.ListTools(bpb.ListToolsRequest())).tools
    assert to_dict(listed.input_schema) == {"type": "object"}
    assert listed.task_support == task_pb2.TASK_SUPPORT_OPTIONAL


# --------------------------------------------------------------------- listing, owners


async def test_list_tasks_pages_through_every_task_oldest_first(clients: Clients, worker_id: str) -> None:
    created = [(await clients.create(arguments={"n": n})).task_id for n in range(5)]
    await clients.create(owner="bob")
    seen: list[task_pb2.Task] = []
    sizes: list[int] = []
    token = ""
    for _ in range(10):
        page = await clients.bridge.ListTasks(
            bpb.ListTasksRequest(owner=OWNER, page_size=2, page_token=token)
        )
        seen.extend(page.tasks)
        sizes.append(len(page.tasks))
        token = page.next_page_token
        if not token:
            break
    assert sizes == [2, 2, 1]
    # Every task once, oldest first (tasks created in the same millisecond are ordered by id).
    assert sorted(t.task_id for t in seen) == sorted(created)
    keys = [(t.created_at.ToMilliseconds(), t.task_id) for t in seen]
    assert keys == sorted(keys)


async def test_list_tasks_with_a_bad_page_token_is_invalid_argument(clients: Clients) -> None:
    error = await rich_error(
        clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER, page_token="garbage!"))
    )
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["page_token"]


async def test_another_owner_sees_not_found_everywhere(clients: Clients, task_id: str) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    bob = "bob"
    calls: list[Any] = [
        clients.bridge.LookupTask(bpb.LookupTaskRequest(owner=bob, task_id=task_id)),
        clients.bridge.CancelTask(bpb.CancelTaskRequest(owner=bob, task_id=task_id)),
        clients.bridge.GetTaskResult(bpb.GetTaskResultRequest(owner=bob, task_id=task_id)),
        clients.bridge.AnswerRequest(
            bpb.AnswerRequestRequest(
                owner=bob,
                task_id=task_id,
                request_id=pending.request_id,
                result=to_struct({"action": "decline"}),
            )
        ),
    ]
    for call in calls:
        error = await rich_error(call)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND")
    events = Stream(clients.bridge.StreamTaskEvents(bpb.StreamTaskEventsRequest(owner=bob, task_id=task_id)))
    assert (await events.error()).code() is grpc.StatusCode.NOT_FOUND
    listed = await clients.bridge.ListTasks(bpb.ListTasksRequest(owner=bob))
    assert list(listed.tasks) == []
    # Nothing bob did reached the task: still waiting for alice's answer.
    assert (await clients.lookup(task_id)).status == task_pb2.TASK_STATUS_INPUT_REQUIRED
    elicit.cancel()
