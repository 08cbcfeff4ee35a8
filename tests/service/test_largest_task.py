"""The largest task the service stores, under its default limits, still reaches a client that keeps
gRPC's default 4 MiB receive limit, through every message that carries it."""

from __future__ import annotations

from typing import Any

import pytest
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain.service import (
    MAX_NAME_LENGTH,
    MAX_STATUS_MESSAGE_BYTES,
    MAX_TOOLS_PER_WORKER,
    ServiceLimits,
)
from taskservice.testing import RunningService

from .support import OWNER, Clients, Stream, bounded, bpb, pb, to_dict, to_struct

DEFAULTS = ServiceLimits()
CLIENT_RECEIVE_LIMIT = 4 * 1024 * 1024
"""What a gRPC client takes by default (the Clients here keep it)."""


@pytest.fixture
def limits() -> ServiceLimits:
    return DEFAULTS


def filling(limit: int, **fields: Any) -> dict[str, Any]:
    """`fields` and a string `pad` that make the payload's Struct `limit` bytes, or a few less."""
    pad = limit
    while (size := to_struct({**fields, "pad": "p" * pad}).ByteSize()) > limit:
        pad -= size - limit
    assert size > limit - 8
    return {**fields, "pad": "p" * pad}


async def test_the_largest_task_reaches_a_default_client_through_every_message(
    clients: Clients, svc: RunningService
) -> None:
    """Every field at its limit: a tool name of 128 four-byte characters, a status message of 4 KiB,
    arguments, _meta and result of --max-payload-bytes each; and a full page of such tasks."""
    tool_name = "\U0001f600" * MAX_NAME_LENGTH
    status_message = "\U0001f600" * (MAX_STATUS_MESSAGE_BYTES // 4)
    payload = DEFAULTS.max_payload_bytes
    arguments, meta = filling(payload), filling(payload)
    result = filling(payload, content=[], isError=False)
    worker_id = await clients.register(task_pb2.ToolDefinition(name=tool_name))
    create = bpb.CreateTaskRequest(
        owner=OWNER, tool_name=tool_name, arguments=to_struct(arguments), meta=to_struct(meta)
    )
    largest = (await bounded(clients.bridge.CreateTask(create))).task.task_id
    ids = [largest] + [(await clients.create(tool_name)).task_id for _ in range(DEFAULTS.max_page_size - 1)]
    for task_id in ids:
        update = pb.UpdateTaskRequest(task_id=task_id, status_message=status_message)
        await bounded(clients.tasks.UpdateTask(update))

    page = await bounded(clients.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER, page_size=len(ids))))
    assert sorted(t.task_id for t in page.tasks) == sorted(ids)
    assert {(t.tool_name, t.status_message) for t in page.tasks} == {(tool_name, status_message)}
    assert page.ByteSize() < CLIENT_RECEIVE_LIMIT * 0.75
    assert (await clients.get(largest)).status_message == status_message
    assert (await clients.lookup(largest)).status_message == status_message
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=largest)))
    assert (await watch.next()).task.status_message == status_message

    work = Stream(clients.tasks.StreamAssignments(pb.StreamAssignmentsRequest(worker_id=worker_id)))
    assignment = (await work.next()).assignment
    work.cancel()
    assert assignment.task.task_id == largest
    assert (to_dict(assignment.arguments), to_dict(assignment.meta)) == (arguments, meta)
    events = clients.events(largest)
    await clients.complete(largest, result)
    assert (await watch.rest())[-1].task.status == task_pb2.TASK_STATUS_COMPLETED
    outcomes = [e.outcome for e in await events.rest() if e.WhichOneof("event") == "outcome"]
    assert to_dict(outcomes[0].result) == result
    got = await bounded(clients.bridge.GetTaskResult(bpb.GetTaskResultRequest(owner=OWNER, task_id=largest)))
    assert to_dict(got.result) == result


async def test_a_worker_may_declare_as_many_tools_as_the_limit(clients: Clients) -> None:
    tools = [task_pb2.ToolDefinition(name=f"tool-{index}") for index in range(MAX_TOOLS_PER_WORKER)]
    await clients.register(*tools)
    listed = await bounded(clients.bridge.ListTools(bpb.ListToolsRequest()))
    assert len(listed.tools) == MAX_TOOLS_PER_WORKER
