"""A gRPC service called in its own process, without a channel.

`taskservice serve` runs the MCP bridge beside the service. Over a loopback
channel every bridge call would be serialised, framed, and handled twice by
gRPC's C core in the same process (about a third of that process's CPU per
task). `LocalStub` offers the same methods as the generated async stub
(`stub.CreateTask(request)` awaits a response, `stub.StreamTaskEvents(request)`
is iterated) and calls the servicer's handler directly: the servicer still maps
domain errors to status codes and details, and a failed call raises
`grpc.aio.AioRpcError` with that code, so the bridge cannot tell the difference
and keeps one code path for both layouts.

A stream's handler runs in the task that reads the stream (gRPC gives each
handler a task of its own): read each stream from one task, as the bridge does,
so that the service's shutdown (which cancels its streams' tasks) ends it with
UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

MetadataItems = Sequence[tuple[str, str | bytes]]


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: MetadataItems) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing = trailing


def rpc_error(code: grpc.StatusCode, details: str, trailing: MetadataItems = ()) -> grpc.aio.AioRpcError:
    """The error a stub raises for a call that ended with `code`."""
    return grpc.aio.AioRpcError(
        code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*trailing),
        details=details,
        debug_error_string=f"in-process call: {code.name}: {details}",
    )


class LocalContext:
    """The part of `grpc.aio.ServicerContext` that the servicers use, for one in-process call."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: MetadataItems = ()
    ) -> NoReturn:
        raise _Aborted(code, details, trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def failure(self) -> grpc.aio.AioRpcError | None:
        """The error a handler that ended by itself set with set_code, if it did."""
        if self.code is None or self.code is grpc.StatusCode.OK:
            return None
        return rpc_error(self.code, self.details or self.code.name)


UnaryHandler = Callable[[Message, Any], Awaitable[Message]]
StreamHandler = Callable[[Message, Any], AsyncGenerator[Message, None]]


@contextlib.contextmanager
def _as_rpc_errors() -> Iterator[None]:
    """How a call ends, as grpc.aio's stubs raise it: the handler's abort, a deadline, or a bug."""
    try:
        yield
    except _Aborted as exc:
        raise rpc_error(exc.code, exc.details, exc.trailing) from None
    except TimeoutError:
        raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
    except Exception as exc:
        # What grpc.aio answers when a handler raises something it does not know.
        log.exception("in-process call failed")
        raise rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}: {exc}") from None


async def _unary(
    handler: UnaryHandler,
    request: Message,
    timeout: float | None = None,  # noqa: ASYNC109 (the generated stubs' keyword)
    **_: Any,
) -> Message:
    context = LocalContext()
    with _as_rpc_errors():
        async with asyncio.timeout(timeout):
            response = await handler(request, context)
    failure = context.failure()
    if failure is not None:
        raise failure
    return response


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The `google.rpc.Status` a call ended with: its rich details when it carried them."""
    status: status_pb2.Status | None = rpc_status.from_call(cast("grpc.Call", error))
    if status is not None:  # an AioRpcError has the Call methods from_call reads
        return status
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


async def call_locally(
    handler: Callable[[Req, Any], Awaitable[Resp]], request: Req
) -> Resp | status_pb2.Status:
    """A unary handler's response, or the status its call would have ended with."""
    try:
        return cast("Resp", await _unary(cast("UnaryHandler", handler), request))
    except grpc.aio.AioRpcError as error:
        return status_of(error)


async def _stream(
    handler: StreamHandler,
    request: Message,
    timeout: float | None = None,  # noqa: ASYNC109 (the generated stubs' keyword)
    **_: Any,
) -> AsyncIterator[Message]:
    context = LocalContext()
    with _as_rpc_errors():
        async with asyncio.timeout(timeout), contextlib.aclosing(handler(request, context)) as responses:
            async for response in responses:
                yield response
    failure = context.failure()
    if failure is not None:
        raise failure


class LocalStub:
    """A stub for `service` whose methods call `servicer`'s handlers in this process.

    Cast it to the generated `...AsyncStub` type: it has the same method names and
    call shapes (unary methods return awaitables, server-streaming ones async iterators).
    """

    def __init__(self, servicer: object, service: ServiceDescriptor) -> None:
        for method in service.methods:
            if method.client_streaming:
                raise ValueError(f"{service.full_name}.{method.name}: client streams are not supported")
            handler = getattr(servicer, method.name)
            call = _stream if method.server_streaming else _unary
            setattr(self, method.name, functools.partial(call, handler))
