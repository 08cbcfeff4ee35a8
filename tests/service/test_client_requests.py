"""Elicitation and sampling over gRPC.

The worker's stream, the bridge's view, answers, re-attach, cancel during a wait, many waiters, deadlines.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.testing import RunningService

from .support import (
    ELICIT_ANSWER,
    ELICIT_SCHEMA,
    RELATED_TASK,
    SAMPLING_ANSWER,
    TOOL_RESULT,
    USER_MESSAGE,
    Clients,
    Stream,
    bounded,
    bpb,
    pb,
    to_dict,
    to_struct,
)

WORKING = task_pb2.TASK_STATUS_WORKING
INPUT_REQUIRED = task_pb2.TASK_STATUS_INPUT_REQUIRED
CANCELLED = task_pb2.TASK_STATUS_CANCELLED

WEATHER_TOOL: dict[str, Any] = {
    "name": "weather",
    "description": "the weather of a city",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One of the five ways a task asks the client something."""

    rpc: str
    method: str
    request: Callable[[str, str], Any]  # (task_id, request_id) -> the RPC's request message
    expected_params: dict[str, Any]  # params the bridge must see (besides _meta)
    answer: dict[str, Any]

    def call(
        self, clients: Clients, task_id: str, request_id: str = "", timeout: float | None = None
    ) -> Stream[Any]:
        return Stream(getattr(clients.tasks, self.rpc)(self.request(task_id, request_id), timeout=timeout))


KINDS = [
    Kind(
        rpc="Elicit",
        method="elicitation/create",
        request=lambda task_id, request_id: pb.ElicitRequest(
            task_id=task_id,
            message="Who are you?",
            requested_schema=to_struct(ELICIT_SCHEMA),
            request_id=request_id,
        ),
        expected_params={"mode": "form", "message": "Who are you?", "requestedSchema": ELICIT_SCHEMA},
        answer=ELICIT_ANSWER,
    ),
    Kind(
        rpc="ElicitUrl",
        method="elicitation/create",
        request=lambda task_id, request_id: pb.ElicitUrlRequest(
            task_id=task_id,
            message="Sign in, please",
            url="https://example.com/login",
            elicitation_id="login-1",
            request_id=request_id,
        ),
        expected_params={
            "mode": "url",
            "message": "Sign in, please",
            "url": "https://example.com/login",
            "elicitationId": "login-1",
        },
        answer={"action": "accept"},
    ),
    Kind(
        rpc="CreateMessage",
        method="sampling/createMessage",
        request=lambda task_id, request_id: pb.CreateMessageRequest(
            task_id=task_id,
            messages=[to_struct(USER_MESSAGE)],
            max_tokens=200,
            system_prompt="Be brief.",
            include_context="thisServer",
            temperature=0.5,
            stop_sequences=["STOP"],
            metadata=to_struct({"trace": "t-1"}),
            model_preferences=to_struct({"hints": [{"name": "claude"}], "speedPriority": 0.5}),
            tools=[to_struct(WEATHER_TOOL)],
            tool_choice=to_struct({"mode": "auto"}),
            request_id=request_id,
        ),
        expected_params={
            "messages": [USER_MESSAGE],
            "maxTokens": 200,
            "systemPrompt": "Be brief.",
            "includeContext": "thisServer",
            "temperature": 0.5,
            "stopSequences": ["STOP"],
            "metadata": {"trace": "t-1"},
            "modelPreferences": {"hints": [{"name": "claude"}], "speedPriority": 0.5},
            "tools": [WEATHER_TOOL],
            "toolChoice": {"mode": "auto"},
        },
        answer={
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call-1", "name": "weather", "input": {"city": "Oslo"}}],
            "model": "test-model",
            "stopReason": "toolUse",
        },
    ),
    Kind(
        rpc="ElicitAsTask",
        method="elicitation/create",
        request=lambda task_id, request_id: pb.ElicitAsTaskRequest(
            task_id=task_id,
            message="Who are you?",
            requested_schema=to_struct(ELICIT_SCHEMA),
            ttl_ms=5_000,
            request_id=request_id,
        ),
        expected_params={
            "mode": "form",
            "message": "Who are you?",
            "requestedSchema": ELICIT_SCHEMA,
            "task": {"ttl": 5_000},
        },
        answer=ELICIT_ANSWER,
    ),
    Kind(
        rpc="CreateMessageAsTask",
        method="sampling/createMessage",
        request=lambda task_id, request_id: pb.CreateMessageAsTaskRequest(
            task_id=task_id, messages=[to_struct(USER_MESSAGE)], max_tokens=50, request_id=request_id
        ),
        expected_params={"messages": [USER_MESSAGE], "maxTokens": 50, "task": {"ttl": 60_000}},
        answer=SAMPLING_ANSWER,
    ),
]


