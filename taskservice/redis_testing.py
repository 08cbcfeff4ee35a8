"""A throwaway `redis-server` for tests of code that uses the Redis store.

    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    async with running_service(server.url()) as svc: ...
    server.kill()   # kill -9; server.start() brings it back on the same port and files

It needs the `redis-server` binary (Redis 6.2 or newer) on PATH.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

READY_TIMEOUT = 10.0


class RedisServerError(RuntimeError):
    """redis-server is missing, or did not come up."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server subprocess on 127.0.0.1 (a free port unless given), its files in `directory`.

    `appendonly=True` turns on the AOF with `appendfsync always`: every write is on disk before
    Redis answers it, so a kill -9 loses nothing that was acknowledged.
    """

    def __init__(self, directory: Path, *, appendonly: bool = False, port: int = 0) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str = "", db: int = 0) -> str:
        query = f"?prefix={prefix}" if prefix else ""
        return f"redis://127.0.0.1:{self.port}/{db}{query}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (again: same port, same files) and return once it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError(
                "redis-server is not installed (apt-get install redis-server; scripts/test.sh installs it)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.directory), "--logfile", "redis.log", "--daemonize", "no"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.directory / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RedisServerError(f"redis-server exited with {self.process.returncode}:\n{tail}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):  # not -LOADING: the AOF is read
                    return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(f"redis-server on port {self.port} did not answer within {READY_TIMEOUT} s")

    def _signal(self, signum: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signum)
            process.wait(timeout=10)

    def kill(self) -> None:
        """kill -9: no shutdown, no final save."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly."""
        self._signal(signal.SIGTERM)
