"""Domain errors as gRPC statuses with `google.rpc.Status` details.

One table decides the code of each domain error; every handler goes through
`grpc_errors`, so a caller always gets a code, a readable message and details
(ErrorInfo with the reason, BadRequest naming the field, ResourceInfo for
what was not found). A request protobuf cannot decode is INVALID_ARGUMENT too
(`decoding`), not the UNKNOWN grpc.aio would answer.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import pydantic
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from taskservice_client._convert import clip_utf8

from taskservice import mcp_payloads
from taskservice.domain import errors
from taskservice.grpc_api.convert import MAX_PAYLOAD_DEPTH

log = logging.getLogger(__name__)

DOMAIN = "mcptasks.v1"

# A status goes back in two trailers, its message in grpc-message (percent-encoded: up to 3 bytes
# a byte) and the whole Status in grpc-status-details-bin (base64), and gRPC refuses trailers past
# 8 KiB (some clients at random past 8 KiB, all past 16). A message quotes what the caller sent
# (an id, a field path with the caller's keys): clipped to these many UTF-8 bytes, every status
# stays under 4 KiB of trailers, whatever the input.
MAX_MESSAGE_BYTES = 512
MAX_DETAIL_BYTES = 256

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
    if isinstance(error, errors.InvalidArgument | errors.PayloadTooLarge):
        description = error.description if isinstance(error, errors.InvalidArgument) else error.message
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=clip_utf8(error.field, MAX_DETAIL_BYTES),
            description=clip_utf8(description, MAX_MESSAGE_BYTES),
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    elif isinstance(error, errors.TaskNotFound):
        details.append(_pack(_resource("task", error.task_id)))
    elif isinstance(error, errors.RequestNotFound):
        details.append(_pack(_resource("request", error.request_id)))
    elif isinstance(error, errors.WorkerNotFound):
        details.append(_pack(_resource("worker", error.worker_id)))
    status = status_pb2.Status(code=code.value[0], message=clip_utf8(error.message, MAX_MESSAGE_BYTES))
    status.details.extend(details)
    return status


def _resource(kind: str, name: str) -> error_details_pb2.ResourceInfo:
    return error_details_pb2.ResourceInfo(resource_type=kind, resource_name=clip_utf8(name, MAX_DETAIL_BYTES))


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
            found = mcp_payloads.not_valid(exc, exc.title, exc.title)
            invalid = errors.StoredDataInvalid(found.field, found.description)
            await abort_with(self.context, invalid)
        if isinstance(exc, errors.DomainError):
            if CODES.get(type(exc)) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, None):
                log.warning("%s", exc.message)
            await abort_with(self.context, exc)


class _Undecodable:
    """What `decoding`'s deserializer gives for bytes protobuf cannot decode."""

    __slots__ = ("error",)

    def __init__(self, error: errors.InvalidArgument) -> None:
        self.error = error


def decoding(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler`, answering a request protobuf cannot decode (nested past its depth limit, or
    malformed) with INVALID_ARGUMENT instead of UNKNOWN: its deserializer hands the handler a
    marker rather than raising, which the handler turns into the status. Handlers of requests
    that come as a stream are left as they are."""
    deserialize = handler.request_deserializer
    behavior: Any = handler.unary_unary or handler.unary_stream
    if deserialize is None or behavior is None:
        return handler
    kind = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    what = kind.full_name if kind is not None else "the request's message"

    def lenient(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return _Undecodable(
                errors.InvalidArgument(
                    "request",
                    f"protobuf cannot decode it as {what}: nested too deep or malformed"
                    f" (JSON payloads nest at most {MAX_PAYLOAD_DEPTH} levels)",
                )
            )

    serialize = handler.response_serializer
    if handler.unary_unary is not None:

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request.__class__ is _Undecodable:
                await abort_with(context, request.error)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, lenient, serialize)
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if request.__class__ is _Undecodable:
                await abort_with(context, request.error)
            async for response in behavior(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(stream, lenient, serialize)
    if inspect.iscoroutinefunction(behavior):  # the reader/writer form: responses go by context.write

        async def written(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            if request.__class__ is _Undecodable:
                await abort_with(context, request.error)
            await behavior(request, context)

        return grpc.unary_stream_rpc_method_handler(written, lenient, serialize)
    return handler


# grpc's classes are generic only in grpc-stubs.
if TYPE_CHECKING:
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    _GenericHandler = grpc.GenericRpcHandler


class Decoding(_GenericHandler):
    """A generic handler whose methods are `decoding`'s, each wrapped once."""

    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any]) -> None:
        self._inner = inner
        self._methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        found = self._methods.get(method)
        if found is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None  # not kept: a caller could name any number of methods
            found = self._methods[method] = decoding(handler)
        return found
