"""The gRPC server: both services, health, reflection, keepalive and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Sequence
from typing import Any, cast

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # missing from grpc-stubs
from grpc_reflection.v1alpha import reflection
from taskservice_client._proto.mcptasks.v1 import (
    bridge_service_pb2,
    bridge_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
)

from taskservice.domain.errors import StoreUnavailable
from taskservice.domain.service import TaskManager
from taskservice.grpc_api.auth import BRIDGE, WORKER, ServerTLS, TokenInterceptor, Tokens
from taskservice.grpc_api.bridge_servicer import BridgeServicer
from taskservice.grpc_api.errors import Decoding
from taskservice.grpc_api.local import LocalStub
from taskservice.grpc_api.streams import StreamRegistry
from taskservice.grpc_api.task_servicer import TaskServicer

log = logging.getLogger(__name__)

# How often health re-checks the store, and how long one check may take.
STORE_CHECK_INTERVAL = 1.0
STORE_CHECK_TIMEOUT = 3.0

TASK_SERVICE = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
BRIDGE_SERVICE = bridge_service_pb2.DESCRIPTOR.services_by_name["BridgeService"].full_name
SERVICE_NAMES = (
    TASK_SERVICE,
    BRIDGE_SERVICE,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


def server_options(max_payload_bytes: int) -> list[tuple[str, int]]:
    return [
        # gRPC sets SO_REUSEPORT by default, so a second server on a port in use
        # would start "fine" and split the traffic with the first (and, on one
        # SQLite file, wait for changes the other process makes). Refuse instead.
        ("grpc.so_reuseport", 0),
        # Long waits (an elicitation can take a person minutes) cross proxies and
        # NATs: ping idle connections and let clients ping us as well.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Room for a request carrying a few payloads at the limit, so that the
        # per-payload check (which names the field) answers before gRPC's own.
        ("grpc.max_receive_message_length", 4 * max_payload_bytes + 65_536),
        ("grpc.max_send_message_length", 4 * max_payload_bytes + 65_536),
    ]


class GenericHandlersOnly:
    """A grpc.aio server as the generated `add_*Servicer_to_server` functions use it, taking
    their generic handlers (each wrapped by `Decoding`) and not their registered-method ones.

    The generated code (grpcio-tools 1.63 and later) gives each method to the server twice:
    as a generic handler, and as a registered method that gRPC's core matches itself.
    grpc.aio serves a registered method more slowly: measured here, a bare UpdateStatus
    handler cost the server 208-213 us of CPU per call with them and 195-196 us without
    (the bare echo server, generic handlers only: 190 us).
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]) -> None:
        # Each answering a request protobuf cannot decode with INVALID_ARGUMENT (see `Decoding`).
        self._server.add_generic_rpc_handlers([Decoding(handler) for handler in handlers])

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Dropped: the generic handler given with them serves the same methods."""


_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)$")


def probe_bind(listen: str) -> None:
    """Raise OSError with the reason when `listen` (host:port) cannot be bound.

    gRPC only logs why a bind failed (a line of its own on stderr) and says
    "Failed to bind"; binding a plain socket first gives the reason, such as
    "Address already in use", as one clear error. Other address forms are left to gRPC.
    """
    match = _HOST_PORT.match(listen)
    if match is None or match["port"] == "0":
        return
    host = match["v6"] if match["v6"] is not None else (match["host"] or "0.0.0.0")
    try:
        addresses = socket.getaddrinfo(host, int(match["port"]), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from exc
    errors: list[OSError] = []
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
                probe.bind(address)
        except OSError as exc:
            errors.append(exc)
    if errors and len(errors) == len(addresses):  # gRPC serves when any address binds
        raise OSError(f"cannot listen on {listen}: {errors[0].strerror or errors[0]}")


class HealthServicer(health_aio.HealthServicer):  # type: ignore[misc]  # untyped upstream class
    """grpc's asyncio health service, except that Watch streams end once shutdown begins.

    Upstream, a Watch waits forever, so one watching client (a load balancer, a
    bridge) holds `server.stop(grace)` for the whole grace. Here a watcher is told
    NOT_SERVING and its stream then ends with UNAVAILABLE, like the service's own.
    """

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        # Upstream's Watch (grpcio-health-checking 1.66+), plus the shutdown check.
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._gracefully_shutting_down:
                        context.set_code(grpc.StatusCode.UNAVAILABLE)
                        context.set_details("the service is shutting down; reconnect")
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for good, and wake every watcher (of unknown services too) so that it ends."""
        await super().enter_graceful_shutdown()
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()


