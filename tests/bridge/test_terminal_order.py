"""The terminal status notification goes into the session's stream before the task's result.

McpBridge._follow lets a waiting tasks/result go on as soon as it starts sending the terminal
notification (see McpBridge._terminal_notified): these check that the result, sent into the same
kind of stream as mcp's sessions write to (an anyio memory object stream), still comes after it,
whether the stream's reader is waiting or not, and whichever of the two waited first.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from google.protobuf import timestamp_pb2
from mcp.server.session import ServerSession
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice.bridge.server import McpBridge

pb = bridge_service_pb2


def task(status: task_pb2.TaskStatus, at: int) -> task_pb2.Task:
    return task_pb2.Task(
        task_id="t1",
        status=status,
        created_at=timestamp_pb2.Timestamp(seconds=1),
        last_updated_at=timestamp_pb2.Timestamp(seconds=at),
        ttl_ms=60_000,
        poll_interval_ms=1_000,
    )


class _Service:
    """FollowTask: the task ends when the test says so."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    async def _follow(self) -> AsyncIterator[pb.FollowTaskResponse]:
        await self.ended.wait()
        yield pb.FollowTaskResponse(task=task(task_pb2.TASK_STATUS_COMPLETED, 3), notify=True)

    def FollowTask(self, request: pb.FollowTaskRequest) -> AsyncIterator[pb.FollowTaskResponse]:
        return self._follow()


class _Session:
    """Sends as mcp's BaseSession does: into an anyio memory object stream."""

    def __init__(self, stream: anyio.abc.ObjectSendStream[tuple[str, Any]]) -> None:
        self.stream = stream

    async def send_notification(self, notification: Any, **_: Any) -> None:
        await self.stream.send(("notification", notification.root.params.status))


@pytest.mark.parametrize("reader_waits", [True, False])
@pytest.mark.parametrize("result_waits_first", [True, False])
async def test_the_result_is_sent_after_the_terminal_notification(
    reader_waits: bool, result_waits_first: bool
) -> None:
    send, receive = anyio.create_memory_object_stream[tuple[str, Any]](0)
    session = _Session(send)
    service = _Service()
    bridge = McpBridge(cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", service))
    key = cast("ServerSession", session)
    notified = bridge._notifying.setdefault(key, {})["t1"] = asyncio.Event()
    received: list[tuple[str, Any]] = []
    both = anyio.Event()

    async def read() -> None:
        async with receive:
            async for item in receive:
                received.append(item)
                if len(received) == 2:
                    both.set()

    async def result() -> None:
        await bridge._terminal_notified(key, "t1")
        await send.send(("result", None))

    follower = functools.partial(
        bridge._follow,
        key,
        "owner",
        task(task_pb2.TASK_STATUS_WORKING, 2),
        None,
        None,
        notify_status=True,
        notified=notified,
    )
    try:
        async with anyio.create_task_group() as group:
            if reader_waits:
                group.start_soon(read)  # the stream's reader is there before anything is sent
            first, second = (result, follower) if result_waits_first else (follower, result)
            group.start_soon(first)
            await anyio.lowlevel.checkpoint()
            group.start_soon(second)
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            service.ended.set()
            if not reader_waits:
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()  # both senders wait for a reader by now
                group.start_soon(read)
            with anyio.fail_after(5):
                await both.wait()
            group.cancel_scope.cancel()
    finally:
        await bridge.close()
    assert received == [("notification", "completed"), ("result", None)]
