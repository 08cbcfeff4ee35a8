"""Timestamps at the stages of a whole task, in every process of a `python -m bench.trace` run.

bench.trace puts this folder on PYTHONPATH, so Python loads this file as `sitecustomize` in
each process it starts (client, servers, worker). It does nothing unless BENCH_TRACE_DIR is
set. Each process then appends `<time.perf_counter()> <stage>` lines to
BENCH_TRACE_DIR/<pid>.txt; perf_counter is CLOCK_MONOTONIC, one clock for all the processes of
the machine, so the files merge into one timeline.

A stage is marked by wrapping a function when its module is first imported, so no product
code carries tracing. Stage names: `c.` the MCP client, `s.` a server (ours or the SDK's,
the same marks where they share code: HTTP in and out, the SDK's request dispatch), `w.` the
worker. A target that a version of a library no longer has is skipped, and its stage is
missing from the table.

With BENCH_TRACE_LOOP set too (`bench.trace --loop-steps`), each process also times every
step of its event loop, wall and thread CPU, into BENCH_TRACE_DIR/<pid>.loop.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

TRACE_DIR = os.environ.get("BENCH_TRACE_DIR", "")


def _mark_into(fd: int) -> Callable[[str], None]:
    def mark(stage: str) -> None:
        os.write(fd, f"{time.perf_counter():.6f} {stage}\n".encode())

    return mark


def _wrap_async(
    owner: Any, name: str, stage: str, mark: Callable[[str], None], *, after: bool = False
) -> None:
    """Mark `stage` when the coroutine method `owner.name` starts (or, with `after`, returns)."""
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not after:
            mark(stage)
        result = await original(*args, **kwargs)
        if after:
            mark(stage)
        return result

    setattr(owner, name, wrapped)


def _wrap_generator(owner: Any, name: str, stage: str, mark: Callable[[str], None]) -> None:
    """Mark `stage.start` when the async generator `owner.name` starts and `stage.yield` at each item."""
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        mark(stage + ".start")
        count = 0
        async for item in original(*args, **kwargs):
            count += 1
            mark(stage + (".yield" if count == 1 else f".yield{count}"))
            yield item

    setattr(owner, name, wrapped)


def _http_body_stage(body: bytes) -> str | None:
    """What a chunk a server sends is, for the stages that matter: None for the rest."""
    if b"notifications/tasks/status" in body:
        for status in (b"input_required", b"working", b"completed", b"failed", b"cancelled"):
            if b'"status":"' + status + b'"' in body:
                return "notify:" + status.decode()
        return "notify"
    if b"elicitation/create" in body:
        return "ask"
    if b'"content"' in body:
        return "result"
    if b'"task":{' in body:
        return "created"
    return None


def _patches(mark: Callable[[str], None]) -> dict[str, Callable[[ModuleType], None]]:
    def client_tasks(m: ModuleType) -> None:
        features = m.ExperimentalClientFeatures
        _wrap_async(features, "call_tool_as_task", "c.created", mark, after=True)
        _wrap_async(features, "call_tool_as_task", "c.start", mark)
        _wrap_async(features, "get_task_result", "c.end", mark, after=True)

    def client_session(m: ModuleType) -> None:
        init = m.ClientSession.__init__

        def traced_init(self: Any, *args: Any, elicitation_callback: Any = None, **kwargs: Any) -> None:
            if elicitation_callback is not None:
                callback = elicitation_callback

                async def answer(context: Any, params: Any) -> Any:
                    mark("c.ask")
                    result = await callback(context, params)
                    mark("c.answered")
                    return result

                elicitation_callback = answer
            init(self, *args, elicitation_callback=elicitation_callback, **kwargs)

        m.ClientSession.__init__ = traced_init

    def uvicorn_h11(m: ModuleType) -> None:
        send = m.RequestResponseCycle.send

        async def traced_send(self: Any, message: Any) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 202:
                mark("s.send:202")
            elif message["type"] == "http.response.body":
                stage = _http_body_stage(message.get("body", b""))
                if stage is not None:
                    mark("s.send:" + stage)
            await send(self, message)

        m.RequestResponseCycle.send = traced_send

    def starlette_requests(m: ModuleType) -> None:
        body = m.Request.body

        async def traced_body(self: Any) -> bytes:
            data: bytes = await body(self)
            try:
                message = json.loads(data)
            except ValueError:
                return data
            if isinstance(message, dict):
                mark("s.recv:" + str(message.get("method", "response")))
            return data

        m.Request.body = traced_body

    def lowlevel_server(m: ModuleType) -> None:
        handle = m.Server._handle_request

        async def traced_handle(self: Any, message: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            mark("s.handle:" + type(request).__name__)
            return await handle(self, message, request, *args, **kwargs)

        m.Server._handle_request = traced_handle

    def server_session(m: ModuleType) -> None:
        send = m.ServerSession.send_notification

        async def traced_send(self: Any, notification: Any, *args: Any, **kwargs: Any) -> None:
            status = getattr(getattr(notification.root, "params", None), "status", None)
            stage = f"s.notify:{status}" if isinstance(status, str) else None
            if stage is not None:
                mark(stage + ".start")
            await send(self, notification, *args, **kwargs)
            if stage is not None:
                mark(stage + ".queued")

        m.ServerSession.send_notification = traced_send

    def streamable_http(m: ModuleType) -> None:
        create = m.StreamableHTTPServerTransport._create_event_data

        def traced_create(self: Any, event_message: Any) -> Any:
            event = create(self, event_message)
            stage = _http_body_stage(event["data"].encode())
            if stage is not None:
                mark("s.sse:" + stage)
            return event

        m.StreamableHTTPServerTransport._create_event_data = traced_create

    def bridge(m: ModuleType) -> None:
        _wrap_async(m.McpBridge, "_task_result", "s.result", mark, after=True)
        _wrap_async(m.McpBridge, "_run_to_outcome", "s.outcome", mark, after=True)
        _wrap_async(m.McpBridge, "_forward", "s.forward", mark)

    def bridge_servicer(m: ModuleType) -> None:
        _wrap_async(m.BridgeServicer, "AnswerRequest", "s.answer.done", mark, after=True)
        _wrap_async(m.BridgeServicer, "AnswerRequest", "s.answer", mark)

    def task_servicer(m: ModuleType) -> None:
        _wrap_async(m.TaskServicer, "Complete", "s.complete.done", mark, after=True)
        _wrap_async(m.TaskServicer, "Complete", "s.complete", mark)
        _wrap_generator(m.TaskServicer, "Elicit", "s.elicit", mark)
        _wrap_async(m.TaskServicer, "_report", "s.report", mark)

    def domain(m: ModuleType) -> None:
        _wrap_generator(m.TaskManager, "follow", "s.follow", mark)

    def worker_context(m: ModuleType) -> None:
        _wrap_async(m.RemoteTaskContext, "elicit", "w.answer", mark, after=True)
        _wrap_async(m.RemoteTaskContext, "complete", "w.complete", mark)

    def worker_outcomes(m: ModuleType) -> None:
        _wrap_async(m.OutcomeStream, "report", "w.report", mark)

    def worker(m: ModuleType) -> None:
        _wrap_async(m.Worker, "_run_task", "w.assigned", mark)

    return {
        "mcp.client.experimental.tasks": client_tasks,
        "mcp.client.session": client_session,
        "uvicorn.protocols.http.h11_impl": uvicorn_h11,
        "starlette.requests": starlette_requests,
        "mcp.server.lowlevel.server": lowlevel_server,
        "mcp.server.session": server_session,
        "mcp.server.streamable_http": streamable_http,
        "taskservice.bridge.server": bridge,
        "taskservice.grpc_api.bridge_servicer": bridge_servicer,
        "taskservice.grpc_api.task_servicer": task_servicer,
        "taskservice.domain.service": domain,
        "taskservice_client._context": worker_context,
        "taskservice_client._worker": worker,
        "taskservice_client._outcomes": worker_outcomes,
    }


class _PatchingLoader(importlib.abc.Loader):
    """Runs a module as its own loader would, then applies its patch."""

    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def __getattr__(self, name: str) -> Any:  # get_code, get_resource_reader, ... as the loader has them
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._patch(module)
        except AttributeError as exc:  # a target this version lacks: its stage goes missing
            print(f"bench trace: {module.__name__} not traced: {exc}", file=sys.stderr)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self._patches = patches

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = self._patches.pop(fullname, None)
        if patch is None:
            return None
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


if TRACE_DIR:
    _fd = os.open(os.path.join(TRACE_DIR, f"{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    sys.meta_path.insert(0, _PatchingFinder(_patches(_mark_into(_fd))))


def _step_name(callback: Any) -> str:
    """What a step of the event loop ran: a task's coroutine and where it waited before this
    step (the innermost coroutine it awaited, Cython's included by their outermost), or the
    callback's name."""
    owner = getattr(callback, "__self__", None)
    if owner is None or not hasattr(owner, "get_coro"):
        name = getattr(callback, "__qualname__", None) or type(callback).__name__
        return str(name)
    coro = owner.get_coro()
    inner = coro
    while True:
        awaited = getattr(inner, "cr_await", None) or getattr(inner, "ag_await", None)
        if awaited is None or not (hasattr(awaited, "cr_frame") or hasattr(awaited, "ag_frame")):
            break
        inner = awaited
    frame = getattr(inner, "cr_frame", None) or getattr(inner, "ag_frame", None)
    where = ""
    if frame is not None:
        where = f">{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}:{frame.f_lineno}"
    return f"task:{getattr(coro, '__qualname__', type(coro).__name__)}{where}"


def _log_loop_steps(fd: int) -> None:
    """Time every step of every asyncio event loop of this process: `<start> <wall µs> <thread
    CPU µs> <what ran>` lines (the CPU time tells work from waiting for a core)."""
    import asyncio.events
    import atexit

    run = asyncio.events.Handle._run
    lines: list[str] = []

    def flush() -> None:
        if lines:
            os.write(fd, "".join(lines).encode())
            lines.clear()

    def timed_run(self: Any) -> None:
        try:
            name = _step_name(self._callback).replace(" ", "_")
        except Exception as exc:  # a callback of a shape not foreseen: still time it
            name = f"?{type(exc).__name__}"
        start, cpu = time.perf_counter(), time.thread_time()
        run(self)
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        lines.append(f"{start:.6f} {wall * 1e6:.0f} {cpu * 1e6:.0f} {name}\n")
        if len(lines) >= 500:
            flush()

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    atexit.register(flush)


if TRACE_DIR and os.environ.get("BENCH_TRACE_LOOP"):
    _steps = os.path.join(TRACE_DIR, f"{os.getpid()}.loop")
    _log_loop_steps(os.open(_steps, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
