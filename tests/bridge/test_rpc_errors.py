"""How a failed service call reads to an MCP client (taskservice.bridge.server.rpc_error)."""

from __future__ import annotations

import grpc
import pytest
from mcp import types

from taskservice.bridge.server import rpc_error
from taskservice.grpc_api.local import rpc_error as failed_call


@pytest.mark.parametrize(
    ("code", "reads"),
    [
        (grpc.StatusCode.UNAVAILABLE, "the task service is unavailable (UNAVAILABLE: down)"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "the task service is unavailable (DEADLINE_EXCEEDED: down)"),
        (grpc.StatusCode.INTERNAL, "the task service failed (INTERNAL: down)"),
        (grpc.StatusCode.UNKNOWN, "the task service failed (UNKNOWN: down)"),
    ],
)
def test_only_an_unreachable_service_reads_as_unavailable(code: grpc.StatusCode, reads: str) -> None:
    error = rpc_error(failed_call(code, "down"), "tasks/get").error
    assert (error.code, error.message) == (types.INTERNAL_ERROR, f"tasks/get: {reads}")
