"""What can go wrong in the domain, independent of any transport.

The gRPC layer maps each class to one status code; the bridge maps them to
JSON-RPC errors. Each carries the field or id it is about so the message a
user reads names it.
"""

from __future__ import annotations

SHOWN_LENGTH = 128
"""How much of a value the caller gave (an id, a tool name) a message quotes: every valid id in full."""


def shown(value: str) -> str:
    """`value` quoted for a message: in full up to SHOWN_LENGTH characters, else its start and its
    length (a message goes back in a status's trailers, which gRPC keeps small)."""
    if len(value) <= SHOWN_LENGTH:
        return repr(value)
    return f"{value[:SHOWN_LENGTH]!r}... ({len(value)} characters)"


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    reason: str = "DOMAIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TaskNotFound(DomainError):
    reason = "TASK_NOT_FOUND"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {shown(task_id)} not found")
        self.task_id = task_id


class TaskExists(DomainError):
    reason = "TASK_EXISTS"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {shown(task_id)} already exists")
        self.task_id = task_id


class RequestNotFound(DomainError):
    reason = "REQUEST_NOT_FOUND"

    def __init__(self, task_id: str, request_id: str) -> None:
        super().__init__(f"request {shown(request_id)} of task {shown(task_id)} not found")
        self.task_id = task_id
        self.request_id = request_id


class WorkerNotFound(DomainError):
    reason = "WORKER_NOT_FOUND"

    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"worker {shown(worker_id)} is not registered (or its lease ran out): call RegisterWorker again"
        )
        self.worker_id = worker_id


class ToolNotServed(DomainError):
    reason = "TOOL_NOT_SERVED"

    def __init__(self, tool_name: str) -> None:
        super().__init__(f"no connected worker serves the tool {shown(tool_name)}")
        self.tool_name = tool_name


class InvalidTransition(DomainError):
    """A change the task's current status does not allow."""

    reason = "INVALID_TRANSITION"

    def __init__(self, task_id: str, current: str, wanted: str, why: str = "") -> None:
        text = f"task {shown(task_id)} is {current}: cannot {wanted}"
        super().__init__(f"{text} ({why})" if why else text)
        self.task_id = task_id
        self.current = current
        self.wanted = wanted


class TaskCancelled(DomainError):
    """The task was cancelled while (or before) the caller waited on it."""

    reason = "TASK_CANCELLED"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {shown(task_id)} was cancelled")
        self.task_id = task_id


class AlreadyAnswered(DomainError):
    reason = "ALREADY_ANSWERED"

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request {shown(request_id)} was already answered")
        self.request_id = request_id


class RequestWithdrawn(DomainError):
    reason = "REQUEST_WITHDRAWN"

    def __init__(self, task_id: str, request_id: str) -> None:
        super().__init__(
            f"request {shown(request_id)} of task {shown(task_id)} was withdrawn unanswered: the worker that"
            " asked it lost the task, whose next run asks its own questions"
        )
        self.task_id = task_id
        self.request_id = request_id


class LeaseNotHeld(DomainError):
    reason = "LEASE_NOT_HELD"

    def __init__(self, lease_id: str, why: str) -> None:
        super().__init__(f"lease {shown(lease_id)} is not held by this worker: {why}")
        self.lease_id = lease_id


class InvalidArgument(DomainError):
    """A field of a request does not fit; `field` is its path, such as `result.content[0]`."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class PayloadTooLarge(DomainError):
    reason = "PAYLOAD_TOO_LARGE"

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field} is {size} bytes, over the limit of {limit} bytes")
        self.field = field
        self.size = size
        self.limit = limit


class StoredDataInvalid(DomainError):
    """Something stored does not fit what reads it: stored before the service checked it on the
    way in, or written to the store by hand. Not the caller's fault, and no retry helps."""

    reason = "STORED_DATA_INVALID"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"the stored {field} is not valid: {description}")
        self.field = field
        self.description = description


class StoreUnavailable(DomainError):
    """The store cannot be reached; nothing was written."""

    reason = "STORE_UNAVAILABLE"
