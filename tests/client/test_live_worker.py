"""Worker and RemoteTaskContext edge cases against a real service: lost registrations, lone contexts."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from taskservice_client import RemoteTaskContext
from taskservice_client._client import ServiceClient
from taskservice_client._convert import dict_to_struct, task_from_proto
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2

from taskservice.domain.errors import LeaseNotHeld
from taskservice.domain.service import ServiceLimits
from taskservice.testing import RunningService, running_service

from .conftest import ELICIT_SCHEMA, FAST_RETRY, WAIT, Bridge, make_worker, running

pb = task_service_pb2


async def test_worker_registers_again_when_the_service_forgot_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskservice_client")
    async with running_service(limits=ServiceLimits(lease_ttl_ms=600, sweep_interval_ms=100)) as svc:
        bridge = Bridge(svc.target)
        worker = make_worker(svc.target)

        @worker.tool()
        async def echo(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
            return str(arguments["v"])

        try:
            async with running(worker):
                _, first = await bridge.outcome(await bridge.create("echo", {"v": 1}))
                worker_id = worker.worker_id
                await svc.manager.unregister_worker(worker_id)  # behind the worker's back
                # Its next heartbeat is NOT_FOUND: it registers again (same id) and serves on.
                _, second = await bridge.outcome(await bridge.create("echo", {"v": 2}))
        finally:
            await bridge.close()
    assert first is not None
    assert second is not None
    assert (first["content"][0]["text"], second["content"][0]["text"]) == ("1", "2")
    assert worker.worker_id == worker_id
    assert any("registering again" in r.getMessage() for r in caplog.records)


@pytest.fixture
async def lone_task(service: RunningService, bridge: Bridge) -> AsyncIterator[tuple[ServiceClient, str]]:
    """A task of a tool whose worker never takes it, and a client to reach it without a Worker."""
    client = ServiceClient(service.target, retry=FAST_RETRY)
    definition = task_pb2.ToolDefinition(name="held", input_schema=dict_to_struct({"type": "object"}))
    await client.unary(
        client.tasks.RegisterWorker,
        pb.RegisterWorkerRequest(tools=[definition], max_concurrent_tasks=1),
        pb.RegisterWorkerResponse,
    )
    task_id = await bridge.create("held")
    try:
        yield client, task_id
    finally:
        await client.close()


async def lone_context(client: ServiceClient, task_id: str) -> RemoteTaskContext:
    response = await client.unary(
        client.tasks.GetTask, pb.GetTaskRequest(task_id=task_id), pb.GetTaskResponse
    )
    return RemoteTaskContext(task=task_from_proto(response.task), client=client)


async def test_a_context_without_worker_raises_the_cancellation(
    lone_task: tuple[ServiceClient, str], bridge: Bridge
) -> None:
    """No Worker, no watch: the Elicit stream's CANCELLED alone tells the context."""
    client, task_id = lone_task
    ctx = await lone_context(client, task_id)
    outcome: list[BaseException] = []

    async def ask() -> None:
        try:
            await ctx.elicit("?", ELICIT_SCHEMA)
        except anyio.get_cancelled_exc_class() as cancelled:
            outcome.append(cancelled)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            await bridge.next_request(task_id)
            await bridge.cancel(task_id)
    assert len(outcome) == 1
    assert ctx.is_cancelled
    assert ctx.task.status == "cancelled"

    # Asking on a task cancelled before: the same.
    with anyio.fail_after(WAIT), pytest.raises(anyio.get_cancelled_exc_class()):
        await ctx.elicit("again?", ELICIT_SCHEMA)


async def test_a_finished_task_refuses_changes(lone_task: tuple[ServiceClient, str]) -> None:
    client, task_id = lone_task
    ctx = await lone_context(client, task_id)
    await ctx.fail("gave up")
    assert (ctx.task.status, ctx.task.statusMessage) == ("failed", "gave up")
    await ctx.fail("gave up")  # the same terminal status again: accepted, as the SDK's stores do
    with pytest.raises(ValueError, match="failed"):
        await ctx.update_status("too late")


