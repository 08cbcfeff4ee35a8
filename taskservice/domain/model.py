"""The task model: records, statuses and their legal transitions.

Records are immutable; a change makes a new record (`TaskRecord.replace`, or
`dataclasses.replace` for the others) inside a store's atomic update. Times are
integer milliseconds since the epoch. Everything here is plain data: JSON in and
out, no transport and no MCP types.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

JsonObject = dict[str, Any]

D = TypeVar("D")


def replacer(cls: type[D]) -> Callable[[D, Mapping[str, Any]], D]:
    """`dataclasses.replace` for one frozen, slotted dataclass, made once: a copy that sets each
    slot directly, instead of looping over the fields and calling the frozen `__init__` on every
    change (a TaskRecord, the copy made on every task change: 3.7 -> 1.2 us). Like `replace`, it
    refuses a name that is not a field. The code is generated the way `dataclasses` generates
    `__init__`, so that a new field is copied without anyone listing it here. It makes an
    instance of `cls` itself (not of a subclass), and refuses a class whose `__init__` does more
    than set the fields (a `__post_init__`, a field outside `__init__`), which it would skip."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or not all(field.init for field in fields):
        raise TypeError(f"{cls.__name__}: its __init__ does more than set its fields")
    names = [field.name for field in fields]
    known = frozenset(names)
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, "known": known}
    lines = [
        "def replace(old, changes):",
        "    if not known.issuperset(changes):",
        "        unknown = ', '.join(sorted(set(changes) - known))",
        "        raise TypeError(f'{cls.__name__} has no field(s) {unknown}')",
        "    record = new(cls)",
    ]
    for index, name in enumerate(names):
        namespace[f"set{index}"] = getattr(cls, name).__set__  # the slot's own descriptor
        lines.append(f"    set{index}(record, changes[{name!r}] if {name!r} in changes else old.{name})")
    lines.append("    return record")
    exec("\n".join(lines), namespace)  # our own field names, as dataclasses does
    replace: Callable[[D, Mapping[str, Any]], D] = namespace["replace"]
    return replace


class TaskStatus(enum.StrEnum):
    WORKING = "working"
    INPUT_REQUIRED = "input_required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# Which status may follow which. Terminal statuses have no successors; staying in a
