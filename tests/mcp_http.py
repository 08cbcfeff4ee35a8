"""MCP over streamable HTTP for the end-to-end tests: an HTTP bridge in front of a service, and
mcp 1.30's real ClientSession, initialized, answering every elicitation with the name Grace."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientSession, ElicitationFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client  # what streamable_http_client uses itself
from mcp.shared.context import RequestContext
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2_grpc

from taskservice.bridge import HttpBridgeServer, McpBridge
from taskservice.bridge.auth import ClientTokens

NAME = "Grace"


@contextlib.asynccontextmanager
async def http_bridge(
    target: str | bridge_service_pb2_grpc.BridgeServiceAsyncStub,
    tokens: ClientTokens | None = None,
    *,
    wait: float = 10.0,
) -> AsyncIterator[str]:
    """An MCP bridge (streamable HTTP on a free loopback port) in front of the service at
    `target` (or the in-process stub of `taskservice serve`), wanting client `tokens` if given;
    yields its URL."""
    bridge = McpBridge(target)
    http = HttpBridgeServer(bridge, "127.0.0.1:0", tokens=tokens)
    await bridge.start()
    serving = asyncio.create_task(http.serve())
    try:
        yield f"http://127.0.0.1:{http.port}/mcp"
    finally:
        http.stop()
        await asyncio.wait_for(serving, wait)
        await bridge.close()


async def answer_name(
    context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": NAME})


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, *, wait: float = 10.0, token: str | None = None, elicitation: ElicitationFnT = answer_name
) -> AsyncIterator[ClientSession]:
    """`token`: sent as `Authorization: Bearer` with every request (a bridge with client tokens);
    `elicitation` answers the server's questions (the name Grace, unless given)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the experimental tasks API of mcp 1.x
        async with (
            create_mcp_http_client(headers=headers) as http,
            streamable_http_client(url, http_client=http) as (read, write, _),
            ClientSession(read, write, elicitation_callback=elicitation) as session,
        ):
            with anyio.fail_after(wait):
                await session.initialize()
            yield session