async def test_ctx_task_follows_changes_made_elsewhere(service: RunningService, bridge: Bridge) -> None:
    worker = make_worker(service.target)
    started = anyio.Event()
    seen: list[str | None] = []

    @worker.tool()
    async def follow(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        started.set()
        for _ in range(int(WAIT / 0.01)):  # bounded: the watch brings the change in moments
            if ctx.task.statusMessage == "set from elsewhere":
                break
            await anyio.sleep(0.01)
        seen.append(ctx.task.statusMessage)
        return "ok"

    async with running(worker):
        task_id = await bridge.create("follow")
        with anyio.fail_after(WAIT):
            await started.wait()
        await service.manager.update_status(task_id, "set from elsewhere")
        await bridge.outcome(task_id)
    assert seen == ["set from elsewhere"]


async def test_a_target_list_reaches_the_service(service: RunningService, bridge: Bridge) -> None:
    """`ipv4:HOST:PORT,HOST:PORT`: the first address is dead, the second is the service."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    worker = make_worker(f"ipv4:127.0.0.1:{dead},127.0.0.1:{service.port}")

    @worker.tool()
    async def echo(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        await ctx.update_status("reached")
        return "ok"

    async with running(worker):
        task, _ = await bridge.outcome(await bridge.create("echo"))
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert task.status_message == "reached"


async def test_a_refused_acknowledgement_stops_the_tool(
    service: RunningService, bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool still running after `watch_after` sends its AckAssignment; when the service refuses
    it (the task was cancelled or given to another worker meanwhile) the tool is stopped and
    nothing is stored for it."""
    started = anyio.Event()
    stopped = anyio.Event()
    outcomes: list[str] = []

    async def refuse(worker_id: str, task_id: str, lease_id: str) -> Any:
        await started.wait()  # the tool is running by then
        raise LeaseNotHeld(lease_id, "the task was given to another worker or handed back")

    def recorded(name: str) -> Any:
        method = getattr(service.manager, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            outcomes.append(name)
            return await method(*args, **kwargs)

        return call

    monkeypatch.setattr(service.manager, "ack", refuse)
    for name in ("complete", "fail"):
        monkeypatch.setattr(service.manager, name, recorded(name))
    worker = make_worker(service.target)

    @worker.tool()
    async def slow(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        started.set()
        try:
            await anyio.sleep_forever()  # only a stop ends it
        finally:
            stopped.set()
        return "too late"

    async with running(worker):
        task_id = await bridge.create("slow")
        with anyio.fail_after(WAIT):
            await stopped.wait()
    # The worker has stopped: whatever it was going to send for the task, it has sent.
    task = await bridge.task(task_id)
    assert outcomes == []
    assert task.status == task_pb2.TASK_STATUS_WORKING


async def test_only_a_tool_still_running_after_watch_after_is_acknowledged(
    service: RunningService, bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool done within `watch_after` completes its offered task with no AckAssignment (its
    Complete settles the offer); one still running then is acknowledged, and runs on as usual."""
    acked = service.manager.ack
    acknowledged: list[str] = []
    slow_acknowledged = anyio.Event()

    async def ack(worker_id: str, task_id: str, lease_id: str) -> Any:
        acknowledged.append(task_id)
        try:
            return await acked(worker_id, task_id, lease_id)
        finally:
            slow_acknowledged.set()

    monkeypatch.setattr(service.manager, "ack", ack)
    worker = make_worker(service.target, watch_after=2.0)

    @worker.tool()
    async def quick(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        await anyio.sleep(0.02)  # long enough for an acknowledgement sent at the start to land
        return "done"

    @worker.tool()
    async def slow(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        await slow_acknowledged.wait()
        return "acknowledged first"

    async with running(worker):
        quick_task, quick_result = await bridge.outcome(await bridge.create("quick"))
        slow_id = await bridge.create("slow")
        slow_task, slow_result = await bridge.outcome(slow_id)
    assert quick_task.status == slow_task.status == task_pb2.TASK_STATUS_COMPLETED
    assert quick_result is not None
    assert slow_result is not None
    assert quick_result["content"][0]["text"] == "done"
    assert slow_result["content"][0]["text"] == "acknowledged first"
    assert acknowledged == [slow_id]


def test_watch_after_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="watch_after must not be negative"):
        make_worker("127.0.0.1:1", watch_after=-0.1)
