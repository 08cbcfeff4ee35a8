"""README "MCP clients' tokens": the TypeScript SDK's client with a principal's token.

`taskservice serve --mcp-tokens-file` and a Python worker run as processes;
`node tests/node/ts_sdk_token.mjs` passes the token as `requestInit: { headers }`, calls a
tool as a task through `client.experimental.tasks.callToolStream` and lists its task; a
client without the token is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..processes import LoggedProcess, clean_env
from .support import HERE, WAIT, node_or_skip, running, serve

WORKER = """
from typing import Any

from mcp import types
from taskservice_client import RemoteTaskContext, Worker

worker = Worker("127.0.0.1:1", name="ts-token-worker")


@worker.tool(description="Says hello.", task_support="required")
async def hello(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text="hello")])
"""


def test_typescript_sdk_client_sends_its_token(tmp_path: Path) -> None:
    node = node_or_skip(HERE)
    (tmp_path / "clients.tokens").write_text("ts-app ts-app-token-0123\n")
    (tmp_path / "ts_token_tools.py").write_text(WORKER)
    with serve(tmp_path, "--mcp-tokens-file", str(tmp_path / "clients.tokens")) as service:
        command = [sys.executable, "-m", "taskservice_client", "run", "ts_token_tools:worker"]
        worker = LoggedProcess(
            [*command, "--target", service.grpc_target],
            tmp_path / "worker.log",
            env=clean_env(),
            cwd=tmp_path,
        )
        with running(worker):
            worker.wait_for(r"serves hello", WAIT)
            flow = subprocess.run(
                [node, str(HERE / "ts_sdk_token.mjs"), service.mcp_url],
                cwd=HERE,
                env=clean_env(MCP_TOKEN="ts-app-token-0123"),
                capture_output=True,
                text=True,
                timeout=WAIT * 3,
            )
        assert flow.returncode == 0, (
            f"ts_sdk_token.mjs failed ({flow.returncode}):\n{flow.stdout}\n{flow.stderr}"
        )
        summary = json.loads(flow.stdout.strip().splitlines()[-1])
        assert summary["tools"] == ["hello"]
        assert summary["kinds"][0] == "taskCreated"
        assert summary["kinds"][-1] == "result"
        assert summary["text"] == "hello"
        assert summary["tasks"] == 1
        assert "Unauthorized: no bearer token" in summary["refused"]
