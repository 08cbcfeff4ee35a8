"""Domain errors as gRPC statuses with `google.rpc.Status` details.

One table decides the code of each domain error; every handler goes through
`grpc_errors`, so a caller always gets a code, a readable message and details
(ErrorInfo with the reason, BadRequest naming the field, ResourceInfo for
what was not found).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import grpc
import pydantic
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from taskservice.domain import errors

log = logging.getLogger(__name__)

DOMAIN = "mcptasks.v1"

CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.TaskNotFound: grpc.StatusCode.NOT_FOUND,
    errors.TaskExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.RequestNotFound: grpc.StatusCode.NOT_FOUND,
    errors.WorkerNotFound: grpc.StatusCode.NOT_FOUND,
    errors.ToolNotServed: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidTransition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.LeaseNotHeld: grpc.StatusCode.FAILED_PRECONDITION,
    errors.RequestWithdrawn: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AlreadyAnswered: grpc.StatusCode.ALREADY_EXISTS,
    errors.TaskCancelled: grpc.StatusCode.CANCELLED,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.StoredDataInvalid: grpc.StatusCode.INTERNAL,
}


def _pack(detail: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    return packed


def status_for(error: errors.DomainError) -> status_pb2.Status:
    code = CODES.get(type(error), grpc.StatusCode.UNKNOWN)
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN))]
    if isinstance(error, errors.InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.description
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    elif isinstance(error, errors.PayloadTooLarge):
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    elif isinstance(error, errors.TaskNotFound):
        details.append(
            _pack(error_details_pb2.ResourceInfo(resource_type="task", resource_name=error.task_id))
        )
    elif isinstance(error, errors.RequestNotFound):
        details.append(
            _pack(error_details_pb2.ResourceInfo(resource_type="request", resource_name=error.request_id))
        )
    elif isinstance(error, errors.WorkerNotFound):
        details.append(
            _pack(error_details_pb2.ResourceInfo(resource_type="worker", resource_name=error.worker_id))
        )
    status = status_pb2.Status(code=code.value[0], message=error.message)
    status.details.extend(details)
    return status


def transport_status(code: grpc.StatusCode, reason: str, message: str) -> status_pb2.Status:
    """A status the service gives before any domain logic runs (a refused token), with the same
    ErrorInfo details as a domain error's."""
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.append(_pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)))
    return status


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: errors.DomainError) -> None:
    status = rpc_status.to_status(status_for(error))
    await context.abort(status.code, status.details, status.trailing_metadata)


class grpc_errors:  # used like a function: `async with grpc_errors(context):`
    """Turn a DomainError raised inside into the matching gRPC status.

    A pydantic ValidationError that got this far is an MCP payload no helper of mcp_payloads
    checked (each turns its own into InvalidArgument or StoredDataInvalid): INTERNAL, as
    StoredDataInvalid, not the UNKNOWN "Unexpected ValidationError" grpc.aio would answer.

    `__aexit__` returns None, so type checkers know nothing is swallowed.
    """

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, pydantic.ValidationError):
            # Logged with where it came from; the caller is told what did not fit.
            log.error("a payload no check of mcp_payloads caught", exc_info=exc)
            first = exc.errors()[0]
            where = ".".join([exc.title, *(str(part) for part in first["loc"])])
            invalid = errors.StoredDataInvalid(where, str(first["msg"]))
            await abort_with(self.context, invalid)
        if isinstance(exc, errors.DomainError):
            if CODES.get(type(exc)) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, None):
                log.warning("%s", exc.message)
            await abort_with(self.context, exc)
