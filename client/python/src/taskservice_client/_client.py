"""The one place that makes calls: stubs, call metadata, deadlines and retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import anyio
import grpc

from taskservice_client._channel import ChannelOptions, RetryPolicy, TLSConfig, open_channel
from taskservice_client._errors import RETRYABLE, TaskServiceError, translate
from taskservice_client._outcomes import OutcomeStream
from taskservice_client._proto.mcptasks.v1 import (
    bridge_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
)

log = logging.getLogger("taskservice_client")

pb = task_service_pb2

R = TypeVar("R")

# A unary call may be retried on these too: its deadline passed on a connection
# that died silently (the service restarted), which a new attempt repairs.
UNARY_RETRYABLE = RETRYABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}


@contextlib.asynccontextmanager
async def cancellable() -> AsyncIterator[None]:
    """Around an await on grpc.aio: keep a cancel scope's cancellation recognisable.

    When a task is cancelled while it awaits a grpc.aio call, grpc may end the
    await with a CancelledError of its own, without the mark by which anyio
    knows the cancellation of its cancel scope; the scope would then let it
    escape as if the task itself were cancelled. A checkpoint here re-raises the
    scope's own cancellation when one is pending; a foreign one propagates as is.
    """
    try:
        yield
    except asyncio.CancelledError:
        await anyio.lowlevel.checkpoint()
        raise


class ServiceClient:
    """Stubs of both services over one channel, with the caller's credentials on every call."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        bridge_token: str | None = None,
        tls: TLSConfig | bool = False,
        retry: RetryPolicy | None = None,
        rpc_timeout: float = 30.0,
        channel_options: ChannelOptions | None = None,
    ) -> None:
        """`token` goes with every call; `bridge_token`, when given, with the BridgeService's
        instead (a service with a token per role: see the README's "Tokens and TLS")."""
        if rpc_timeout <= 0:
            raise ValueError("rpc_timeout must be positive")
        self.target = target
        self.channel = open_channel(target, tls=tls, options=channel_options)
        self.retry = retry or RetryPolicy()
        self.rpc_timeout = rpc_timeout
        self.metadata = bearer_metadata(token)
        self.bridge_metadata = bearer_metadata(bridge_token) if bridge_token else None
        # The generated stubs are typed for the synchronous API; the calls are made
        # through `unary` and `stream`, which give them their real types.
        self.tasks: Any = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.bridge: Any = bridge_service_pb2_grpc.BridgeServiceStub(self.channel)
        # Complete and Fail go over it while something runs `outcomes.run()` (a Worker does).
        self.outcomes = OutcomeStream(self)

    async def close(self) -> None:
        await self.channel.close(None)

    async def unary(
        self,
        rpc: Callable[..., Any],
        request: object,
        response_type: type[R],
        *,
        retry: bool = True,
        deadline: float | None = None,
    ) -> R:
        """Make a unary call, again after a backoff while the service is unreachable."""
        backoff = self.retry.backoff()
        outcome = request if isinstance(request, pb.CompleteRequest | pb.FailRequest) else None
        while True:
            try:
                timeout = deadline or self.rpc_timeout
                response = None if outcome is None else await self.outcomes.report(outcome, timeout)
                if response is None:
                    response = await rpc(request, timeout=timeout, metadata=self._metadata(rpc))
                return cast("R", response)
            except grpc.aio.AioRpcError as error:
                name = method_name(rpc)
                if not retry or error.code() not in UNARY_RETRYABLE:
                    raise translate(error, name) from None
                delay = backoff.next_delay()
                if delay is None:
                    raise translate(error, name) from None
                log.debug("%s: %s; again in %.2fs", name, error.code().name, delay)
                await anyio.sleep(delay)

    def stream(self, rpc: Callable[..., Any], request: object) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """Open a server stream (no deadline: it lasts as long as the wait)."""
        return cast("grpc.aio.UnaryStreamCall[Any, Any]", rpc(request, metadata=self._metadata(rpc)))

    def _metadata(self, rpc: Callable[..., Any]) -> Metadata:
        if self.bridge_metadata is not None and method_name(rpc).startswith(BRIDGE_PREFIX):
            return self.bridge_metadata
        return self.metadata


Metadata = tuple[tuple[str, str], ...] | None
BRIDGE_PREFIX = "/mcptasks.v1.BridgeService/"


def bearer_metadata(token: str | None) -> Metadata:
    """The call metadata that carries `token` (`authorization: Bearer`), None without one."""
    return (("authorization", f"Bearer {token}"),) if token else None


def method_name(rpc: Callable[..., Any]) -> str:
    """The full name of a stub's method (`/mcptasks.v1.TaskService/Elicit`), for errors and logs."""
    method = getattr(rpc, "_method", b"")
    if isinstance(method, bytes):
        return method.decode(errors="replace")
    return str(method)


__all__ = [
    "UNARY_RETRYABLE",
    "ServiceClient",
    "TaskServiceError",
    "bearer_metadata",
    "cancellable",
    "method_name",
]