# non-terminal status (a new status message) is always allowed.
LEGAL_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.WORKING: frozenset(
        {
            TaskStatus.WORKING,
            TaskStatus.INPUT_REQUIRED,
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.INPUT_REQUIRED: frozenset(
        {
            TaskStatus.INPUT_REQUIRED,
            TaskStatus.WORKING,
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def can_transition(current: TaskStatus, new: TaskStatus) -> bool:
    return new in LEGAL_TRANSITIONS[current]


class TaskSupport(enum.StrEnum):
    OPTIONAL = "optional"
    REQUIRED = "required"
    FORBIDDEN = "forbidden"


class Dispatch(enum.StrEnum):
    """Where a task stands with the workers."""

    QUEUED = "queued"  # waits for a worker that serves its tool
    OFFERED = "offered"  # sent to a worker, not acknowledged yet
    RUNNING = "running"  # acknowledged: the worker runs it under its lease
    DONE = "done"  # terminal, or created without a tool


class RequestState(enum.StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    # Never answered: the holding that asked lost the task (to the queue or another worker),
    # and the task's next run asks its own questions.
    WITHDRAWN = "withdrawn"


@dataclasses.dataclass(frozen=True, slots=True)
class ClientRequest:
    """A request the task sends to the MCP client, stored until (and after) it is answered."""

    request_id: str
    method: str
    params: JsonObject
    sequence: int
    created_at: int
    state: RequestState = RequestState.PENDING
    result: JsonObject | None = None
    error: JsonObject | None = None  # {"code": int, "message": str, "data": Any}
    # The bridge's view (`TaskManager.events`) that answered, when the answer named one: the
    # other views that delivered the request call theirs off.
    answered_by: str = ""

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "request_id": self.request_id,
            "method": self.method,
            "params": self.params,
            "sequence": self.sequence,
            "created_at": self.created_at,
            "state": self.state.value,
            "result": self.result,
            "error": self.error,
        }
        if self.answered_by:
            data["answered_by"] = self.answered_by
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            request_id=data["request_id"],
            method=data["method"],
            params=data["params"],
            sequence=data["sequence"],
            created_at=data["created_at"],
            state=RequestState(data["state"]),
            result=data.get("result"),
            error=data.get("error"),
            answered_by=data.get("answered_by", ""),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRecord:
    """Everything stored about one task; the store keeps it as one atomic unit."""

    task_id: str
    owner: str
    status: TaskStatus
    created_at: int
    last_updated_at: int
    ttl_ms: int
    poll_interval_ms: int
    status_message: str = ""
    tool_name: str = ""
    arguments: JsonObject = dataclasses.field(default_factory=dict[str, Any])
    meta: JsonObject = dataclasses.field(default_factory=dict[str, Any])
    result: JsonObject | None = None
    requests: tuple[ClientRequest, ...] = ()
    # Whether the last change should reach the client as a status notification.
    notify: bool = True
    # Dispatch to workers.
    dispatch: Dispatch = Dispatch.DONE
    worker_id: str = ""
    lease_id: str = ""
    lease_expires_at: int = 0
    retry_safe: bool = False
    attempts: int = 0
    # The MCP client's capabilities, when the task was created for one (None: unknown).
    client_capabilities: JsonObject | None = None

    @property
    def expires_at(self) -> int:
        return self.created_at + self.ttl_ms

    @property
    def pending_requests(self) -> tuple[ClientRequest, ...]:
        return tuple(r for r in self.requests if r.state is RequestState.PENDING)

    def replace(self, **changes: Any) -> TaskRecord:
        """A copy with `changes`: `dataclasses.replace(self, **changes)`, three times faster."""
        return _replace_task(self, changes)

    def find_request(self, request_id: str) -> ClientRequest | None:
        for request in self.requests:
            if request.request_id == request_id:
                return request
        return None

    def to_json(self) -> JsonObject:
        return {
            "task_id": self.task_id,
            "owner": self.owner,
            "status": self.status.value,
            "created_at": self.created_at,
            "last_updated_at": self.last_updated_at,
            "ttl_ms": self.ttl_ms,
            "poll_interval_ms": self.poll_interval_ms,
            "status_message": self.status_message,
            "tool_name": self.tool_name,
            "arguments": self.arguments,
            "meta": self.meta,
            "result": self.result,
            "requests": [r.to_json() for r in self.requests],
            "notify": self.notify,
            "dispatch": self.dispatch.value,
            "worker_id": self.worker_id,
            "lease_id": self.lease_id,
            "lease_expires_at": self.lease_expires_at,
            "retry_safe": self.retry_safe,
            "attempts": self.attempts,
            "client_capabilities": self.client_capabilities,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            task_id=data["task_id"],
            owner=data["owner"],
            status=TaskStatus(data["status"]),
            created_at=data["created_at"],
            last_updated_at=data["last_updated_at"],
            ttl_ms=data["ttl_ms"],
            poll_interval_ms=data["poll_interval_ms"],
            status_message=data.get("status_message", ""),
            tool_name=data.get("tool_name", ""),
            arguments=data.get("arguments") or {},
            meta=data.get("meta") or {},
            result=data.get("result"),
            requests=tuple(ClientRequest.from_json(r) for r in data.get("requests", ())),
            notify=data.get("notify", True),
            dispatch=Dispatch(data.get("dispatch", Dispatch.DONE.value)),
            worker_id=data.get("worker_id", ""),
            lease_id=data.get("lease_id", ""),
            lease_expires_at=data.get("lease_expires_at", 0),
            retry_safe=data.get("retry_safe", False),
            attempts=data.get("attempts", 0),
            client_capabilities=data.get("client_capabilities"),
        )


_replace_task = replacer(TaskRecord)


@dataclasses.dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool a worker serves (MCP `Tool` plus how it may be dispatched)."""

    name: str
    description: str = ""
    title: str = ""
    input_schema: JsonObject = dataclasses.field(default_factory=lambda: {"type": "object"})
    output_schema: JsonObject | None = None
    task_support: TaskSupport = TaskSupport.OPTIONAL
    retry_safe: bool = False
    annotations: JsonObject | None = None

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "description": self.description,
            "title": self.title,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "task_support": self.task_support.value,
            "retry_safe": self.retry_safe,
            "annotations": self.annotations,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            title=data.get("title", ""),
            input_schema=data.get("input_schema") or {"type": "object"},
            output_schema=data.get("output_schema"),
            task_support=TaskSupport(data.get("task_support", TaskSupport.OPTIONAL.value)),
            retry_safe=data.get("retry_safe", False),
            annotations=data.get("annotations"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A registered worker; it and its leases live while it heartbeats."""

    worker_id: str
    name: str
    tools: tuple[ToolSpec, ...]
    max_concurrent_tasks: int
    lease_expires_at: int

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools)

    def to_json(self) -> JsonObject:
        return {
            "worker_id": self.worker_id,
            "name": self.name,
            "tools": [t.to_json() for t in self.tools],
            "max_concurrent_tasks": self.max_concurrent_tasks,
            "lease_expires_at": self.lease_expires_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            worker_id=data["worker_id"],
            name=data.get("name", ""),
            tools=tuple(ToolSpec.from_json(t) for t in data.get("tools", ())),
            max_concurrent_tasks=data.get("max_concurrent_tasks", 1),
            lease_expires_at=data["lease_expires_at"],
        )
