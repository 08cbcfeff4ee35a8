"""McpBridge._run_to_outcome: a task's requests go to the client while the bridge waits for its end,
and a request the task no longer waits for is called off at the client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import grpc
import pytest
from google.protobuf import struct_pb2
from mcp import types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from taskservice_client._convert import struct_to_dict
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice.bridge.server import AnyResult, McpBridge
from taskservice.grpc_api.local import rpc_error as local_rpc_error

pb = bridge_service_pb2
TIMEOUT = 5.0
TASK_ID = "t1"
TOOLS_CALL_ID = 7  # the client's tasks/result the forwarded requests relate to


def _question(request_id: str, *, as_task: bool = False) -> pb.StreamTaskEventsResponse:
    params = struct_pb2.Struct()
    params.update({"message": "Proceed?", "requestedSchema": {"type": "object", "properties": {}}})
    if as_task:
        params.update({"task": {"ttl": 60_000}})
    return pb.StreamTaskEventsResponse(
        request=task_pb2.PendingRequest(
            task_id=TASK_ID, request_id=request_id, method="elicitation/create", params=params
        )
    )


def _withdrawn(request_id: str) -> pb.StreamTaskEventsResponse:
    return pb.StreamTaskEventsResponse(
        withdrawn=task_pb2.PendingRequest(task_id=TASK_ID, request_id=request_id, method="elicitation/create")
    )


def _outcome() -> pb.StreamTaskEventsResponse:
    return pb.StreamTaskEventsResponse(
        outcome=pb.TaskOutcome(task=task_pb2.Task(task_id=TASK_ID, status=task_pb2.TASK_STATUS_CANCELLED))
    )


class _Events:
    """A StreamTaskEvents call: each step's events once the test lets that step go."""

    def __init__(self, *steps: list[pb.StreamTaskEventsResponse]) -> None:
        self.steps = steps
        self.go = [asyncio.Event() for _ in steps]
        self.go[0].set()
        self.closed = False

    def __aiter__(self) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        return self._events()

    async def _events(self) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        for step, go in zip(self.steps, self.go, strict=True):
            await go.wait()
            for event in step:
                yield event

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
    """A client that never answers a question by itself: each is pending until it is called off.
    A task-augmented question gets a client task at once, whose `tasks/get` never returns. Ids
    count as mcp's BaseSession counts them, which keeps the requests it waits for in
    `_response_streams`."""

    def __init__(self) -> None:
        self._request_id = 0
        self._response_streams: dict[int, None] = {}
        self.asked: list[tuple[int, types.ServerRequest]] = []
        self.asking = asyncio.Event()
        self.pending_cancelled: list[int] = []
        self.notifications: list[tuple[types.ServerNotification, types.RequestId | None]] = []
        self.routers: list[Any] = []

    async def send_request(self, request: types.ServerRequest, result_type: Any, **_: Any) -> Any:
        request_id = self._request_id
        self._request_id += 1
        self.asked.append((request_id, request))
        self.asking.set()
        if isinstance(request.root, types.CancelTaskRequest):
            now = datetime.now(UTC)
            task_id = request.root.params.taskId
            return types.CancelTaskResult(
                taskId=task_id, status="cancelled", createdAt=now, lastUpdatedAt=now, ttl=None
            )
        if isinstance(request.root, types.ElicitRequest) and request.root.params.task is not None:
            now = datetime.now(UTC)
            task = types.Task(
                taskId=f"client-{request_id}", status="working", createdAt=now, lastUpdatedAt=now, ttl=None
            )
            return types.CreateTaskResult(task=task)
        self._response_streams[request_id] = None
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.pending_cancelled.append(request_id)
            raise
        finally:
            del self._response_streams[request_id]

    async def send_notification(
        self, notification: types.ServerNotification, related_request_id: types.RequestId | None = None
    ) -> None:
        self.notifications.append((notification, related_request_id))

    async def until_asked(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(self.asked) < count:
                self.asking.clear()
                await self.asking.wait()

    def add_response_router(self, router: Any) -> None:
        self.routers.append(router)

    def called_off(self) -> list[tuple[types.RequestId | None, types.RequestId | None]]:
        """The request ids of the `notifications/cancelled` sent, with the request each relates to."""
        return [
            (n.root.params.requestId, related)
            for n, related in self.notifications
            if isinstance(n.root, types.CancelledNotification)
        ]


@contextlib.asynccontextmanager
async def _following(
    *steps: list[pb.StreamTaskEventsResponse], first_id: int = 0
) -> AsyncIterator[tuple[_Events, _Service, _Session, asyncio.Task[pb.TaskOutcome]]]:
    """A bridge's `tasks/result` following a task whose events come in `steps` (the first at once,
    each next one once the test sets its `go`), for a session whose next request id is `first_id`."""
    events = _Events(*steps)
    service = _Service(events)
    bridge = McpBridge(cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", service))
    session = _Session()
    session._request_id = first_id
    try:
        waiting = asyncio.create_task(
            bridge._run_to_outcome(cast("ServerSession", session), "owner", TASK_ID, request_id=TOOLS_CALL_ID)
        )
        yield events, service, session, waiting
    finally:
        await bridge.close()


async def test_a_task_that_ends_calls_off_its_unanswered_request() -> None:
    steps = ([_question("r1")], [_outcome()])
    async with _following(*steps, first_id=41) as (events, service, session, waiting):
        await session.until_asked(1)
        events.go[1].set()  # the task ends (here: cancelled) while the client holds the question
        outcome = await asyncio.wait_for(waiting, TIMEOUT)
    assert outcome.task.status == task_pb2.TASK_STATUS_CANCELLED
    assert session.pending_cancelled == [41]  # the question is no longer waited for
    assert session.called_off() == [(41, TOOLS_CALL_ID)]  # and the client is told so
    assert service.answers == []  # nothing was answered in the client's name
    assert events.closed  # the stream was closed as the bridge left it
    # The client's late answer to it (mcp's client answers a cancelled request) is dropped
    # by the bridge's router, and so is any response to a request the session does not wait for;
    # the answers to the requests it waits for go their usual way.
    [router] = session.routers
    cancelled = types.ErrorData(code=0, message="Request cancelled")
    assert router.route_error(41, cancelled)
    assert router.route_error(41, cancelled)
    assert router.route_response(40, {})
    session._response_streams[42] = None
    assert not router.route_response(42, {})
    assert not router.route_error(42, cancelled)


async def test_a_withdrawn_request_is_called_off_and_the_next_one_forwarded() -> None:
    """The worker lost the task while the client held its question; the re-run asks again."""
    steps = ([_question("r1")], [_withdrawn("r1"), _question("r2")], [_outcome()])
    async with _following(*steps) as (events, service, session, waiting):
        await session.until_asked(1)
        events.go[1].set()
        await session.until_asked(2)
        assert session.pending_cancelled == [0]
        assert session.called_off() == [(0, TOOLS_CALL_ID)]
        assert not waiting.done()  # the task goes on, with the new question at the client
        events.go[2].set()
        await asyncio.wait_for(waiting, TIMEOUT)
    assert session.pending_cancelled == [0, 1]
    assert session.called_off() == [(0, TOOLS_CALL_ID), (1, TOOLS_CALL_ID)]
    assert len(session.routers) == 1  # one router per session
    assert service.answers == []


async def test_a_withdrawal_of_a_request_never_forwarded_changes_nothing() -> None:
    steps = ([_withdrawn("elsewhere"), _question("r1")], [_outcome()])
    async with _following(*steps) as (events, _, session, waiting):
        await session.until_asked(1)
        assert session.called_off() == []
        events.go[1].set()
        await asyncio.wait_for(waiting, TIMEOUT)
    assert session.called_off() == [(0, TOOLS_CALL_ID)]


async def test_a_withdrawn_request_the_client_runs_as_a_task_gets_its_task_cancelled() -> None:
    """Once the client made a task of the request, `tasks/cancel` calls that task off (the spec's
    way); the `tasks/get` the bridge had in flight is called off too, and its late answer dropped."""
    steps = ([_question("r1", as_task=True)], [_withdrawn("r1")], [_outcome()])
    async with _following(*steps) as (events, service, session, waiting):
        await session.until_asked(2)  # the question, then a tasks/get of the client's task
        polling = session.asked[1][1].root
        assert isinstance(polling, types.GetTaskRequest)
        assert polling.params.taskId == "client-0"
        events.go[1].set()
        await session.until_asked(3)
        cancel = session.asked[2][1].root
        assert isinstance(cancel, types.CancelTaskRequest)
        assert cancel.params.taskId == "client-0"
        assert session.called_off() == [(1, TOOLS_CALL_ID)]
        events.go[2].set()
        await asyncio.wait_for(waiting, TIMEOUT)
    assert len(session.asked) == 3  # nothing more to call off at the end
    assert session.pending_cancelled == [1]
    [router] = session.routers
    assert router.route_response(1, {})
    assert service.answers == []


# ------------------------------------------- re-attaching, answering again, stopping


class _Answering(_Session):
    """A client that answers each question at once."""

    async def send_request(self, request: types.ServerRequest, result_type: Any, **_: Any) -> Any:
        self._request_id += 1
        self.asked.append((self._request_id - 1, request))
        self.asking.set()
        return AnyResult.model_validate(ANSWER)


ANSWER = {"action": "accept", "content": {"ok": True}}


class _Restarting:
    """A service whose StreamTaskEvents breaks with UNAVAILABLE after its first events, and whose
    AnswerRequest is refused with UNAVAILABLE `refusals` times before it is stored: it restarted."""

    def __init__(self, *streams: list[pb.StreamTaskEventsResponse], refusals: int = 0) -> None:
        self.streams = list(streams)
        self.opened: list[pb.StreamTaskEventsRequest] = []
        self.refusals = refusals
        self.answers: list[pb.AnswerRequestRequest] = []
        self.stored = asyncio.Event()
        self.reopened = asyncio.Event()
        self.end = asyncio.Event()

    def StreamTaskEvents(
        self, request: pb.StreamTaskEventsRequest
    ) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        self.opened.append(request)
        if len(self.opened) == 2:
            self.reopened.set()
        return self._events(self.streams.pop(0), last=not self.streams)

    async def _events(
        self, events: list[pb.StreamTaskEventsResponse], *, last: bool
    ) -> AsyncIterator[pb.StreamTaskEventsResponse]:
        for event in events:
            yield event
        if not last:
            raise local_rpc_error(grpc.StatusCode.UNAVAILABLE, "the service is shutting down; reconnect")
        await self.end.wait()
        yield _outcome()

    async def AnswerRequest(self, request: pb.AnswerRequestRequest) -> pb.AnswerRequestResponse:
        self.answers.append(request)
        if len(self.answers) <= self.refusals:
            raise local_rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
        self.stored.set()
        return pb.AnswerRequestResponse()


@contextlib.asynccontextmanager
async def _waiting_on(
    service: _Restarting, session: _Session
) -> AsyncIterator[tuple[McpBridge, asyncio.Task[pb.TaskOutcome]]]:
    bridge = McpBridge(cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", service))
    try:
        waiting = asyncio.create_task(
            bridge._run_to_outcome(cast("ServerSession", session), "owner", TASK_ID, request_id=TOOLS_CALL_ID)
        )
        yield bridge, waiting
    finally:
        await bridge.close()


async def test_a_broken_stream_is_opened_again_and_the_question_the_client_has_is_not_put_twice() -> None:
    service = _Restarting([_question("r1")], [_question("r1")])  # delivered again after the break
    session = _Session()
    async with _waiting_on(service, session) as (_, waiting):
        await session.until_asked(1)
        await asyncio.wait_for(service.reopened.wait(), TIMEOUT)
        service.end.set()
        outcome = await asyncio.wait_for(waiting, TIMEOUT)
    assert outcome.task.status == task_pb2.TASK_STATUS_CANCELLED
    assert len(session.asked) == 1
    first, second = service.opened
    assert second.view_id == first.view_id  # the same view: its own answers are not withdrawn from it
    # ... naming the question the client holds: one withdrawn during the break is reported so.
    assert (list(first.delivered_request_ids), list(second.delivered_request_ids)) == ([], ["r1"])


async def test_an_answer_the_service_could_not_take_is_stored_once_it_is_back() -> None:
    service = _Restarting([_question("r1")], refusals=2)
    async with _waiting_on(service, _Answering()) as (_, waiting):
        await asyncio.wait_for(service.stored.wait(), TIMEOUT)
        service.end.set()
        await asyncio.wait_for(waiting, TIMEOUT)
    assert len(service.answers) == 3
    assert {struct_to_dict(a.result)["content"]["ok"] for a in service.answers} == {True}


async def test_stop_waiting_answers_call_again_and_calls_off_the_question_the_client_holds() -> None:
    service = _Restarting([_question("r1")])
    session = _Session()
    async with _waiting_on(service, session) as (bridge, waiting):
        await session.until_asked(1)
        bridge.stop_waiting()
        with pytest.raises(McpError) as caught:
            await asyncio.wait_for(waiting, TIMEOUT)
    assert caught.value.error.code == types.INTERNAL_ERROR
    assert "shutting down; call tasks/result again" in caught.value.error.message
    assert session.called_off() == [(0, TOOLS_CALL_ID)]
    assert service.answers == []
    # A wait that begins once the bridge is stopping ends at once, the same way.
    with pytest.raises(McpError, match="shutting down"):
        await bridge._run_to_outcome(cast("ServerSession", session), "owner", TASK_ID, request_id=8)


async def test_a_stopping_bridge_stops_opening_a_broken_stream_again() -> None:
    service = _Restarting(*([] for _ in range(100)))  # each stream breaks at once: a service down
    async with _waiting_on(service, _Session()) as (bridge, waiting):
        await asyncio.wait_for(service.reopened.wait(), TIMEOUT)  # broken once, opened again
        bridge.stop_waiting()
        # The retries end with the wait (its task is done: nothing opens the stream again).
        with pytest.raises(McpError, match="shutting down"):
            await asyncio.wait_for(waiting, TIMEOUT)
