"""McpBridge._run_to_outcome: a task's requests go to the client while the bridge waits for its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

from google.protobuf import struct_pb2
from mcp.server.session import ServerSession
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice.bridge.server import McpBridge

pb = bridge_service_pb2


class _Events:
    """A StreamTaskEvents call: a request, then (once the test lets it) the task's end."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.end = asyncio.Event()
        self.closed = False

    def __aiter__(self) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        return self._events()

    async def _events(self) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        params = struct_pb2.Struct()
        params.update({"message": "Proceed?", "requestedSchema": {"type": "object", "properties": {}}})
        yield pb.StreamTaskEventsResponse(
            request=task_pb2.PendingRequest(
                task_id=self.task_id, request_id="r1", method="elicitation/create", params=params
            )
        )
        await self.end.wait()
        yield pb.StreamTaskEventsResponse(
            outcome=pb.TaskOutcome(
                task=task_pb2.Task(task_id=self.task_id, status=task_pb2.TASK_STATUS_CANCELLED)
            )
        )

    async def aclose(self) -> None:
        self.closed = True


class _Service:
    def __init__(self, events: _Events) -> None:
        self.events = events
        self.answers: list[pb.AnswerRequestRequest] = []

    def StreamTaskEvents(self, request: pb.StreamTaskEventsRequest) -> _Events:
        assert request.skip_changes  # the bridge's status notifications come from FollowTask
        return self.events

    async def AnswerRequest(self, request: pb.AnswerRequestRequest) -> pb.AnswerRequestResponse:
        self.answers.append(request)
        return pb.AnswerRequestResponse()


class _Session:
    """A client that never answers: its request is pending until it is cancelled."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.cancelled = False

    async def send_request(self, request: Any, result_type: Any, **_: Any) -> Any:
        self.asked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_task_that_ends_stops_forwarding_its_unanswered_request() -> None:
    events = _Events("t1")
    service = _Service(events)
    bridge = McpBridge(cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", service))
    session = _Session()
    try:
        waiting = asyncio.create_task(
            bridge._run_to_outcome(cast("ServerSession", session), "owner", "t1", request_id=1)
        )
        await asyncio.wait_for(session.asked.wait(), 5)
        events.end.set()  # the task ends (here: cancelled) while the client holds the question
        outcome = await asyncio.wait_for(waiting, 5)
        assert outcome.task.status == task_pb2.TASK_STATUS_CANCELLED
        assert session.cancelled  # the question is no longer waited for
        assert service.answers == []  # and nothing was answered in the client's name
        assert events.closed  # the stream was closed as the bridge left it
    finally:
        await bridge.close()
