"""Worker: declares tools to the service, takes assignments and runs them with a RemoteTaskContext."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar, overload

import anyio
import grpc
from mcp.types import ToolAnnotations

from taskservice_client._channel import ChannelOptions, RetryPolicy, TLSConfig
from taskservice_client._client import UNARY_RETRYABLE, ServiceClient, cancellable
from taskservice_client._context import RemoteTaskContext
from taskservice_client._convert import (
    TASK_SUPPORT_TO_PROTO,
    call_tool_result,
    clip_utf8,
    dict_to_struct,
    dump_model,
    is_terminal,
    struct_to_dict,
    task_from_proto,
)
from taskservice_client._errors import RETRYABLE, TaskServiceError, TaskServiceRejected, translate
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2

log = logging.getLogger("taskservice_client")

pb = task_service_pb2

_SHUTTING_DOWN = "the worker is shutting down"

FAILURE_MESSAGE_BYTES = 4096
"""The longest status message the service keeps (UTF-8). The message a tool's exception fails its
task with is cut to it (`clip_utf8`): the service refuses a longer one, and the task would not fail."""

RESULT_REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED})
"""The codes of a Complete refused for its result (over the service's size limit, say): the worker
then fails the task with the service's reason."""

TaskSupport = Literal["optional", "required", "forbidden"]
ToolFunction = Callable[[RemoteTaskContext, dict[str, Any]], Awaitable[Any]]
Outcome = tuple[Literal["returned"], Any] | tuple[Literal["raised"], Exception]
F = TypeVar("F", bound=ToolFunction)


@dataclasses.dataclass(frozen=True, slots=True)
class ToolRegistration:
    """A tool a worker serves: its MCP declaration and the function that runs it."""

    name: str
    function: ToolFunction
    title: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] = dataclasses.field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None
    task_support: TaskSupport = "optional"
    retry_safe: bool = False
    annotations: dict[str, Any] | None = None

    def definition(self) -> task_pb2.ToolDefinition:
        fields: dict[str, Any] = {
            "name": self.name,
            "title": self.title or "",
            "description": self.description or "",
            "input_schema": dict_to_struct(self.input_schema),
            "task_support": TASK_SUPPORT_TO_PROTO[self.task_support],
            "retry_safe": self.retry_safe,
        }
        if self.output_schema is not None:
            fields["output_schema"] = dict_to_struct(self.output_schema)
        if self.annotations is not None:
            fields["annotations"] = dict_to_struct(self.annotations)
        return task_pb2.ToolDefinition(**fields)


@dataclasses.dataclass(slots=True)
class _Registration:
    worker_id: str
    heartbeat_interval: float
    lease_ttl: float


