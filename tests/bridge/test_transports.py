"""The HTTP bridge server's socket."""

from __future__ import annotations

import socket

import pytest

from taskservice.bridge.server import McpBridge
from taskservice.bridge.transports import HttpBridgeServer


@pytest.mark.asyncio
async def test_connections_send_without_nagles_delay() -> None:
    """Accepted connections have TCP_NODELAY (asyncio does not set it on create_server's sockets):
    with Nagle's algorithm a small write waits for the client's delayed ACK, 40 ms on Linux."""
    bridge = McpBridge("127.0.0.1:1")  # never called: the channel connects only when used
    http = HttpBridgeServer(bridge, "127.0.0.1:0")
    try:
        with socket.create_connection(("127.0.0.1", http.port)):
            accepted, _ = http.socket.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        http.socket.close()
        await bridge.close()