class TaskServiceServer:
    """Serves a TaskManager over gRPC on one address, and runs its sweeper."""

    def __init__(
        self,
        manager: TaskManager,
        listen: str = "127.0.0.1:50051",
        *,
        store_check_interval: float = STORE_CHECK_INTERVAL,
        tokens: Tokens | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        """`tokens`: what each role's calls must carry (see auth); `tls`: serve TLS instead of
        plaintext. The in-process bridge (local_bridge) needs neither."""
        self.manager = manager
        self.listen = listen
        self.tokens = tokens or Tokens()
        self.tls = tls
        self.store_check_interval = store_check_interval
        self.streams = StreamRegistry()
        self.health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._background: list[asyncio.Task[None]] = []
        self.port = 0
        self.bridge_servicer = BridgeServicer(manager, self.streams)

    def local_bridge(self) -> bridge_service_pb2_grpc.BridgeServiceAsyncStub:
        """The BridgeService for a bridge in this process: its handlers called directly, no channel."""
        return cast(
            "bridge_service_pb2_grpc.BridgeServiceAsyncStub",
            LocalStub(self.bridge_servicer, bridge_service_pb2.DESCRIPTOR.services_by_name["BridgeService"]),
        )

    async def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError when the address cannot be bound."""
        # No interceptor unless a token is set: every call would pay for the check.
        interceptors = (
            [TokenInterceptor(self.tokens, {TASK_SERVICE: WORKER, BRIDGE_SERVICE: BRIDGE})]
            if self.tokens.any
            else []
        )
        server = grpc.aio.server(
            options=server_options(self.manager.limits.max_payload_bytes), interceptors=interceptors
        )
        # Typed as the server it stands for: the generated functions call nothing else on it.
        handlers = cast("grpc.aio.Server", GenericHandlersOnly(server))
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(
            TaskServicer(self.manager, self.streams), handlers
        )
        bridge_service_pb2_grpc.add_BridgeServiceServicer_to_server(self.bridge_servicer, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, handlers)
        reflection.enable_server_reflection(SERVICE_NAMES, server)
        probe_bind(self.listen)
        try:
            if self.tls is None:
                self.port = server.add_insecure_port(self.listen)
            else:
                self.port = server.add_secure_port(self.listen, self.tls.credentials())
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.listen}: {exc}") from exc
        if self.port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        await server.start()
        self._server = server
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._background = [
            asyncio.create_task(self.manager.run_sweeper(), name="taskservice-sweeper"),
            asyncio.create_task(self._check_store(), name="taskservice-store-check"),
        ]
        log.info(
            "gRPC service listening on %s%s%s",
            self.listen.rsplit(":", 1)[0] + f":{self.port}",
            " (TLS)" if self.tls is not None else "",
            "".join(
                f", {role} token required"
                for role, token in ((WORKER, self.tokens.worker), (BRIDGE, self.tokens.bridge))
                if token is not None
            ),
        )
        return self.port

    async def stopping(self) -> None:
        """Report NOT_SERVING from now on (so that load balancers drain it), before `stop`: the
        service still serves while what runs beside it (the MCP bridge) winds down."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: NOT_SERVING, end our own streams, let unary calls finish, stop."""
        if self._server is None:
            return
        server, self._server = self._server, None
        await self.stopping()
        await self.streams.close_all()
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.stop(grace)
        log.info("gRPC service stopped")

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", TASK_SERVICE, BRIDGE_SERVICE):
            await self.health.set(name, status)

    async def _check_store(self) -> None:
        """Health follows the store: NOT_SERVING while it cannot be reached, SERVING once it is back."""
        serving = True
        while True:
            await asyncio.sleep(self.store_check_interval)
            try:
                async with asyncio.timeout(STORE_CHECK_TIMEOUT):
                    await self.manager.store.ping()
                problem = ""
            except (StoreUnavailable, TimeoutError) as exc:
                problem = str(exc) or "the store did not answer in time"
            if serving == (not problem):
                continue
            serving = not problem
            if serving:
                log.info("the store is reachable again: SERVING")
                await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            else:
                log.warning("the store is unreachable (%s): NOT_SERVING", problem)
                await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
