"""The standard pieces of the server: health, reflection, one server per port, graceful shutdown."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from taskservice.testing import RunningService, running_service

from .support import (
    BRIDGE_SERVICE,
    TASK_SERVICE,
    Clients,
    Stream,
    bounded,
    pb,
    rpc_error,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# The RPCs that wait, which `describe` must show as server streams.
STREAMING = {
    TASK_SERVICE: {
        "Elicit",
        "ElicitUrl",
        "CreateMessage",
        "ElicitAsTask",
        "CreateMessageAsTask",
        "WatchTask",
        "StreamAssignments",
        "ReportOutcomes",
    },
    BRIDGE_SERVICE: {"StreamTaskEvents", "FollowTask", "WatchTools"},
}
# The RPCs that take a stream: a worker's outcomes, on one call held open.
CLIENT_STREAMING = {TASK_SERVICE: {"ReportOutcomes"}, BRIDGE_SERVICE: set()}
# Every other RPC: the two sets name each RPC of a service once.
UNARY = {
    TASK_SERVICE: {
        "GetTask",
        "UpdateStatus",
        "Complete",
        "Fail",
        "RegisterWorker",
        "AckAssignment",
        "Heartbeat",
        "ReleaseAssignment",
        "UnregisterWorker",
        "CreateStoredTask",
        "UpdateTask",
        "DeleteTask",
    },
    BRIDGE_SERVICE: {
        "CreateTask",
        "LookupTask",
        "ListTasks",
        "CancelTask",
        "GetTaskResult",
        "AnswerRequest",
        "ListTools",
    },
}


async def test_health_is_serving_for_the_server_and_each_service(clients: Clients) -> None:
    assert await clients.health_status("") == SERVING
    assert await clients.health_status(TASK_SERVICE) == SERVING
    assert await clients.health_status(BRIDGE_SERVICE) == SERVING
    error = await rpc_error(clients.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service")))
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def reflect(clients: Clients, *requests: reflection_pb2.ServerReflectionRequest) -> list[Any]:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(clients.channel)
    call = stub.ServerReflectionInfo(iter(requests))

    async def collect() -> list[Any]:
        return [response async for response in call]

    return await bounded(collect())


async def test_reflection_lists_every_service(clients: Clients) -> None:
    [listed] = await reflect(clients, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert {TASK_SERVICE, BRIDGE_SERVICE, "grpc.health.v1.Health"} <= names
    assert "grpc.reflection.v1alpha.ServerReflection" in names


@pytest.mark.parametrize("service", [TASK_SERVICE, BRIDGE_SERVICE])
async def test_reflection_describes_every_rpc_with_stream_where_it_waits(
    clients: Clients, service: str
) -> None:
    [response] = await reflect(
        clients, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    package, _, name = service.rpartition(".")
    [described] = [s for f in files if f.package == package for s in f.service if s.name == name]
    streaming = {m.name for m in described.method if m.server_streaming}
    unary = {m.name for m in described.method if not m.server_streaming}
    assert streaming == STREAMING[service]
    assert unary == UNARY[service]
    assert {m.name for m in described.method if m.client_streaming} == CLIENT_STREAMING[service]


async def test_a_second_server_on_a_port_in_use_fails_to_start(svc: RunningService) -> None:
    with pytest.raises(OSError, match="already in use"):
        async with running_service(port=svc.port):
            pass
    # The first one is untouched.
    clients = Clients(svc.target)
    try:
        assert await clients.health_status() == SERVING
    finally:
        await clients.close()


async def test_graceful_shutdown_ends_every_open_stream_with_unavailable(
    svc: RunningService, clients: Clients, worker_id: str, task_id: str
) -> None:
    elicit = clients.elicit(task_id)
    pending = (await elicit.next()).pending
    events = clients.events(task_id)
    await events.next()
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=task_id)))
    await watch.next()
    other = (await clients.create()).task_id
    work = Stream(clients.tasks.StreamAssignments(pb.StreamAssignmentsRequest(worker_id=worker_id)))
    assert (await work.next()).assignment.task.task_id in (task_id, other)
    health = Stream(clients.health.Watch(health_pb2.HealthCheckRequest(service="")))
    assert (await health.next()).status == SERVING
    assert len(svc.server.streams) == 4

    # A grace far longer than any bound here: stop must not wait for it.
    await bounded(svc.server.stop(grace=30))

    assert (await health.next()).status == NOT_SERVING
    for stream in (elicit, events, watch, work, health):
        error = await stream.error()
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (error.details() or "")
    # The wait was cut, not the request: it is still stored for the worker to re-attach to.
    stored = await svc.manager.get_task(task_id)
    assert stored.status.value == "input_required"
    assert [r.request_id for r in stored.pending_requests] == [pending.request_id]
    # And the server is gone.
    error = await rpc_error(clients.tasks.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=2))
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_graceful_shutdown_turns_health_not_serving_for_every_service(
    svc: RunningService, clients: Clients
) -> None:
    watches = {
        name: Stream(clients.health.Watch(health_pb2.HealthCheckRequest(service=name)))
        for name in ("", TASK_SERVICE, BRIDGE_SERVICE)
    }
    unknown = Stream(clients.health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service")))
    for watch in watches.values():
        assert (await watch.next()).status == SERVING
    assert (await unknown.next()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

    await bounded(svc.server.stop(grace=30))

    for watch in watches.values():
        assert (await watch.next()).status == NOT_SERVING
        assert (await watch.error()).code() is grpc.StatusCode.UNAVAILABLE
    # A watcher of an unknown service is not left hanging either.
    assert (await unknown.error()).code() is grpc.StatusCode.UNAVAILABLE