def without_meta(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "_meta"}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.rpc)
async def test_request_flows_from_worker_to_bridge_and_the_answer_back(
    clients: Clients, task_id: str, kind: Kind
) -> None:
    stream = kind.call(clients, task_id)
    first = await stream.next()
    assert first.WhichOneof("event") == "pending"
    assert first.task.status == INPUT_REQUIRED
    pending = first.pending
    assert (pending.task_id, pending.method, pending.sequence) == (task_id, kind.method, 1)
    params = to_dict(pending.params)
    assert params["_meta"][RELATED_TASK] == {"taskId": task_id}
    assert without_meta(params) == kind.expected_params
    assert (await clients.get(task_id)).status == INPUT_REQUIRED

    taken = await clients.next_request(task_id)
    assert taken == pending

    answered = await clients.answer(task_id, pending.request_id, kind.answer)
    assert answered.status == WORKING
    [last] = await stream.rest()
    assert last.WhichOneof("event") == "result"
    assert to_dict(last.result) == kind.answer
    assert last.task.status == WORKING
    assert (await clients.get(task_id)).status == WORKING


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.rpc)
async def test_an_mcp_error_answer_ends_the_stream_with_the_error_event(
    clients: Clients, task_id: str, kind: Kind
) -> None:
    stream = kind.call(clients, task_id)
    pending = (await stream.next()).pending
    error = task_pb2.McpError(code=-32601, message="not supported by this client")
    error.data.string_value = "no elicitation capability"
    answered = await clients.answer(task_id, pending.request_id, error=error)
    assert answered.status == WORKING
    [last] = await stream.rest()
    assert last.WhichOneof("event") == "error"
    assert last.error == error
    assert last.task.status == WORKING


async def test_elicit_as_task_without_ttl_asks_for_the_default_60_s(clients: Clients, task_id: str) -> None:
    stream = Stream(
        clients.tasks.ElicitAsTask(
            pb.ElicitAsTaskRequest(task_id=task_id, message="?", requested_schema=to_struct(ELICIT_SCHEMA))
        )
    )
    pending = (await stream.next()).pending
    assert to_dict(pending.params)["task"] == {"ttl": 60_000}
    stream.cancel()


async def test_requests_of_a_task_are_numbered_and_delivered_in_order(clients: Clients, task_id: str) -> None:
    first = clients.elicit(task_id)
    one = (await first.next()).pending
    second = KINDS[2].call(clients, task_id)
    two = (await second.next()).pending
    assert (one.sequence, two.sequence) == (1, 2)
    events = clients.events(task_id)
    seen = [await events.next() for _ in range(3)]
    assert [e.WhichOneof("event") for e in seen] == ["task", "request", "request"]
    assert [e.request.request_id for e in seen[1:]] == [one.request_id, two.request_id]
    # Answering one of two leaves the task input_required; the second answer makes it working.
    assert (await clients.answer(task_id, two.request_id, KINDS[2].answer)).status == INPUT_REQUIRED
    assert (await clients.answer(task_id, one.request_id)).status == WORKING
    assert (await first.rest())[0].task.status == WORKING
    await second.rest()
    events.cancel()


async def test_events_with_skip_changes_carry_only_the_requests_and_the_outcome(
    clients: Clients, task_id: str
) -> None:
    asking = clients.elicit(task_id)
    asked = (await asking.next()).pending
    request = bpb.StreamTaskEventsRequest(owner=clients.owner, task_id=task_id, skip_changes=True)
    events = Stream(clients.bridge.StreamTaskEvents(request))
    first = await events.next()
    assert first.WhichOneof("event") == "request"  # no `task` event first
    assert first.request.request_id == asked.request_id
    assert (await clients.answer(task_id, asked.request_id)).status == WORKING
    await asking.rest()
    await clients.complete(task_id, {"content": []})
    rest = await events.rest()
    assert [e.WhichOneof("event") for e in rest] == ["outcome"]
    assert rest[0].outcome.task.status == task_pb2.TASK_STATUS_COMPLETED


