"""A restart of the service in the middle of an elicitation loses nothing and asks nothing twice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from taskservice_client import RemoteTaskContext
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.testing import running_service

from .conftest import ELICIT_SCHEMA, WAIT, Bridge, make_worker, running


async def test_service_restart_during_elicit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskservice_client")
    store = f"sqlite:///{tmp_path / 'tasks.db'}"
    answers: list[Any] = []
    asked = anyio.Event()

    async with running_service(store) as first:
        port = first.port
        worker = make_worker(first.target)

        @worker.tool()
        async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
            asked.set()
            answer = await ctx.elicit("Your name?", ELICIT_SCHEMA)
            answers.append(answer)
            assert answer.content is not None
            return f"hello {answer.content['name']}"

        async with running(worker):
            bridge = Bridge(first.target)
            try:
                task_id = await bridge.create("ask")
                request = await bridge.next_request(task_id)
            finally:
                await bridge.close()
            await first.stop()  # the worker's streams break: UNAVAILABLE, then refused

            async with running_service(store, port=port) as second:
                bridge = Bridge(second.target)
                try:
                    # The same request, still pending: the worker re-attached, it did not ask again.
                    assert (await bridge.next_request(task_id)).request_id == request.request_id
                    await bridge.answer(
                        task_id, request.request_id, {"action": "accept", "content": {"name": "Ada"}}
                    )
                    task, result = await bridge.outcome(task_id)
                finally:
                    await bridge.close()
                stored = await second.manager.get_task(task_id)

    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert result is not None
    assert result["content"][0]["text"] == "hello Ada"
    assert len(answers) == 1
    assert [r.request_id for r in stored.requests] == [request.request_id]  # stored once
    assert asked.is_set()
    assert any("re-attaching" in r.getMessage() for r in caplog.records)  # the stream did break


async def test_worker_survives_a_restart_and_takes_new_work(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tasks.db'}"
    async with running_service(store) as first:
        port = first.port
        worker = make_worker(first.target)

        @worker.tool()
        async def echo(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
            return str(arguments["v"])

        async with running(worker):
            bridge = Bridge(first.target)
            try:
                _, before = await bridge.outcome(await bridge.create("echo", {"v": 1}))
            finally:
                await bridge.close()
            worker_id = worker.worker_id
            await first.stop()
            async with running_service(store, port=port) as second:
                bridge = Bridge(second.target)
                try:
                    with anyio.fail_after(WAIT):
                        _, after = await bridge.outcome(await bridge.create("echo", {"v": 2}))
                finally:
                    await bridge.close()
    assert before is not None
    assert after is not None
    assert [before["content"][0]["text"], after["content"][0]["text"]] == ["1", "2"]
    assert worker.worker_id == worker_id
