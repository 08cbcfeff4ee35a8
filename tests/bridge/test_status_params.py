"""The status notification's params, built straight from the wire task, say what the full
validation of the task's fields (the SDK's own way: Task -> dict -> params) says."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2
from mcp import types
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.bridge.server import mcp_task, status_params


def _ts(ms: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


@pytest.mark.parametrize(
    "task",
    [
        task_pb2.Task(
            task_id="t1",
            status=task_pb2.TASK_STATUS_INPUT_REQUIRED,
            status_message="waiting for you",
            created_at=_ts(1_700_000_000_123),
            last_updated_at=_ts(1_700_000_000_456),
            ttl_ms=60_000,
            poll_interval_ms=500,
        ),
        task_pb2.Task(
            task_id="t2", status=task_pb2.TASK_STATUS_COMPLETED, created_at=_ts(1), last_updated_at=_ts(2)
        ),
    ],
)
def test_status_params_match_the_validated_task(task: task_pb2.Task) -> None:
    validated = types.TaskStatusNotificationParams.model_validate(
        mcp_task(task).model_dump(by_alias=True, mode="json")
    )
    built = status_params(task)
    assert built.model_dump(by_alias=True, exclude_none=True, mode="json") == validated.model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    notification = types.ServerNotification(types.TaskStatusNotification(params=built))
    sent = notification.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert sent["params"]["taskId"] == task.task_id
    # On the wire, what the SDK sends for the validated params; and, though built without
    # validation, what a client parses back to them. Not for a task without ttl: the SDK leaves a
    # null ttl off the wire and its client then refuses the notification (every stored task has one).
    assert sent == types.ServerNotification(types.TaskStatusNotification(params=validated)).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    if task.ttl_ms:
        received = types.ServerNotification.model_validate(sent).root
        assert isinstance(received, types.TaskStatusNotification)
        assert received.params == validated
