"""McpBridge.finished: the tasks a bridge saw end, which the HTTP transport answers with JSON."""

from __future__ import annotations

from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.bridge import server
from taskservice.bridge.server import McpBridge


def task(task_id: str, status: task_pb2.TaskStatus) -> task_pb2.Task:
    return task_pb2.Task(task_id=task_id, status=status)


async def test_a_bridge_remembers_the_last_tasks_it_saw_end() -> None:
    bridge = McpBridge("127.0.0.1:1")  # never called: the channel connects only when used
    try:
        bridge._saw(task("running", task_pb2.TASK_STATUS_WORKING))
        bridge._saw(task("asking", task_pb2.TASK_STATUS_INPUT_REQUIRED))
        assert not bridge.finished("running")
        assert not bridge.finished("asking")
        for status in (
            task_pb2.TASK_STATUS_COMPLETED,
            task_pb2.TASK_STATUS_FAILED,
            task_pb2.TASK_STATUS_CANCELLED,
        ):
            bridge._saw(task(f"ended-{status}", status))
            assert bridge.finished(f"ended-{status}")
        bridge._saw(task("first", task_pb2.TASK_STATUS_COMPLETED))
        for index in range(server.FINISHED_KEPT - 1):
            bridge._saw(task(f"t{index}", task_pb2.TASK_STATUS_COMPLETED))
        assert bridge.finished("first")  # the bound is reached, not passed
        bridge._saw(task("first", task_pb2.TASK_STATUS_COMPLETED))  # seen again: stays where it was
        bridge._saw(task("one-more", task_pb2.TASK_STATUS_COMPLETED))
        assert not bridge.finished("first")
        assert bridge.finished("one-more")
        assert bridge.finished(f"t{server.FINISHED_KEPT - 2}")
    finally:
        await bridge.close()
