"""Errors of the service as Python exceptions.

The SDK's `TaskStore` and `TaskContext` raise `ValueError` for an unknown task,
a malformed argument or a change a terminal task does not allow; the service
answers those with NOT_FOUND, INVALID_ARGUMENT and FAILED_PRECONDITION, so
they become `TaskServiceRejected`, a `ValueError`. Every other failure is a
`TaskServiceError`.
"""

from __future__ import annotations

import grpc


class TaskServiceError(Exception):
    """A call to the task service failed; `code` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str, *, method: str = "") -> None:
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{message} ({code.name})")
        self.code = code
        self.message = message
        self.method = method


class TaskServiceRejected(TaskServiceError, ValueError):
    """The service refused the call: unknown task, bad argument or a change its state does not allow."""


class TaskServiceUnavailable(TaskServiceError):
    """The service could not be reached within the retry policy."""


_REJECTED = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

# Codes that mean "the service went away; the same call may be made again".
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


def status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return code, details or ""


def translate(error: grpc.RpcError, method: str = "") -> TaskServiceError:
    code, details = status_of(error)
    if code in _REJECTED:
        return TaskServiceRejected(code, details, method=method)
    if code in RETRYABLE:
        return TaskServiceUnavailable(code, details, method=method)
    return TaskServiceError(code, details, method=method)
