"""The domain service: tasks, client-bound requests and dispatch to workers.

It knows nothing of gRPC or MCP. Every change goes through the store's atomic
`update_task`, is stored before the method returns, and wakes waiters through
the store's change feed; every wait re-reads stored state, so a stream of the
gRPC layer is a view of stored state that any replica can serve.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from typing import TypeVar

from taskservice.domain.errors import (
    AlreadyAnswered,
    InvalidArgument,
    InvalidTransition,
    LeaseNotHeld,
    PayloadTooLarge,
    RequestNotFound,
    RequestWithdrawn,
    TaskCancelled,
    TaskExists,
    TaskNotFound,
    ToolNotServed,
    WorkerNotFound,
)
from taskservice.domain.model import (
    ClientRequest,
    Dispatch,
    JsonObject,
    RequestState,
    TaskRecord,
    TaskStatus,
    ToolSpec,
    WorkerRecord,
    can_transition,
)
from taskservice.store.base import (
    TOOLS_KEY,
    TaskCursor,
    TaskStore,
    room_key,
    task_key,
    tool_key,
    worker_key,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~:-]{1,128}$")


def new_id() -> str:
    """128 random bits, URL-safe: unguessable, so a task id works as a capability."""
    return secrets.token_urlsafe(16)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_id(field: str, value: str) -> None:
    """A caller-chosen id (empty: the service picks one) must fit `_CLIENT_ID`."""
    if value and not _CLIENT_ID.match(value):
        raise InvalidArgument(field, "1 to 128 characters of A-Z a-z 0-9 . _ ~ : -")


def check_ttl(ttl_ms: int) -> int:
    """A retention the caller asked for (a task's, or a client-side task's): positive."""
    if ttl_ms <= 0:
        raise InvalidArgument("ttl_ms", f"must be positive, got {ttl_ms}")
    return ttl_ms


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Server-side policy. Times in milliseconds."""

    default_ttl_ms: int = 3_600_000
    max_ttl_ms: int = 86_400_000
    poll_interval_ms: int = 1_000
    lease_ttl_ms: int = 30_000
    sweep_interval_ms: int = 1_000
    default_page_size: int = 50
    max_page_size: int = 500
    max_payload_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"{field.name} must be positive")
        if self.default_ttl_ms > self.max_ttl_ms:
            raise ValueError("default_ttl_ms must not exceed max_ttl_ms")


# Events of a bridge's view of one task (`events`).
@dataclasses.dataclass(frozen=True, slots=True)
class TaskChanged:
    task: TaskRecord


@dataclasses.dataclass(frozen=True, slots=True)
class RequestQueued:
    task: TaskRecord
    request: ClientRequest


@dataclasses.dataclass(frozen=True, slots=True)
class RequestWithdrawal:
    """A request this view delivered that the task no longer waits for from it: its holding lost
    the task, which went back to the queue (`_requeued`; state WITHDRAWN), or the client answered
    another view's delivery of it (state ANSWERED). Whoever put it to a client calls it off."""

    task: TaskRecord
    request: ClientRequest


@dataclasses.dataclass(frozen=True, slots=True)
class TaskFinished:
    task: TaskRecord


TaskEvent = TaskChanged | RequestQueued | RequestWithdrawal | TaskFinished


def _label(worker: WorkerRecord) -> str:
    """How a task's status message names a worker: by its declared name. The worker id
    is left out on purpose, because it addresses the worker's leases."""
    return repr(worker.name) if worker.name else "(unnamed)"


MAX_VIEW_LENGTH = 128
"""The longest name of a view (`TaskManager.events`) an answer keeps; the bridge's are 16."""

MAX_DELIVERED = 1024
"""The most requests a view opened again may say it delivered before (`TaskManager.events`)."""

MAX_NAME_LENGTH = 128
"""The longest name of a tool (MCP's own advice: 1 to 128 characters; each Task message carries
it) or of a worker (a lost worker's tasks name it in their status message)."""

MAX_OWNER_LENGTH = 256
"""The longest owner a task is stored under (a bridge's are `principal:NAME` or `session:...`)."""

MAX_STATUS_MESSAGE_BYTES = 4096
"""The largest status message a task keeps, in UTF-8: UpdateStatus's and UpdateTask's, Fail's
error, CancelTask's reason. Every Task message carries it, a ListTasks page up to max_page_size
of them: 500 tasks of 4 KiB each, their ids and tool names are some 2.3 MB, well under a gRPC
client's default 4 MiB receive limit."""