class _Running:
    """One assignment this worker holds."""

    def __init__(self, assignment: pb.Assignment, tool: ToolRegistration) -> None:
        self.task_id = assignment.task.task_id
        self.lease_id = assignment.lease_id
        self.assignment = assignment
        self.tool = tool
        self.acked = False
        self.ctx: RemoteTaskContext | None = None
        self.scope: anyio.CancelScope | None = None
        self.stop_reason: Literal["cancelled", "handed_back", "lost"] | None = None

    def stop(self, reason: Literal["cancelled", "handed_back", "lost"]) -> None:
        """Stop the tool's work: the task was cancelled, is handed back, or is no longer ours."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if reason != "handed_back" and self.ctx is not None:
            self.ctx.request_cancellation()
        if self.scope is not None:
            self.scope.cancel()


class Worker:
    """Runs MCP tools as tasks of the task service.

    ```python
    worker = Worker("127.0.0.1:50051")

    @worker.tool(description="Add two numbers")
    async def add(ctx: RemoteTaskContext, arguments: dict) -> CallToolResult: ...

    asyncio.run(worker.run())
    ```

    `run()` declares the tools, takes assignments (at most
    `max_concurrent_tasks` at once), keeps their leases alive, completes each
    task with its tool's return value or fails it with the exception's message,
    and cancels a tool when its task is cancelled (a tool still running after
    `watch_after` seconds acknowledges its assignment and is watched for that;
    before, a cancellation ends its elicitation or sampling wait at once, and is
    noticed at `watch_after` otherwise: the many tools that finish sooner need
    neither an acknowledgement nor a watch). When the service goes away
    it reconnects with backoff; its tasks keep running meanwhile. On SIGTERM or
    SIGINT (or `shutdown()`) it stops taking work, lets running tasks finish
    for up to `shutdown_timeout` seconds and hands back the rest.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TLSConfig | bool = False,
        name: str | None = None,
        max_concurrent_tasks: int = 10,
        shutdown_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rpc_timeout: float = 30.0,
        watch_after: float = 0.05,
        channel_options: ChannelOptions | None = None,
    ) -> None:
        if max_concurrent_tasks < 1:
            raise ValueError("max_concurrent_tasks must be at least 1")
        if shutdown_timeout < 0:
            raise ValueError("shutdown_timeout must not be negative")
        if watch_after < 0:
            raise ValueError("watch_after must not be negative")
        self.target = target
        self.token = token
        self.tls = tls
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.max_concurrent_tasks = max_concurrent_tasks
        self.shutdown_timeout = shutdown_timeout
        self.retry = retry or RetryPolicy()
        self.rpc_timeout = rpc_timeout
        self.watch_after = watch_after
        self.channel_options = channel_options
        self._tools: dict[str, ToolRegistration] = {}
        self._started = False
        self._worker_id = ""
        self._registration: _Registration | None = None
        self._registration_lock: anyio.Lock | None = None
        self._running: dict[str, _Running] = {}
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        self._hurry = False
        self._accepting = False
        self._idle: anyio.Event | None = None
        self._fatal: BaseException | None = None

    # ------------------------------------------------------------------ tools

    @property
    def tools(self) -> dict[str, ToolRegistration]:
        """The declared tools, by name."""
        return dict(self._tools)

    @property
    def worker_id(self) -> str:
        """The id the service gave this worker ("" until it registered)."""
        return self._worker_id

    @overload
    def tool(self, name: F, /) -> F: ...

    @overload
    def tool(
        self,
        name: str | None = None,
        *,
        title: str | None = None,
        description: str | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        task_support: TaskSupport = "optional",
        retry_safe: bool = False,
        annotations: ToolAnnotations | dict[str, Any] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        name: str | F | None = None,
        *,
        title: str | None = None,
        description: str | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        task_support: TaskSupport = "optional",
        retry_safe: bool = False,
        annotations: ToolAnnotations | dict[str, Any] | None = None,
    ) -> F | Callable[[F], F]:
        """Declare `async def f(ctx: RemoteTaskContext, arguments: dict)` as a tool.

        The name defaults to the function's name and the description to its
        docstring. The function returns a `CallToolResult`, a dict (JSON text,
        and structured content when `output_schema` is given) or a str.
        `retry_safe` lets the service run the task again on another worker when
        this one is lost. Usable bare (`@worker.tool`) or called.
        """
        if name is not None and not isinstance(name, str):
            decorate: Callable[[F], F] = self.tool()
            return decorate(name)
        if task_support not in TASK_SUPPORT_TO_PROTO:
            raise ValueError(f"task_support must be optional, required or forbidden, not {task_support!r}")
        if input_schema is not None and input_schema.get("type") != "object":
            raise ValueError('input_schema must be an object schema ({"type": "object", ...})')
        if output_schema is not None and output_schema.get("type") != "object":
            raise ValueError('output_schema must be an object schema ({"type": "object", ...})')
        tool_name = name

        def register(function: F) -> F:
            candidate: object = function  # checked apart: the check would narrow F away
            if not inspect.iscoroutinefunction(candidate):
                raise TypeError(f"tool {function.__name__!r} must be an async function")
            registered_name = tool_name or function.__name__
            if self._started:
                raise RuntimeError("declare tools before Worker.run()")
            if registered_name in self._tools:
                raise ValueError(f"tool {registered_name!r} is declared twice")
            notes = annotations
            self._tools[registered_name] = ToolRegistration(
                name=registered_name,
                function=function,
                title=title,
                description=description if description is not None else inspect.getdoc(function),
                input_schema=dict(input_schema) if input_schema is not None else {"type": "object"},
                output_schema=output_schema,
                task_support=task_support,
                retry_safe=retry_safe,
                annotations=dump_model(notes) if isinstance(notes, ToolAnnotations) else notes,
            )
            return function

        return register

    # ---------------------------------------------------------------- running

    def shutdown(self) -> None:
        """Stop taking work and end `run()` once running tasks finished or were handed back.

        Called a second time, hands back the running tasks at once.
        """
        if self._stop_requested:
            self._hurry = True
        self._stop_requested = True
        self._accepting = False  # from now on, an assignment that still arrives is handed back
        if self._stop is not None:
            self._stop.set()
        for entry in list(self._running.values()) if self._hurry else ():
            entry.stop("handed_back")

    async def run(self, *, handle_signals: bool = True) -> None:
        """Serve the tools until `shutdown()` (or SIGTERM/SIGINT when `handle_signals`)."""
        if not self._tools:
            raise RuntimeError("the worker declares no tools: use @worker.tool first")
        if self._started:
            raise RuntimeError("Worker.run() was called already")
        self._started = True
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        self._idle = anyio.Event()
        self._idle.set()
        self._registration_lock = anyio.Lock()
        self._accepting = not self._stop_requested
        client = ServiceClient(
            self.target,
            token=self.token,
            tls=self.tls,
            retry=self.retry,
            rpc_timeout=self.rpc_timeout,
            channel_options=self.channel_options,
        )
        try:
            with self._signal_handlers(handle_signals):
                # Tools run in `work`, which outlives the connection loops: a reconnect
                # does not disturb them, and they drain after the loops stopped taking work.
                async with anyio.create_task_group() as work, anyio.create_task_group() as connection:
                    connection.start_soon(self._guard, self._heartbeats, client)
                    # The tools' Complete and Fail go over this stream (see _outcomes).
                    connection.start_soon(client.outcomes.run)
                    taking: anyio.CancelScope = await connection.start(self._take_work, client, work)
                    await self._stop.wait()
                    self._accepting = False
                    taking.cancel()
                    await self._drain()
                    connection.cancel_scope.cancel()
            await self._unregister(client)
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()
        if self._fatal is not None:
            raise self._fatal

    async def _guard(self, loop: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a connection loop; an error it cannot recover from ends the worker."""
        try:
            await loop(*args)
        except Exception as error:
            log.error("worker %s stops: %s", self._worker_id or self.name, error)
            if self._fatal is None:
                self._fatal = error
            self._hurry = True
            self.shutdown()

    @contextlib.contextmanager
    def _signal_handlers(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            yield
            return
        installed: list[signal.Signals] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(signum)
        try:
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        log.info(
            "%s: %s",
            signum.name,
            "handing back running tasks" if self._stop_requested else "no new work; finishing running tasks",
        )
        self.shutdown()

    async def _drain(self) -> None:
        assert self._idle is not None
        if self._running:
            log.info("waiting up to %ss for %d running task(s)", self.shutdown_timeout, len(self._running))
        # A hurry (a second shutdown()) stops every running task, which then sets `_idle` too.
        with anyio.move_on_after(0 if self._hurry else self.shutdown_timeout):
            await self._idle.wait()
        for entry in list(self._running.values()):
            entry.stop("handed_back")
        await self._idle.wait()

    async def _unregister(self, client: ServiceClient) -> None:
        if not self._worker_id:
            return
        with anyio.move_on_after(5):
            try:
                await client.unary(
                    client.tasks.UnregisterWorker,
                    pb.UnregisterWorkerRequest(worker_id=self._worker_id),
                    pb.UnregisterWorkerResponse,
                    retry=False,
                )
            except TaskServiceError as error:
                log.info("unregister: %s", error)

    # ---------------------------------------------------------- registration

    async def _registered(self, client: ServiceClient) -> _Registration:
        assert self._registration_lock is not None
        async with self._registration_lock:
            if self._registration is not None:
                return self._registration
            request = pb.RegisterWorkerRequest(
                worker_id=self._worker_id,
                name=self.name,
                tools=[t.definition() for t in self._tools.values()],
                max_concurrent_tasks=self.max_concurrent_tasks,
            )
            response = await client.unary(client.tasks.RegisterWorker, request, pb.RegisterWorkerResponse)
            if self._worker_id and response.worker_id != self._worker_id:
                log.info("re-registered as %s (was %s)", response.worker_id, self._worker_id)
            self._worker_id = response.worker_id
            lease = max(response.lease_ttl_ms, 1) / 1000
            interval = response.heartbeat_interval_ms / 1000 if response.heartbeat_interval_ms else lease / 3
            self._registration = _Registration(self._worker_id, max(interval, 0.05), lease)
            log.info("worker %s serves %s", self._worker_id, ", ".join(self._tools))
            return self._registration

    def _lost(self, registration: _Registration) -> None:
        """The service forgot this registration (its lease ran out, the store was lost): register again."""
        if self._registration is registration:
            log.warning("worker %s is not registered any more; registering again", registration.worker_id)
            self._registration = None

    # ------------------------------------------------------------ connection

    async def _heartbeats(self, client: ServiceClient) -> None:
        backoff = self.retry.backoff()
        while True:
            registration = await self._registered(client)
            await anyio.sleep(registration.heartbeat_interval)
            running = [e.task_id for e in self._running.values() if e.acked]
            try:
                response = await client.unary(
                    client.tasks.Heartbeat,
                    pb.HeartbeatRequest(worker_id=registration.worker_id, task_ids=running),
                    pb.HeartbeatResponse,
                    retry=False,
                    deadline=max(registration.heartbeat_interval, 1.0),
                )
            except TaskServiceError as error:
                if error.code is grpc.StatusCode.NOT_FOUND:
                    self._lost(registration)
                    continue
                if error.code not in UNARY_RETRYABLE:
                    raise
                delay = backoff.next_delay()
                log.info("heartbeat: %s", error)
                if delay is not None:
                    await anyio.sleep(min(delay, registration.heartbeat_interval))
                continue
            backoff.reset()
            for task_id in response.cancelled_task_ids:
                entry = self._running.get(task_id)
                if entry is None:
                    continue
                if entry.ctx is not None and entry.ctx._finishing:
                    continue  # the tool (or the worker for it) finished the task itself
                entry.stop("lost")

    async def _take_work(
        self,
        client: ServiceClient,
        work: anyio.abc.TaskGroup,
        *,
        task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Take assignments until the scope handed to the caller is cancelled.

        The stream is read in a task of its own (see `_run_entry` for why).
        """
        async with anyio.create_task_group() as group:
            task_status.started(group.cancel_scope)
            group.start_soon(self._guard, self._assignments, client, work)

    async def _assignments(self, client: ServiceClient, work: anyio.abc.TaskGroup) -> None:
        backoff = self.retry.backoff()
        while True:
            registration = await self._registered(client)
            call = client.stream(
                client.tasks.StreamAssignments,
                pb.StreamAssignmentsRequest(worker_id=registration.worker_id),
            )
            try:
                async with cancellable():
                    async for response in call:
                        backoff.reset()
                        await self._accept(client, work, response.assignment, registration)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code is grpc.StatusCode.NOT_FOUND:
                    self._lost(registration)
                    continue
                if code not in RETRYABLE | {grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL}:
                    raise translate(error, "StreamAssignments") from None
                log.info("assignments: %s: %s", code.name, error.details())
            finally:
                call.cancel()
            delay = backoff.next_delay()
            if delay is None:
                raise TaskServiceError(grpc.StatusCode.UNAVAILABLE, "gave up reconnecting")
            await anyio.sleep(delay)

    async def _accept(
        self,
        client: ServiceClient,
        work: anyio.abc.TaskGroup,
        assignment: pb.Assignment,
        registration: _Registration,
    ) -> None:
        task_id = assignment.task.task_id
        existing = self._running.get(task_id)
        if existing is not None and existing.lease_id == assignment.lease_id:
            return  # offered again after a reconnect: it is being handled
        tool = self._tools.get(assignment.tool_name)
        if tool is None or not self._accepting or len(self._running) >= self.max_concurrent_tasks:
            why = "unknown tool" if tool is None else "the worker is shutting down or full"
            work.start_soon(self._release, client, registration.worker_id, task_id, assignment.lease_id, why)
            return
        entry = _Running(assignment, tool)
        self._running[task_id] = entry
        assert self._idle is not None
        if self._idle.is_set():
            self._idle = anyio.Event()
        work.start_soon(self._run_task, client, registration.worker_id, entry)

    async def _release(
        self, client: ServiceClient, worker_id: str, task_id: str, lease_id: str, why: str
    ) -> None:
        with anyio.move_on_after(max(self.shutdown_timeout, 5.0)):
            try:
                await client.unary(
                    client.tasks.ReleaseAssignment,
                    pb.ReleaseAssignmentRequest(
                        worker_id=worker_id, task_id=task_id, lease_id=lease_id, reason=why
                    ),
                    pb.ReleaseAssignmentResponse,
                )
                log.info("task %s handed back: %s", task_id, why)
            except TaskServiceError as error:
                log.info("task %s: hand-back failed: %s", task_id, error)

    # ------------------------------------------------------------ one task

    async def _run_task(self, client: ServiceClient, worker_id: str, entry: _Running) -> None:
        try:
            await self._run_entry(client, worker_id, entry)
        except Exception:
            log.exception("task %s: unexpected error in the worker", entry.task_id)
        finally:
            # Only this run's entry: the task may have come back with a new lease meanwhile.
            if self._running.get(entry.task_id) is entry:
                del self._running[entry.task_id]
            if not self._running and self._idle is not None:
                self._idle.set()

    async def _run_entry(self, client: ServiceClient, worker_id: str, entry: _Running) -> None:
        if entry.stop_reason is not None:
            await self._release(client, worker_id, entry.task_id, entry.lease_id, _SHUTTING_DOWN)
            return
        ctx = RemoteTaskContext(
            task=task_from_proto(entry.assignment.task),
            client=client,
            on_cancel=lambda: entry.stop("cancelled"),
            lease_id=entry.lease_id,
        )
        entry.ctx = ctx
        arguments = struct_to_dict(entry.assignment.arguments)
        finished = False

        async def run_tool() -> None:
            nonlocal finished
            try:
                outcome: Outcome
                try:
                    outcome = ("returned", await entry.tool.function(ctx, arguments))
                except Exception as error:
                    outcome = ("raised", error)
                if entry.stop_reason is None and not ctx.is_cancelled:
                    # The outcome is stored before this group winds down (which takes a few
                    # turns of the loop). A stop from now on no longer cancels anything, as
                    # once the tool is done: only the worker's own end does.
                    entry.scope = None
                    await self._finish(ctx, entry, outcome)
                    finished = True
            finally:
                group.cancel_scope.cancel()  # the acknowledgement and the watch are done too

        # The tool starts at once; its acknowledgement goes `watch_after` seconds later if it
        # still runs (a tool done sooner needs neither an acknowledgement nor a watch), and a
        # refused acknowledgement stops it. The tool runs in a task of its own: stopping it cancels
        # this group's scope, and whatever CancelledError ends the tool (grpc.aio raises its
        # own when a call is cancelled) ends with that task instead of escaping into this one.
        async with anyio.create_task_group() as group:
            entry.scope = group.cancel_scope
            if entry.stop_reason is not None:
                group.cancel_scope.cancel()
            group.start_soon(self._acknowledge, client, worker_id, ctx, entry)
            group.start_soon(run_tool)
        entry.scope = None
        if finished:
            return
        if entry.stop_reason == "handed_back" and not is_terminal(ctx.task.status):
            await self._release(client, worker_id, entry.task_id, entry.lease_id, _SHUTTING_DOWN)
            return
        log.info("task %s stopped (%s)", entry.task_id, entry.stop_reason or "cancelled")

    async def _acknowledge(
        self, client: ServiceClient, worker_id: str, ctx: RemoteTaskContext, entry: _Running
    ) -> None:
        """`watch_after` seconds after the tool's start, if it still runs: acknowledge the
        assignment (the lease then lives by this worker's heartbeats), then watch the task for as
        long as the tool runs.

        A tool that is done sooner needs neither: its Complete or Fail settles the offer, which
        saves the service a call per short task. The offer's lease (the service's lease TTL,
        30 s by default) leaves ample time for an acknowledgement this late.
        """
        await anyio.sleep(self.watch_after)
        try:
            ack = await client.unary(
                client.tasks.AckAssignment,
                pb.AckAssignmentRequest(worker_id=worker_id, task_id=entry.task_id, lease_id=entry.lease_id),
                pb.AckAssignmentResponse,
            )
        except TaskServiceError as error:
            if not ctx._finishing:
                # Cancelled, or given to another worker meanwhile: the work is not ours to do.
                log.info("task %s: assignment not acknowledged: %s", entry.task_id, error)
                entry.stop("lost")
            return
        entry.acked = True
        ctx._observe(ack.task)
        await self._watch(client, ctx, entry)

    async def _finish(
        self,
        ctx: RemoteTaskContext,
        entry: _Running,
        outcome: Outcome,
    ) -> None:
        if is_terminal(ctx.task.status):
            return  # the tool completed or failed the task itself
        try:
            if outcome[0] == "returned":
                try:
                    result = call_tool_result(outcome[1], structured=entry.tool.output_schema is not None)
                except TypeError as error:
                    await ctx.fail(clip_utf8(str(error), FAILURE_MESSAGE_BYTES))
                    return
                try:
                    await ctx.complete(result)
                except TaskServiceRejected as error:
                    if error.code not in RESULT_REFUSED:
                        raise
                    # The service refused the result itself (over its size limit): the task
                    # fails with why, instead of running on with nobody left to end it.
                    log.info("task %s: result refused: %s", entry.task_id, error.message)
                    why = f"The task service refused the tool's result: {error.message}"
                    await ctx.fail(clip_utf8(why, FAILURE_MESSAGE_BYTES))
                except TaskServiceError:
                    raise
                except ValueError as error:  # the result cannot travel as it is (dict_to_struct)
                    await ctx.fail(clip_utf8(str(error), FAILURE_MESSAGE_BYTES))
            else:
                raised = outcome[1]
                log.info("task %s failed: %r", entry.task_id, raised)
                await ctx.fail(clip_utf8(str(raised) or type(raised).__name__, FAILURE_MESSAGE_BYTES))
        except TaskServiceError as error:
            # Cancelled (or lost) meanwhile: the task's state is final already.
            log.info("task %s: outcome not stored: %s", entry.task_id, error)

    async def _watch(self, client: ServiceClient, ctx: RemoteTaskContext, entry: _Running) -> None:
        """Follow the task: keep `ctx.task` current and stop the tool the moment it is cancelled."""
        backoff = self.retry.backoff()
        while True:
            call = client.stream(client.tasks.WatchTask, pb.WatchTaskRequest(task_id=ctx.task_id))
            try:
                async with cancellable():
                    async for response in call:
                        backoff.reset()
                        task = ctx._observe(response.task)
                        if is_terminal(task.status):
                            return
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    entry.stop("lost")  # expired or deleted: nobody waits for the result
                    return
                log.debug("watch %s: %s", ctx.task_id, error.code().name)
            finally:
                call.cancel()
            delay = backoff.next_delay()
            await anyio.sleep(delay if delay is not None else self.retry.max_backoff)