# ------------------------------------------------------------------------ re-attach


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.rpc)
async def test_reattach_after_the_stream_was_cut_gets_the_answer_given_meanwhile(
    clients: Clients, svc: RunningService, task_id: str, kind: Kind
) -> None:
    stream = kind.call(clients, task_id)
    pending = (await stream.next()).pending
    stream.cancel()
    assert (await bounded(stream.call.code())) is grpc.StatusCode.CANCELLED

    taken = await clients.next_request(task_id)
    assert taken.request_id == pending.request_id
    await clients.answer(task_id, pending.request_id, kind.answer)

    again = kind.call(clients, task_id, request_id=pending.request_id)
    events = await again.rest()
    assert [e.WhichOneof("event") for e in events] == ["pending", "result"]
    assert events[0].pending == pending
    assert to_dict(events[1].result) == kind.answer
    assert events[1].task.status == WORKING
    # Asked once: one request stored, answered, and nothing left for the bridge.
    stored = await svc.manager.get_task(task_id)
    assert [r.request_id for r in stored.requests] == [pending.request_id]
    assert stored.pending_requests == ()


async def test_reattach_needs_only_the_task_and_request_ids(clients: Clients, task_id: str) -> None:
    stream = clients.elicit(task_id)
    pending = (await stream.next()).pending
    stream.cancel()
    await clients.answer(task_id, pending.request_id)
    again = Stream(clients.tasks.Elicit(pb.ElicitRequest(task_id=task_id, request_id=pending.request_id)))
    events = await again.rest()
    assert [e.WhichOneof("event") for e in events] == ["pending", "result"]
    assert events[0].pending == pending
    assert to_dict(events[1].result) == ELICIT_ANSWER


async def test_reattach_while_still_pending_then_answer(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    stream = clients.elicit(task_id)
    pending = (await stream.next()).pending
    stream.cancel()

    again = clients.elicit(task_id, request_id=pending.request_id)
    reported = await again.next()
    assert reported.pending == pending
    assert reported.task.status == INPUT_REQUIRED
    # The bridge sees the one request, not a second copy.
    events = clients.events(task_id)
    assert (await events.next()).WhichOneof("event") == "task"
    assert (await events.next()).request == pending
    await clients.answer(task_id, pending.request_id)
    nxt = await events.next()
    assert nxt.WhichOneof("event") == "task"
    assert nxt.task.status == WORKING
    events.cancel()

    [last] = await again.rest()
    assert to_dict(last.result) == ELICIT_ANSWER
    assert len((await svc.manager.get_task(task_id)).requests) == 1


async def test_reattach_with_a_worker_chosen_request_id_is_idempotent(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    first = clients.elicit(task_id, request_id="ask-name-1")
    second = clients.elicit(task_id, request_id="ask-name-1")
    one, two = await first.next(), await second.next()
    assert one.pending.request_id == two.pending.request_id == "ask-name-1"
    await clients.answer(task_id, "ask-name-1")
    # Both waiters on the one request get the answer.
    assert to_dict((await first.rest())[0].result) == ELICIT_ANSWER
    assert to_dict((await second.rest())[0].result) == ELICIT_ANSWER
    assert len((await svc.manager.get_task(task_id)).requests) == 1


async def test_reattach_to_a_request_of_another_method_is_invalid_argument(
    clients: Clients, task_id: str
) -> None:
    stream = clients.elicit(task_id, request_id="r-1")
    await stream.next()
    sampling = KINDS[2].call(clients, task_id, request_id="r-1")
    error = await sampling.error()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    stream.cancel()


# ---------------------------------------------------------------- cancel during a wait


async def test_cancel_during_a_wait_ends_the_stream_with_cancelled(clients: Clients, task_id: str) -> None:
    stream = clients.elicit(task_id)
    await stream.next()
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=task_id)))
    assert (await watch.next()).task.status == INPUT_REQUIRED

    cancelled = await clients.cancel(task_id, "the user closed the dialog")
    assert cancelled.status == CANCELLED

    error = await stream.error()
    assert error.code() is grpc.StatusCode.CANCELLED
    assert task_id in (error.details() or "")
    # WatchTask sees the cancellation as its last state, then ends by itself.
    rest = await watch.rest()
    assert rest[-1].task.status == CANCELLED
    assert rest[-1].task.status_message == "the user closed the dialog"
    assert await clients.get(task_id) == cancelled


