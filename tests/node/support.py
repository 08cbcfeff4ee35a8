"""Processes for the end-to-end tests in tests/node: `taskservice serve`, node scripts, Python workers.

Each process's output goes to a file that the tests read (to learn the ports the
service chose, and to show what happened when a test fails).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def clean_env(**variables: str) -> dict[str, str]:
    """Our environment without TASKSERVICE_* settings (they would change the service), plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    env.update(variables)
    return env


class Proc:
    """A child process whose stdout and stderr go to `log`."""

    def __init__(self, args: list[str], log: Path, *, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.args = args
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.output())
            if match:
                return match
            if self.process.poll() is not None:
                raise AssertionError(f"{self.args[0]} exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern.pattern!r}:\n{self.output()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Serve:
    """`taskservice serve` (the gRPC service and the MCP bridge) on ports it chose."""

    def __init__(self, proc: Proc, grpc_target: str, mcp_url: str) -> None:
        self.proc = proc
        self.grpc_target = grpc_target
        self.mcp_url = mcp_url


@contextlib.contextmanager
def serve(tmp: Path, *extra: str) -> Iterator[Serve]:
    command = [sys.executable, "-m", "taskservice", "serve", "--store", "memory://"]
    command += ["--grpc-listen", "127.0.0.1:0", "--mcp-listen", "127.0.0.1:0", "--shutdown-grace-ms", "500"]
    proc = Proc([*command, *extra], tmp / "serve.log", env=clean_env())
    try:
        port = proc.wait_for(GRPC_LISTENING).group(1)
        url = proc.wait_for(MCP_LISTENING).group(1)
        yield Serve(proc, f"127.0.0.1:{port}", url)
    finally:
        proc.stop()


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    """Stop `proc` on exit; show its output when the body failed."""
    try:
        yield proc
    except BaseException:
        sys.stderr.write(f"---- {proc.log.name}\n{proc.output()}\n")
        raise
    finally:
        proc.stop()