MAX_TOOLS_PER_WORKER = 1000
"""The most tools one worker may declare."""


def _check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(field, f"at most {limit} characters, got {len(value)}")


def _check_view(view: str) -> None:
    _check_length("view_id", view, MAX_VIEW_LENGTH)


def check_text_size(field: str, text: str, limit: int) -> None:
    """PayloadTooLarge naming `field` when `text` is more than `limit` bytes of UTF-8."""
    # A character is at most 4 bytes: most texts need no encoding to be measured.
    if len(text) * 4 > limit:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise PayloadTooLarge(field, size, limit)


def _check_status_message(field: str, message: str) -> None:
    check_text_size(field, message, MAX_STATUS_MESSAGE_BYTES)


def check_tool_count(count: int) -> None:
    """A worker declares at most MAX_TOOLS_PER_WORKER tools (checked before they are read one by one)."""
    if count > MAX_TOOLS_PER_WORKER:
        raise InvalidArgument("tools", f"at most {MAX_TOOLS_PER_WORKER} per worker, got {count}")


def _gone_from(request: ClientRequest, view: str) -> bool:
    """Whether a view (`TaskManager.events`) that delivered the request should call it off."""
    if request.state is RequestState.WITHDRAWN:
        return True
    # A view without a name cannot tell another view's answer from its own.
    return bool(view) and request.state is RequestState.ANSWERED and request.answered_by != view


def _public_state(task: TaskRecord) -> tuple[object, ...]:
    return (task.status, task.status_message, task.last_updated_at, task.ttl_ms)