async def test_asking_on_a_cancelled_task_is_cancelled_and_stores_nothing(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    await clients.cancel(task_id)
    error = await clients.elicit(task_id).error()
    assert error.code() is grpc.StatusCode.CANCELLED
    assert (await svc.manager.get_task(task_id)).requests == ()


async def test_reattach_after_cancel_ends_with_cancelled(clients: Clients, task_id: str) -> None:
    stream = clients.elicit(task_id)
    pending = (await stream.next()).pending
    stream.cancel()
    await clients.cancel(task_id)
    again = clients.elicit(task_id, request_id=pending.request_id)
    error = await again.error()
    assert error.code() is grpc.StatusCode.CANCELLED


# ---------------------------------------------------------------------- many waiters


async def test_every_waiter_gets_the_outcome(clients: Clients, task_id: str) -> None:
    first, second = clients.events(task_id), clients.events(task_id)
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=task_id)))
    for stream in (first, second):
        assert (await stream.next()).task.status == WORKING
    assert (await watch.next()).task.status == WORKING

    done = await clients.complete(task_id)

    for stream in (first, second):
        events = await stream.rest()
        assert events[-1].WhichOneof("event") == "outcome"
        assert events[-1].outcome.task == done
        assert to_dict(events[-1].outcome.result) == TOOL_RESULT
    watched = await watch.rest()
    assert watched[-1].task == done


async def test_every_bridge_view_gets_the_request_and_the_status_changes(
    clients: Clients, task_id: str
) -> None:
    views = [clients.events(task_id) for _ in range(3)]
    for view in views:
        assert (await view.next()).task.status == WORKING
    stream = clients.elicit(task_id)
    pending = (await stream.next()).pending
    for view in views:
        kinds = [await view.next() for _ in range(2)]
        assert kinds[0].task.status == INPUT_REQUIRED
        assert kinds[1].request == pending
    await clients.answer(task_id, pending.request_id)
    for view in views:
        assert (await view.next()).task.status == WORKING
        view.cancel()
    await stream.rest()


async def test_watch_task_reports_each_change_and_ends_after_a_terminal_status(
    clients: Clients, task_id: str
) -> None:
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=task_id)))
    assert (await watch.next()).task.status == WORKING
    await clients.tasks.UpdateStatus(pb.UpdateStatusRequest(task_id=task_id, status_message="step 1"))
    assert (await watch.next()).task.status_message == "step 1"
    await clients.fail(task_id, "boom")
    rest = await watch.rest()
    assert [(e.task.status, e.task.status_message) for e in rest] == [(task_pb2.TASK_STATUS_FAILED, "boom")]


async def test_watch_of_an_unknown_task_is_not_found(clients: Clients) -> None:
    error = await Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id="ghost"))).error()
    assert error.code() is grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------------- deadlines


async def test_a_deadline_ends_the_wait_and_the_request_stays_answerable(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    stream = clients.elicit(task_id, timeout=0.3)
    pending = (await stream.next()).pending
    error = await stream.error()
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    stored = await svc.manager.get_task(task_id)
    assert [r.request_id for r in stored.pending_requests] == [pending.request_id]
    assert (await clients.get(task_id)).status == INPUT_REQUIRED
    assert (await clients.next_request(task_id)) == pending

    await clients.answer(task_id, pending.request_id)
    events = await clients.elicit(task_id, request_id=pending.request_id).rest()
    assert to_dict(events[-1].result) == ELICIT_ANSWER


async def test_a_deadline_on_watch_task_ends_it_with_deadline_exceeded(
    clients: Clients, task_id: str
) -> None:
    watch = Stream(clients.tasks.WatchTask(pb.WatchTaskRequest(task_id=task_id), timeout=0.3))
    assert (await watch.next()).task.status == WORKING
    assert (await watch.error()).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # The server is fine afterwards.
    assert (await clients.get(task_id)).status == WORKING


async def test_the_server_forgets_a_waiter_whose_client_went_away(
    clients: Clients, svc: RunningService, task_id: str
) -> None:
    streams = [clients.elicit(task_id, request_id="same") for _ in range(5)]
    for stream in streams:
        await stream.next()
    assert len(svc.server.streams) == 5
    for stream in streams:
        stream.cancel()

    async def drained() -> None:
        while len(svc.server.streams):  # noqa: ASYNC110 (the registry has no event to wait on; bounded)
            await asyncio.sleep(0.01)

    await bounded(drained())
