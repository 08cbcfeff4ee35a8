"""The README's grpcurl sessions, replayed command by command with the real grpcurl binary.

The blocks marked `<!-- test: grpcurl-walkthrough -->` in README.md ("Try it with
grpcurl" and "Write a worker in any language") run in order in one bash session
(`set -euo pipefail`) against `taskservice serve` started with the README's flags,
with only the address 127.0.0.1:50051 replaced by the test service's. A command that
breaks fails the test; so does an output that differs from the README's
`<!-- test: expected-output -->` block after it (ids and times aside).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from taskservice_client._proto.mcptasks.v1 import task_service_pb2

from .walkthrough import Session, Step, json_documents, marked_blocks, missing_line, run, walkthrough

SESSION_TIMEOUT = 60.0

SERVICES = (
    "mcptasks.v1.TaskService",
    "mcptasks.v1.BridgeService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
)
# The TaskService RPCs that wait, so `describe` must show them returning a stream.
STREAMING = (
    "Elicit",
    "ElicitUrl",
    "CreateMessage",
    "ElicitAsTask",
    "CreateMessageAsTask",
    "WatchTask",
    "StreamAssignments",
)
# What the walk-through must do, so that dropping a marker cannot quietly drop a step.
COVERED = (
    " list",
    "describe mcptasks.v1.TaskService",
    "grpc.health.v1.Health/Check",
    "TaskService/RegisterWorker",
    "BridgeService/CreateTask",
    "TaskService/StreamAssignments",
    "TaskService/AckAssignment",
    "TaskService/Heartbeat",
    "TaskService/UpdateStatus",
    "TaskService/Elicit",
    "BridgeService/StreamTaskEvents",
    "BridgeService/AnswerRequest",
    "TaskService/Complete",
    "BridgeService/GetTaskResult",
    "BridgeService/CancelTask",
    "TaskService/GetTask",
    "TaskService/UnregisterWorker",
)

TASK_SERVICE = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]


@pytest.fixture(scope="module")
def session(
    readme_text: str, grpcurl_bin: Path, readme_service: str, tmp_path_factory: pytest.TempPathFactory
) -> Session:
    steps = walkthrough(marked_blocks(readme_text))
    commands = "".join(step.text for step in steps)
    left_out = [needle.strip() for needle in COVERED if needle not in commands]
    assert not left_out, f"the README walk-through no longer runs: {left_out}"
    env = {**os.environ, "PATH": f"{grpcurl_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = run(steps, readme_service, tmp_path_factory.mktemp("walkthrough"), env, SESSION_TIMEOUT)
    if (why := ran.failure()) is not None:
        pytest.fail(why, pytrace=False)
    return ran


def documents(step: Step) -> list[dict[str, Any]]:
    return json_documents(step.output)


def test_every_output_is_as_the_readme_shows(session: Session) -> None:
    problems = []
    for step in session.steps:
        expected = step.block.expected
        if expected is None:
            continue
        line = missing_line(expected.text, step.output)
        if line is not None:
            problems.append(
                f"{expected.where()} shows {line.strip()!r}, which the commands at {step.block.where()}"
                f" did not print (in that order); they printed:\n{step.output}"
            )
    assert not problems, "\n\n".join(problems)


def test_list_shows_the_services(session: Session) -> None:
    listed = session.step("grpcurl -plaintext 127.0.0.1:50051 list").output.split()
    assert set(SERVICES) <= set(listed), listed


def test_describe_shows_every_rpc_with_stream_where_it_waits(session: Session) -> None:
    described = session.step("describe mcptasks.v1.TaskService").output
    assert {m.name for m in TASK_SERVICE.methods if m.server_streaming} >= set(STREAMING)
    for method in TASK_SERVICE.methods:
        stream_in = "stream " if method.client_streaming else ""
        stream = "stream " if method.server_streaming else ""
        line = (
            f"rpc {method.name} ( {stream_in}.{method.input_type.full_name} )"
            f" returns ( {stream}.{method.output_type.full_name} );"
        )
        assert line in described, f"{line!r} is missing from:\n{described}"
    for name in STREAMING:
        assert f"returns ( stream .mcptasks.v1.{name}Response )" in described


def test_health_is_serving(session: Session) -> None:
    assert documents(session.step("grpc.health.v1.Health/Check")) == [{"status": "SERVING"}]


def test_the_task_ends_completed_with_its_result(session: Session) -> None:
    completed, outcome = documents(session.step("BridgeService/GetTaskResult"))
    assert completed["task"]["status"] == "TASK_STATUS_COMPLETED"
    assert outcome["task"]["status"] == "TASK_STATUS_COMPLETED"
    assert outcome["task"]["tool_name"] == "greet"
    assert outcome["result"]["content"] == [{"type": "text", "text": "Good morning, Ada!"}]


def test_the_bridge_sees_the_pending_elicitation(session: Session) -> None:
    events = documents(session.step("BridgeService/StreamTaskEvents"))
    kinds = [next(iter(event)) for event in events]
    assert "request" in kinds, events
    assert events[kinds.index("request") - 1]["task"]["status"] == "TASK_STATUS_INPUT_REQUIRED"
    request = events[kinds.index("request")]["request"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "How should I greet Ada?"


def test_elicit_reports_the_pending_request_then_ends_with_the_answer(session: Session) -> None:
    events = documents(session.step("wait $ELICIT_PID", "cat elicit.out"))
    # The step prints AnswerRequest's answer first, then the Elicit stream.
    elicit = [event for event in events if "pending" in event or "result" in event]
    assert [next(k for k in ("pending", "result") if k in e) for e in elicit] == ["pending", "result"]
    pending, answer = elicit
    assert pending["task"]["status"] == "TASK_STATUS_INPUT_REQUIRED"
    assert answer["result"] == {"action": "accept", "content": {"greeting": "Good morning"}}
    assert answer["task"]["status"] == "TASK_STATUS_WORKING"


def test_an_unknown_task_is_not_found_with_exit_status_69(session: Session) -> None:
    output = session.step('"no-such-task"').output
    assert "Code: NotFound" in output
    assert "TASK_NOT_FOUND" in output
    assert output.split()[-1] == "69"


def test_the_worker_reattaches_to_its_elicitation(session: Session) -> None:
    (cut,) = documents(session.step('ask ""'))
    again = documents(session.step('ask "$REQUEST_ID"'))
    assert [next(k for k in ("pending", "result") if k in e) for e in again] == ["pending", "result"]
    assert again[0]["pending"]["request_id"] == cut["pending"]["request_id"]
    assert again[-1]["result"] == {"action": "accept", "content": {"distinct": True}}


def test_the_worker_completes_its_task(session: Session) -> None:
    (completed,) = documents(session.step("4 distinct words"))
    assert completed["task"]["status"] == "TASK_STATUS_COMPLETED"


def test_a_heartbeat_tells_the_worker_of_a_cancellation(session: Session) -> None:
    step = session.step("BridgeService/CancelTask")
    heartbeat = documents(step)[0]
    assert len(heartbeat["cancelled_task_ids"]) == 1
    assert "Code: FailedPrecondition" in step.output
    assert step.output.split()[-1] == "73"
