"""The bridge's transports: streamable HTTP at /mcp, and stdio."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from taskservice.bridge.server import McpBridge

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"


class _McpEndpoint:
    """The ASGI endpoint at /mcp (a plain Route, so /mcp is not redirected to /mcp/)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


def http_app(bridge: McpBridge) -> Starlette:
    manager = StreamableHTTPSessionManager(app=bridge.server, stateless=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route(MCP_PATH, endpoint=_McpEndpoint(manager))], lifespan=lifespan)


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not a HOST:PORT address: {address!r}")
    return host.strip("[]"), int(port)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the process that embeds it decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpBridgeServer:
    """The bridge over streamable HTTP. The socket is bound at construction, so a bad
    address fails there with OSError (uvicorn itself would exit the process)."""

    def __init__(self, bridge: McpBridge, address: str, *, log_level: str = "warning") -> None:
        host, port = split_host_port(address)
        self.socket = socket.create_server(
            (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
        )
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(http_app(bridge), log_level=log_level, lifespan="on", access_log=False)
        self.server = _Uvicorn(config)

    async def serve(self) -> None:
        """Serve until `stop`."""
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        self.server.should_exit = True


async def serve_stdio(bridge: McpBridge) -> None:
    async with stdio_server() as (read, write):
        await bridge.server.run(read, write, bridge.initialization_options())
