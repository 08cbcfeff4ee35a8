"""`python -m taskservice_client run module:worker --target ...` in a subprocess, and SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from taskservice_client import RemoteTaskContext
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain.model import Dispatch
from taskservice.testing import RunningService

from .conftest import WAIT, Bridge, make_worker, running

WORKER_MODULE = """
from typing import Any

import anyio

from taskservice_client import RemoteTaskContext, Worker

worker = Worker("127.0.0.1:1")  # the --target flag points it at the test's service


@worker.tool(description="Asks before answering.")
async def ask(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    answer = await ctx.elicit("Continue?", {"type": "object", "properties": {"ok": {"type": "boolean"}}})
    return f"answered {answer.action}"


@worker.tool(description="Works until stopped.")
async def slow(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    await ctx.update_status("started")
    await anyio.sleep_forever()
    return "unreachable"
"""


class WorkerProcess:
    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def collect(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        async for chunk in self.process.stderr:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for_line(self, text: str) -> None:
        with anyio.fail_after(WAIT):
            while not any(text in line for line in self.lines):
                await self._changed.wait()

    async def exit_code(self) -> int:
        with anyio.fail_after(WAIT):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def worker_process(
    service: RunningService, tmp_path: Path, shutdown_timeout: float
) -> AsyncIterator[WorkerProcess]:
    """The CLI running WORKER_MODULE against the service; killed at the end if still alive."""
    (tmp_path / "cli_worker.py").write_text(WORKER_MODULE)
    command = [
        sys.executable,
        "-m",
        "taskservice_client",
        "run",
        "cli_worker:worker",
        "--target",
        service.target,
        "--shutdown-timeout",
        str(shutdown_timeout),
    ]
    process = await anyio.open_process(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
    handle = WorkerProcess(process)
    async with anyio.create_task_group() as group:
        group.start_soon(handle.collect)
        try:
            yield handle
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.fail_after(WAIT):
                await process.wait()


async def test_sigterm_lets_a_running_task_finish_and_takes_no_new_work(
    service: RunningService, bridge: Bridge, tmp_path: Path
) -> None:
    async with worker_process(service, tmp_path, shutdown_timeout=60) as process:
        await _finish_then_exit(service, bridge, process)


async def _finish_then_exit(service: RunningService, bridge: Bridge, worker_process: WorkerProcess) -> None:
    first = await bridge.create("ask")
    request = await bridge.next_request(first)
    worker_process.process.send_signal(signal.SIGTERM)
    await worker_process.wait_for_line("SIGTERM")
    second = await bridge.create("ask")  # arrives while the worker drains: not taken
    await bridge.answer(first, request.request_id, {"action": "accept", "content": {"ok": True}})
    task, result = await bridge.outcome(first)
    assert await worker_process.exit_code() == 0
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert result is not None
    assert result["content"][0]["text"] == "answered accept"
    waiting = await service.manager.get_task(second)
    assert (waiting.status, waiting.dispatch, waiting.worker_id) == ("working", Dispatch.QUEUED, "")
    assert waiting.requests == ()


async def test_sigterm_hands_back_what_does_not_finish_in_time(
    service: RunningService, bridge: Bridge, tmp_path: Path
) -> None:
    async with worker_process(service, tmp_path, shutdown_timeout=0) as process:
        task_id = await bridge.create("slow")
        await bridge.wait_for_task(task_id, lambda task: task.status_message == "started")
        process.process.send_signal(signal.SIGTERM)
        assert await process.exit_code() == 0
    handed_back = await service.manager.get_task(task_id)
    state = (handed_back.status, handed_back.dispatch, handed_back.worker_id)
    assert state == ("working", Dispatch.QUEUED, ""), "\n".join(process.lines)

    # Another worker takes it and finishes it.
    second = make_worker(service.target)

    @second.tool()
    async def slow(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        return "second worker"

    async with running(second):
        task, result = await bridge.outcome(task_id)
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert result is not None
    assert result["content"][0]["text"] == "second worker"


async def test_run_with_a_bad_module_fails_with_one_line(tmp_path: Path) -> None:
    result = await anyio.run_process(
        [sys.executable, "-m", "taskservice_client", "run", "no_such_module_here:worker", "--target", "x:1"],
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "taskservice_client: cannot load no_such_module_here:worker: No module named 'no_such_module_here'"
    ]
