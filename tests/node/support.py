"""Processes for the end-to-end tests in tests/node: `taskservice serve`, node scripts, Python workers
(each a tests.processes.LoggedProcess)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..processes import LoggedProcess, clean_env

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLIENT_NODE = ROOT / "client" / "node"
WAIT = 30.0

GRPC_LISTENING = re.compile(r"gRPC service listening on \S+:(\d+)")
MCP_LISTENING = re.compile(r"MCP bridge listening on (http://\S+)")


def node_or_skip(*packages: Path) -> str:
    """The node binary, when it and the npm packages the test needs are installed.

    In CI (CI=true) a missing piece fails the test instead: scripts/test.sh installs them.
    """
    node = shutil.which("node")
    missing = [] if node else ["node"]
    missing += [f"{p.relative_to(ROOT)} (npm ci)" for p in packages if not (p / "node_modules").is_dir()]
    if missing:
        message = "not installed: " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    return node


class Serve:
    """`taskservice serve` (the gRPC service and the MCP bridge) on ports it chose."""

    def __init__(self, proc: LoggedProcess, grpc_target: str, mcp_url: str) -> None:
        self.proc = proc
        self.grpc_target = grpc_target
        self.mcp_url = mcp_url


@contextlib.contextmanager
def serve(tmp: Path, *extra: str) -> Iterator[Serve]:
    command = [sys.executable, "-m", "taskservice", "serve", "--store", "memory://"]
    command += ["--grpc-listen", "127.0.0.1:0", "--mcp-listen", "127.0.0.1:0", "--shutdown-grace-ms", "500"]
    proc = LoggedProcess([*command, *extra], tmp / "serve.log", env=clean_env(), cwd=ROOT)
    try:
        port = proc.wait_for(GRPC_LISTENING, WAIT).group(1)
        url = proc.wait_for(MCP_LISTENING, WAIT).group(1)
        yield Serve(proc, f"127.0.0.1:{port}", url)
    finally:
        proc.stop()


@contextlib.contextmanager
def running(proc: LoggedProcess) -> Iterator[LoggedProcess]:
    """Stop `proc` on exit; show its output when the body failed."""
    try:
        yield proc
    except BaseException:
        sys.stderr.write(f"---- {proc.log.name}\n{proc.output()}\n")
        raise
    finally:
        proc.stop()
