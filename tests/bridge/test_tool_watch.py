"""McpBridge's tool list: one tool it cannot convert, or a failure of its watch, never freezes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from google.protobuf import struct_pb2
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice.bridge.server import McpBridge

pb = bridge_service_pb2
TIMEOUT = 5.0


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def good(name: str) -> task_pb2.ToolDefinition:
    return task_pb2.ToolDefinition(name=name, annotations=_struct({"readOnlyHint": True}))


# Declarations a service that checks them refuses; one that did not (an older one) hands them on.
BAD = [
    task_pb2.ToolDefinition(name="bad-annotations", annotations=_struct({"readOnlyHint": "maybe"})),
    task_pb2.ToolDefinition(name="bad-support", task_support=cast("task_pb2.TaskSupport", 7)),
    task_pb2.ToolDefinition(name="bad-schema", input_schema=_struct({"type": "object", "properties": 5})),
]


class _Service:
    """WatchTools streams what the test sends; each send returns once the bridge took it in (it
    asks for the next update). An exception sent ends the stream with it."""

    def __init__(self) -> None:
        self.updates: asyncio.Queue[pb.WatchToolsResponse | Exception] = asyncio.Queue()
        self.watches = 0
        self.asked = asyncio.Condition()
        self.waiting = 0  # times the bridge asked for an update

    async def ListTools(self, request: pb.ListToolsRequest, **_: Any) -> pb.ListToolsResponse:
        return pb.ListToolsResponse(tools=[good("good"), *BAD])

    def WatchTools(self, request: pb.WatchToolsRequest) -> AsyncIterator[pb.WatchToolsResponse]:
        self.watches += 1
        return self._stream()

    async def _stream(self) -> AsyncIterator[pb.WatchToolsResponse]:
        while True:
            async with self.asked:
                self.waiting += 1
                self.asked.notify_all()
            update = await self.updates.get()
            if isinstance(update, Exception):
                raise update
            yield update

    async def send(self, update: pb.WatchToolsResponse | Exception) -> None:
        async with self.asked:
            asked = self.waiting
        await self.updates.put(update)
        async with self.asked:
            await asyncio.wait_for(self.asked.wait_for(lambda: self.waiting > asked), TIMEOUT)


@pytest.fixture
def service() -> _Service:
    return _Service()


@pytest.fixture
async def bridge(service: _Service) -> AsyncIterator[McpBridge]:
    bridge = McpBridge(cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", service))
    try:
        yield bridge
    finally:
        await bridge.close()


async def listed(bridge: McpBridge) -> list[str]:
    return sorted(await bridge.tools())


async def test_a_tool_the_bridge_cannot_convert_is_left_out_and_the_rest_stays_current(
    bridge: McpBridge, service: _Service, caplog: pytest.LogCaptureFixture
) -> None:
    assert await listed(bridge) == ["good"]  # the cold path, before any watch: the same
    await bridge.start()
    await service.send(pb.WatchToolsResponse(tools=[good("good"), *BAD]))
    assert await listed(bridge) == ["good"]
    for bad in BAD:
        assert f"tool {bad.name!r} left out of tools/list" in caplog.text
    # The bad worker goes, another comes: the list follows.
    await service.send(pb.WatchToolsResponse(tools=[good("good"), good("later")]))
    assert await listed(bridge) == ["good", "later"]
    assert service.watches == 1


async def test_the_watch_starts_again_after_any_failure(bridge: McpBridge, service: _Service) -> None:
    await bridge.start()
    await service.send(pb.WatchToolsResponse(tools=[good("first")]))
    assert await listed(bridge) == ["first"]
    await service.send(RuntimeError("a bug in the stream"))
    assert service.watches == 2
    await service.send(pb.WatchToolsResponse(tools=[good("first"), good("second")]))
    assert await listed(bridge) == ["first", "second"]