class TaskManager:
    """The one place where task state changes."""

    def __init__(
        self,
        store: TaskStore,
        limits: ServiceLimits | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.store = store
        self.limits = limits or ServiceLimits()
        self.clock = clock
        # Leases do not run out while no service was there to renew them: a worker
        # whose lease lapsed during a restart gets one more lease from our start
        # to reconnect and heartbeat before the sweeper declares it lost.
        self._grace_until = clock() + self.limits.lease_ttl_ms

    # ----------------------------------------------------------------- waiting

    async def _wait_until(
        self, keys: Iterable[str], check: Callable[[], Awaitable[T | None]], *, first: bool = False
    ) -> T:
        """Re-check stored state each time one of `keys` is published, until `check` gives a value.

        Subscribing before the first check means no change can slip between the
        read and the wait. The caller ends a wait by cancelling it. `first`: see ChangeFeed.
        """
        with self.store.changes.subscribe(keys, first=first) as subscription:
            while True:
                value = await check()
                if value is not None:
                    return value
                await subscription.wait()

    # ----------------------------------------------------------------- reading

    def _gone(self, task: TaskRecord | None, owner: str | None = None) -> bool:
        """Whether a task is not there for a caller: none stored, expired (the sweep deletes it
        later) or (with `owner`) another owner's. The one place that decides it."""
        return task is None or task.expires_at <= self.clock() or (owner is not None and task.owner != owner)

    def _visible(self, task_id: str, task: TaskRecord | None, owner: str | None = None) -> TaskRecord:
        """The task unless it is `_gone`: then not found."""
        if task is None or self._gone(task, owner):
            raise TaskNotFound(task_id)
        return task

    async def get_task(self, task_id: str) -> TaskRecord:
        return self._visible(task_id, await self.store.get_task(task_id))

    async def lookup_task(self, owner: str, task_id: str) -> TaskRecord:
        """A task as its owner sees it: another owner's task does not exist."""
        return self._visible(task_id, await self.store.get_task(task_id), owner)

    async def _update(
        self, task_id: str, change: Callable[[TaskRecord], TaskRecord], owner: str | None = None
    ) -> TaskRecord:
        """`store.update_task` of a task `_visible` finds: every change, like every read, takes an
        expired task (one the sweep has not deleted yet) for one that is not there."""

        def visible_change(task: TaskRecord) -> TaskRecord:
            return change(self._visible(task_id, task, owner))

        return await self.store.update_task(task_id, visible_change)

    async def list_tasks(
        self, owner: str, page_token: str = "", page_size: int = 0
    ) -> tuple[list[TaskRecord], str]:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or self.limits.default_page_size, self.limits.max_page_size)
        try:
            after = TaskCursor.decode(page_token) if page_token else None
        except ValueError as exc:
            raise InvalidArgument("page_token", str(exc)) from exc
        now = self.clock()
        tasks = await self.store.list_tasks(owner, after, size + 1)
        page = tasks[:size]
        next_token = TaskCursor.after_task(page[-1]).encode() if len(tasks) > size else ""
        return [t for t in page if t.expires_at > now], next_token

    async def task_result(self, owner: str, task_id: str) -> TaskRecord:
        task = await self.lookup_task(owner, task_id)
        if not task.status.is_terminal:
            raise InvalidTransition(task_id, task.status.value, "read the result", "it has not finished")
        return task

    # -------------------------------------------------------- status changes

    def _changed(self, task: TaskRecord, **changes: object) -> TaskRecord:
        return task.replace(last_updated_at=self.clock(), **changes)

    def _require(self, task: TaskRecord, status: TaskStatus, wanted: str) -> None:
        if not can_transition(task.status, status):
            why = (
                "a cancelled task ignores late results"
                if task.status is TaskStatus.CANCELLED
                else "its status is final"
            )
            raise InvalidTransition(task.task_id, task.status.value, wanted, why)

    async def _finish(self, task: TaskRecord) -> None:
        """Tell the worker that held a task which just became terminal that it has room again."""
        if task.worker_id:
            await self.store.changes.publish((room_key(task.worker_id),))

    @staticmethod
    def _under_lease(task: TaskRecord, lease_id: str) -> None:
        """A worker's call that names its lease acts only while the task is held under it: not
        once the task went back to the queue or to another worker (this one was declared lost)."""
        if lease_id and task.lease_id != lease_id:
            why = "the task went to another worker" if task.lease_id else "the task went back to the queue"
            raise LeaseNotHeld(lease_id, why)

    async def update_status(
        self, task_id: str, message: str, *, notify: bool = True, lease_id: str = ""
    ) -> TaskRecord:
        _check_status_message("status_message", message)

        def change(task: TaskRecord) -> TaskRecord:
            self._under_lease(task, lease_id)
            self._require(task, task.status, "update its status")
            return self._changed(task, status_message=message, notify=notify)

        return await self._update(task_id, change)

    async def _end(
        self,
        task_id: str,
        status: TaskStatus,
        wanted: str,
        *,
        owner: str | None = None,
        lease_id: str = "",
        **changes: object,
    ) -> TaskRecord:
        """Make a task terminal (as `owner` sees it, or under `lease_id`, when given) and tell
        its worker."""

        def change(task: TaskRecord) -> TaskRecord:
            self._under_lease(task, lease_id)
            self._require(task, status, wanted)
            return self._changed(task, status=status, dispatch=Dispatch.DONE, **changes)

        task = await self._update(task_id, change, owner)
        await self._finish(task)
        return task

    async def complete(
        self, task_id: str, result: JsonObject, *, notify: bool = True, lease_id: str = ""
    ) -> TaskRecord:
        return await self._end(
            task_id, TaskStatus.COMPLETED, "complete", lease_id=lease_id, result=result, notify=notify
        )

    async def fail(self, task_id: str, error: str, *, notify: bool = True, lease_id: str = "") -> TaskRecord:
        _check_status_message("error", error)
        return await self._end(
            task_id, TaskStatus.FAILED, "fail", lease_id=lease_id, status_message=error, notify=notify
        )

    async def cancel(self, owner: str, task_id: str, reason: str = "") -> TaskRecord:
        _check_status_message("reason", reason)
        return await self._end(
            task_id,
            TaskStatus.CANCELLED,
            "cancel",
            owner=owner,
            status_message=reason or "The task was cancelled by request.",
            notify=True,
        )

    async def set_status(
        self, task_id: str, status: TaskStatus | None, message: str | None, *, notify: bool = True
    ) -> TaskRecord:
        """Change status and/or message in one step, as the SDK's `TaskStore.update_task` does.

        COMPLETED is refused: a completed task needs its result, so use `complete`.
        """
        if status is TaskStatus.COMPLETED:
            raise InvalidArgument("status", "use Complete, which stores the result with the status")
        if message is not None:
            _check_status_message("status_message", message)

        def change(task: TaskRecord) -> TaskRecord:
            new_status = task.status if status is None else status
            self._require(task, new_status, f"become {new_status.value}")
            return self._changed(
                task,
                status=new_status,
                status_message=task.status_message if message is None else message,
                notify=notify,
                dispatch=Dispatch.DONE if new_status.is_terminal else task.dispatch,
            )

        task = await self._update(task_id, change)
        if task.status.is_terminal:
            await self._finish(task)
        return task

    async def delete_task(self, task_id: str) -> bool:
        """Delete a task; False when there was none to find (an expired one is deleted all the same)."""
        gone = self._gone(await self.store.get_task(task_id))
        return await self.store.delete_task(task_id) and not gone

    def follow(self, owner: str, task_id: str) -> AsyncIterator[TaskRecord]:
        """`watch` as the task's owner sees it."""
        return self._watch(task_id, owner)

    async def watch_tools(self) -> AsyncIterator[dict[str, ToolSpec]]:
        """The tools of live workers, then the set again after each change."""
        last: dict[str, ToolSpec] | None = None
        while True:
            seen = last

            async def changed() -> dict[str, ToolSpec] | None:
                tools = await self.tools()
                return None if tools == seen else tools  # noqa: B023 - awaited in this pass

            last = await self._wait_until((TOOLS_KEY,), changed)
            yield last

    def watch(self, task_id: str) -> AsyncIterator[TaskRecord]:
        """The task's current state, then each change of it; ends after a terminal state."""
        return self._watch(task_id, None)

    async def _watch(self, task_id: str, owner: str | None) -> AsyncIterator[TaskRecord]:
        last: tuple[object, ...] | None = None
        while True:
            current = last

            async def changed() -> TaskRecord | None:
                task = self._visible(task_id, await self.store.get_task(task_id), owner)
                return None if _public_state(task) == current else task  # noqa: B023 (used in this pass)

            task = await self._wait_until((task_key(task_id),), changed)
            last = _public_state(task)
            yield task
            if task.status.is_terminal:
                return

    # ------------------------------------------------------- client requests

    async def ask(
        self, task_id: str, method: str, params: JsonObject, request_id: str = "", *, lease_id: str = ""
    ) -> tuple[TaskRecord, ClientRequest]:
        """Store a request for the client (status input_required), or re-attach to it by id.

        A worker that names a `request_id` it used before gets that request back,
        answered or not: it is never asked twice. With `lease_id`, only while the task is
        held under that lease.
        """
        _check_id("request_id", request_id)
        rid = request_id or new_id()

        def change(task: TaskRecord) -> TaskRecord:
            self._under_lease(task, lease_id)
            existing = task.find_request(rid)
            if existing is not None:
                if existing.state is RequestState.WITHDRAWN:
                    raise RequestWithdrawn(task_id, rid)
                if existing.method != method:
                    raise InvalidArgument("request_id", f"names a {existing.method} request, not {method}")
                return task
            if task.status is TaskStatus.CANCELLED:
                raise TaskCancelled(task_id)
            self._require(task, TaskStatus.INPUT_REQUIRED, "ask the client")
            now = self.clock()
            request = ClientRequest(
                request_id=rid,
                method=method,
                params=params,
                sequence=len(task.requests) + 1,
                created_at=now,
            )
            return task.replace(
                status=TaskStatus.INPUT_REQUIRED,
                requests=(*task.requests, request),
                last_updated_at=now,
                notify=True,
            )

        task = await self._update(task_id, change)
        request = task.find_request(rid)
        assert request is not None
        return task, request

    async def wait_for_answer(
        self, task_id: str, request_id: str, *, lease_id: str = ""
    ) -> tuple[TaskRecord, ClientRequest]:
        """Wait until the client answered; raises TaskCancelled if the task is cancelled first,
        and LeaseNotHeld (with `lease_id`) or RequestWithdrawn once the asking worker lost it."""

        async def answered() -> tuple[TaskRecord, ClientRequest] | None:
            task = await self.get_task(task_id)
            request = task.find_request(request_id)
            if request is None:
                raise RequestNotFound(task_id, request_id)
            self._under_lease(task, lease_id)
            if request.state is RequestState.ANSWERED:
                return task, request
            if task.status is TaskStatus.CANCELLED:
                raise TaskCancelled(task_id)
            if request.state is RequestState.WITHDRAWN:
                raise RequestWithdrawn(task_id, request_id)
            if task.status.is_terminal:
                raise InvalidTransition(
                    task_id, task.status.value, "wait for an answer", "the task ended first"
                )
            return None

        # The worker's tool waits on this: woken before the task's watchers (status notifications).
        return await self._wait_until((task_key(task_id),), answered, first=True)

    async def answer(
        self,
        owner: str,
        task_id: str,
        request_id: str,
        *,
        result: JsonObject | None = None,
        error: JsonObject | None = None,
        view: str = "",
    ) -> TaskRecord:
        """Store the client's answer to a pending request; the first answer wins. `view` names the
        view of `events` whose delivery the client answered: the other views are told to call
        theirs off."""
        if (result is None) == (error is None):
            raise InvalidArgument("answer", "give exactly one of result and error")
        _check_view(view)

        def change(task: TaskRecord) -> TaskRecord:
            request = task.find_request(request_id)
            if request is None:
                raise RequestNotFound(task_id, request_id)
            if request.state is RequestState.ANSWERED:
                raise AlreadyAnswered(request_id)
            if request.state is RequestState.WITHDRAWN:
                raise RequestWithdrawn(task_id, request_id)
            if task.status.is_terminal:
                raise InvalidTransition(task_id, task.status.value, "take an answer")
            answered = dataclasses.replace(
                request, state=RequestState.ANSWERED, result=result, error=error, answered_by=view
            )
            requests = tuple(answered if r.request_id == request_id else r for r in task.requests)
            still_pending = any(r.state is RequestState.PENDING for r in requests)
            return self._changed(
                task,
                requests=requests,
                status=TaskStatus.INPUT_REQUIRED if still_pending else TaskStatus.WORKING,
                notify=True,
            )

        return await self._update(task_id, change, owner)

    async def events(
        self,
        owner: str,
        task_id: str,
        *,
        changes: bool = True,
        view: str = "",
        already: Collection[str] = (),
    ) -> AsyncGenerator[TaskEvent, None]:
        """A bridge's view of a task until it ends: state changes (unless not `changes`),
        unanswered requests and the withdrawal of those it delivered, then its end.

        Requests still pending from an earlier view are delivered again, in order,
        so a client that dropped out of `tasks/result` loses nothing. When two views are open at
        once, both deliver a request: a view named `view` also reports as withdrawn each request
        it delivered that was answered other than through it (`answer` with another view).
        `already`: the requests a view opened again after a break delivered before it (and still
        holds): not delivered again, and withdrawn as if this one had delivered them.
        """
        _check_view(view)
        if len(already) > MAX_DELIVERED:
            raise InvalidArgument("delivered_request_ids", f"at most {MAX_DELIVERED} request ids")
        last: tuple[object, ...] | None = None
        delivered: set[str] = set(already)
        # Delivered and, as far as this view knows, still pending: watched for a withdrawal.
        unanswered: set[str] = set(already)
        while True:
            seen = last

            async def news() -> tuple[TaskRecord, list[ClientRequest], list[ClientRequest]] | None:
                task = await self.lookup_task(owner, task_id)
                fresh = [r for r in task.pending_requests if r.request_id not in delivered]
                gone: list[ClientRequest] = []
                for request_id in unanswered:
                    request = task.find_request(request_id)
                    if request is not None and _gone_from(request, view):
                        gone.append(request)
                changed = changes and _public_state(task) != seen  # noqa: B023 (this pass)
                if fresh or gone or changed or task.status.is_terminal:
                    return task, fresh, gone
                return None

            # A client's tasks/result waits on this: woken before the task's watchers.
            task, fresh, gone = await self._wait_until((task_key(task_id),), news, first=True)
            if changes and _public_state(task) != last:
                last = _public_state(task)
                yield TaskChanged(task)
            if task.status.is_terminal:
                yield TaskFinished(task)
                return
            for request in sorted(gone, key=lambda r: r.sequence):
                unanswered.discard(request.request_id)
                yield RequestWithdrawal(task, request)
            if unanswered:  # answered through this view (or any, for an unnamed view): kept
                unanswered.intersection_update(r.request_id for r in task.pending_requests)
            for request in sorted(fresh, key=lambda r: r.sequence):
                delivered.add(request.request_id)
                unanswered.add(request.request_id)
                yield RequestQueued(task, request)

    async def wait_finished(self, owner: str, task_id: str) -> TaskRecord:
        async def finished() -> TaskRecord | None:
            task = await self.lookup_task(owner, task_id)
            return task if task.status.is_terminal else None

        return await self._wait_until((task_key(task_id),), finished)

    # ------------------------------------------------------- creating tasks

    def _ttl(self, requested: int | None) -> int:
        if requested is None:
            return self.limits.default_ttl_ms
        return min(check_ttl(requested), self.limits.max_ttl_ms)

    async def create_task(
        self,
        owner: str,
        tool_name: str = "",
        arguments: JsonObject | None = None,
        *,
        ttl_ms: int | None = None,
        meta: JsonObject | None = None,
        task_id: str = "",
        client_capabilities: JsonObject | None = None,
    ) -> TaskRecord:
        """Create a task; with a tool name it is queued for a worker that serves the tool.

        Without one, nobody is dispatched: the creator runs the work itself (the
        SDK's TaskStore usage). A caller-chosen `task_id` must be free.
        """
        _check_id("task_id", task_id)
        _check_length("owner", owner, MAX_OWNER_LENGTH)
        ttl = self._ttl(ttl_ms)
        spec: ToolSpec | None = None
        if tool_name:
            spec = (await self.tools()).get(tool_name)
            if spec is None:
                raise ToolNotServed(tool_name)
        now = self.clock()
        task = TaskRecord(
            task_id=task_id or new_id(),
            owner=owner,
            status=TaskStatus.WORKING,
            created_at=now,
            last_updated_at=now,
            ttl_ms=ttl,
            poll_interval_ms=self.limits.poll_interval_ms,
            tool_name=tool_name,
            arguments=arguments or {},
            meta=meta or {},
            dispatch=Dispatch.QUEUED if spec else Dispatch.DONE,
            retry_safe=spec.retry_safe if spec else False,
            client_capabilities=client_capabilities,
        )
        try:
            await self.store.insert_task(task)
        except ValueError:
            # Taken, unless by an expired task the sweep has not deleted yet: delete that one now.
            if not task_id or not self._gone(await self.store.get_task(task_id)):
                raise TaskExists(task.task_id) from None
            await self.store.delete_task(task_id)
            try:
                await self.store.insert_task(task)
            except ValueError:
                raise TaskExists(task.task_id) from None
        if tool_name:
            await self.store.changes.publish((tool_key(tool_name),))
        return task

    # --------------------------------------------------------------- workers

    async def tools(self) -> dict[str, ToolSpec]:
        """Tools of live workers by name; the earliest-registered declaration wins."""
        now = self.clock()
        tools: dict[str, ToolSpec] = {}
        for worker in await self.store.list_workers():
            if self._alive(worker, now):
                for tool in worker.tools:
                    tools.setdefault(tool.name, tool)
        return tools

    async def register_worker(
        self,
        tools: Sequence[ToolSpec],
        *,
        worker_id: str = "",
        name: str = "",
        max_concurrent_tasks: int = 1,
    ) -> WorkerRecord:
        _check_id("worker_id", worker_id)
        _check_length("name", name, MAX_NAME_LENGTH)
        if max_concurrent_tasks < 0:
            raise InvalidArgument("max_concurrent_tasks", "must not be negative")
        check_tool_count(len(tools))
        names = [t.name for t in tools]
        declared = collections.Counter(names)
        for index, tool in enumerate(tools):
            if not tool.name:
                raise InvalidArgument(f"tools[{index}].name", "must not be empty")
            _check_length(f"tools[{index}].name", tool.name, MAX_NAME_LENGTH)
            if declared[tool.name] > 1:
                raise InvalidArgument(f"tools[{index}].name", f"{tool.name!r} is declared twice")
        worker = WorkerRecord(
            worker_id=worker_id or new_id(),
            name=name,
            tools=tuple(tools),
            max_concurrent_tasks=max_concurrent_tasks or 1,
            lease_expires_at=self.clock() + self.limits.lease_ttl_ms,
        )
        await self.store.put_worker(worker)
        await self.store.changes.publish(
            (TOOLS_KEY, worker_key(worker.worker_id), *(tool_key(n) for n in names))
        )
        return worker

    def _alive(self, worker: WorkerRecord, now: int) -> bool:
        return max(worker.lease_expires_at, self._grace_until) > now

    async def _live_worker(self, worker_id: str) -> WorkerRecord:
        worker = await self.store.get_worker(worker_id)
        if worker is None or not self._alive(worker, self.clock()):
            raise WorkerNotFound(worker_id)
        return worker

    async def heartbeat(self, worker_id: str, running: Iterable[str] = ()) -> tuple[WorkerRecord, list[str]]:
        """Renew the worker's leases; say which of its running tasks it should stop."""
        worker = await self._live_worker(worker_id)
        worker = dataclasses.replace(worker, lease_expires_at=self.clock() + self.limits.lease_ttl_ms)
        await self.store.put_worker(worker)
        stop: list[str] = []
        for task_id in running:
            task = await self.store.get_task(task_id)
            if task is None or self._gone(task) or task.status.is_terminal or task.worker_id != worker_id:
                stop.append(task_id)
        return worker, stop

    async def unregister_worker(self, worker_id: str) -> None:
        worker = await self.store.get_worker(worker_id)
        if worker is None:
            raise WorkerNotFound(worker_id)
        await self.store.delete_worker(worker_id)
        for task in await self.store.tasks_of_worker(worker_id):
            await self._lose_lease(task.task_id, worker_id, f"worker {_label(worker)} withdrew")
        # worker_key ends the worker's own assignment stream (it re-checks and finds no worker).
        await self.store.changes.publish((TOOLS_KEY, worker_key(worker_id)))

    async def assignments(self, worker_id: str) -> AsyncIterator[TaskRecord]:
        """Offer tasks to a worker as it has room; unacknowledged offers come again on reconnect.

        Raises WorkerNotFound when the worker is unknown at the start; ends when it goes away.
        """
        worker = await self._live_worker(worker_id)
        sent: set[str] = set()
        full = False
        while True:
            tools = worker.tool_names
            keys = (worker_key(worker_id), *(tool_key(n) for n in tools))
            if full:
                # Room made matters only to a full worker: one with room took the whole queue,
                # and a task queued later publishes its tool. So a task's end, the usual case of a
                # worker with room, wakes nobody here.
                keys = (*keys, room_key(worker_id))
            # One subscription, from before the first read until the worker's tools or its
            # fullness change: it holds any publish made while tasks are being yielded, so no
            # read is needed until the next one.
            with self.store.changes.subscribe(keys) as subscription:
                while True:
                    try:
                        worker, offered, now_full = await self._offers(worker_id, sent)
                    except WorkerNotFound:
                        # Unregistered or swept while we waited: the stream simply ends. A
                        # worker that reconnects is told NOT_FOUND and registers again.
                        return
                    for task in offered:
                        sent.add(task.lease_id)
                        yield task
                    if worker.tool_names != tools or now_full != full:
                        # Registered again with other tools, or full now, or not any more: listen
                        # for the keys that matter now, and read again once subscribed to them.
                        full = now_full
                        break
                    # _offers took tasks until the worker was full or the queue empty: only a
                    # publish (a task queued, room made, the worker changed) makes more to take.
                    await subscription.wait()

    async def _offers(self, worker_id: str, sent: set[str]) -> tuple[WorkerRecord, list[TaskRecord], bool]:
        """The worker as it is now, what to send it (its offers not yet sent, by lease, then
        queued tasks claimed for it while it has room), and whether it is full now."""
        current = await self._live_worker(worker_id)
        held = await self.store.tasks_of_worker(worker_id)
        again = [t for t in held if t.dispatch is Dispatch.OFFERED and t.lease_id not in sent]
        room = current.max_concurrent_tasks - len(held)
        fresh: list[TaskRecord] = []
        # Read the queue again when other workers won claims: tasks beyond the
        # first read may still be waiting, and no publish would wake us for them.
        tried: set[str] = set()
        while len(fresh) < room:
            wanted = room - len(fresh)
            candidates = await self.store.queued_tasks(current.tool_names, wanted)
            if tried.issuperset(t.task_id for t in candidates):
                break
            for candidate in candidates:
                tried.add(candidate.task_id)
                claimed = await self._offer(candidate.task_id, current)
                if claimed is not None:
                    fresh.append(claimed)
            if len(candidates) < wanted:
                break  # that was the whole queue
        return current, again + fresh, len(fresh) >= room

    async def _offer(self, task_id: str, worker: WorkerRecord) -> TaskRecord | None:
        """Claim a queued task for a worker; None when another worker was faster."""
        lease_id = new_id()

        def change(task: TaskRecord) -> TaskRecord:
            if task.dispatch is not Dispatch.QUEUED or task.status.is_terminal:
                return task
            return task.replace(
                dispatch=Dispatch.OFFERED,
                worker_id=worker.worker_id,
                lease_id=lease_id,
                lease_expires_at=self.clock() + self.limits.lease_ttl_ms,
                attempts=task.attempts + 1,
            )

        try:
            task = await self._update(task_id, change)
        except TaskNotFound:
            return None
        return task if task.lease_id == lease_id else None

    def _held(self, task: TaskRecord, worker_id: str, lease_id: str) -> None:
        if task.worker_id != worker_id or task.lease_id != lease_id:
            raise LeaseNotHeld(lease_id, "the task was given to another worker or handed back")
        if task.status.is_terminal:
            raise InvalidTransition(task.task_id, task.status.value, "run")

    async def ack(self, worker_id: str, task_id: str, lease_id: str) -> TaskRecord:
        worker = await self._live_worker(worker_id)

        def change(task: TaskRecord) -> TaskRecord:
            self._held(task, worker_id, lease_id)
            if task.dispatch is Dispatch.RUNNING:
                return task
            return task.replace(dispatch=Dispatch.RUNNING, lease_expires_at=worker.lease_expires_at)

        return await self._update(task_id, change)

    def _requeued(self, task: TaskRecord) -> TaskRecord:
        """The task back in the queue, for another run. The questions its holding left
        unanswered are withdrawn, as that run asks its own: they go to no client from now on,
        and a task waiting only on them is working again (its next run's status)."""
        queued = {"dispatch": Dispatch.QUEUED, "worker_id": "", "lease_id": "", "lease_expires_at": 0}
        if not task.pending_requests:
            return task.replace(**queued)
        requests = tuple(
            dataclasses.replace(r, state=RequestState.WITHDRAWN) if r.state is RequestState.PENDING else r
            for r in task.requests
        )
        status = TaskStatus.WORKING if task.status is TaskStatus.INPUT_REQUIRED else task.status
        return self._changed(task, requests=requests, status=status, notify=True, **queued)

    async def release(self, worker_id: str, task_id: str, lease_id: str) -> TaskRecord:
        def change(task: TaskRecord) -> TaskRecord:
            self._held(task, worker_id, lease_id)
            return self._requeued(task)

        task = await self._update(task_id, change)
        await self.store.changes.publish((tool_key(task.tool_name), room_key(worker_id)))
        return task

    async def _lose_lease(self, task_id: str, worker_id: str, why: str) -> TaskRecord | None:
        """The worker is gone: run the task again where that is safe, else fail it."""

        def change(task: TaskRecord) -> TaskRecord:
            if task.worker_id != worker_id or task.dispatch not in (Dispatch.OFFERED, Dispatch.RUNNING):
                return task
            if task.status.is_terminal:
                return task.replace(dispatch=Dispatch.DONE)
            if task.dispatch is Dispatch.OFFERED or task.retry_safe:
                return self._requeued(task)
            return self._changed(
                task,
                status=TaskStatus.FAILED,
                status_message=f"The worker running this task was lost ({why}); the work was interrupted.",
                dispatch=Dispatch.DONE,
                notify=True,
            )

        try:
            task = await self._update(task_id, change)
        except TaskNotFound:
            return None
        if task.dispatch is Dispatch.QUEUED:
            log.info("task %s re-queued: %s", task_id, why)
            await self.store.changes.publish((tool_key(task.tool_name),))
        elif task.status is TaskStatus.FAILED:
            log.warning("task %s failed: %s", task_id, why)
        return task

    # --------------------------------------------------------------- sweeping

    async def sweep(self) -> None:
        """Enforce time: expired tasks, workers without heartbeat, offers never acknowledged."""
        now = self.clock()
        expired = await self.store.delete_expired_tasks(now)
        if expired:
            log.info("deleted %d expired task(s)", len(expired))
        lost: list[str] = []
        for worker in await self.store.list_workers():
            if self._alive(worker, now):
                continue
            lost.append(worker_key(worker.worker_id))
            await self.store.delete_worker(worker.worker_id)
            silence = now - worker.lease_expires_at + self.limits.lease_ttl_ms
            for task in await self.store.tasks_of_worker(worker.worker_id):
                await self._lose_lease(
                    task.task_id,
                    worker.worker_id,
                    f"worker {_label(worker)} sent no heartbeat for {silence} ms",
                )
        if lost:
            # worker_key ends a lost worker's assignment stream, which would otherwise hang.
            await self.store.changes.publish((TOOLS_KEY, *lost))
        for task in await self.store.stale_offers(now):
            await self._lose_lease(task.task_id, task.worker_id, "the assignment was not acknowledged")

    async def run_sweeper(self) -> None:
        """Sweep on a timer until cancelled. A failed sweep is logged and retried next time."""
        interval = self.limits.sweep_interval_ms / 1000
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(interval)
