"""Subprocesses of the end-to-end tests (tests/mcp, tests/node, tests/service, ...).

A process runs with this environment less its TASKSERVICE_* settings (they would change
what the flags given say), its output goes to a log file the tests read (to learn the
ports a service chose, and to show what happened when a test fails), every wait is
bounded, and it is stopped by its own pid: SIGTERM, then SIGKILL. Its XDG_STATE_HOME is a
directory of this test run's, so that a service started without --store (as the README's
quick start does) keeps its default tasks.db there, not in the home directory of whoever runs
the tests (where another run's service may hold it open).
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


@functools.cache
def state_home() -> str:
    """This test run's XDG_STATE_HOME, removed when the run ends."""
    path = tempfile.mkdtemp(prefix="taskservice-test-state-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def clean_env(**variables: str) -> dict[str, str]:
    """This environment without TASKSERVICE_* settings, with this run's XDG_STATE_HOME, plus
    `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    env["XDG_STATE_HOME"] = state_home()
    env.update(variables)
    return env


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LoggedProcess:
    """A child process whose stdout and stderr go to `log`."""

    def __init__(
        self,
        command: Sequence[str],
        log: Path,
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        name: str = "",
    ) -> None:
        self.name = name or Path(command[0]).name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first match of `pattern` in the output, waiting until it appears (at most `timeout` s)."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output())
            if found is not None:
                return found
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}):\n{self.output()[-4000:]}"
                )
            if time.monotonic() > deadline:
                shown = pattern if isinstance(pattern, str) else pattern.pattern
                raise AssertionError(
                    f"{self.name}: no {shown!r} within {timeout} s:\n{self.output()[-4000:]}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not ended within `timeout` s; its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode
