"""The processes of a benchmark: servers, workers and clients, each a subprocess of the runner.

Every wait is bounded; every process is stopped by its own pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
# Another checkout whose `taskservice` the service processes run (before/after comparisons).
SERVICE_ROOT: Path | None = None


class ProcessFailed(RuntimeError):
    pass


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without TASKSERVICE_* settings (flags decide), the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def taskservice_command(root: Path | None) -> list[str]:
    """How to start `taskservice`: as `python -m` from another checkout's `root`, else this one's."""
    if root is not None:
        return [sys.executable, "-m", "taskservice"]
    script = Path(sys.executable).with_name("taskservice")
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskservice"]


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ProcessFailed(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process used so far, in seconds, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A long-running subprocess whose output goes to a log file, read back for readiness lines."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        logs: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ):
        self.name = name
        self.log = logs / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.log"
        self._log_file = self.log.open("wb")
        self.popen = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env or clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output())
            if found is not None:
                return found
            if self.popen.poll() is not None:
                raise ProcessFailed(f"{self.name} exited ({self.popen.returncode}):\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{self.name}: no {pattern!r} within {timeout}s:\n{self.output()[-3000:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)
        self._log_file.close()


@contextlib.contextmanager
def process(name: str, command: Sequence[str], logs: Path, **kwargs: Any) -> Iterator[Process]:
    proc = Process(name, command, logs, **kwargs)
    try:
        yield proc
    finally:
        proc.stop()


def spawn_service(
    logs: Path,
    store: str,
    *,
    mcp: bool = False,
    name: str = "",
    root: Path | None = None,
    extra: Sequence[str] = (),
) -> Process:
    """Start `taskservice serve` on free loopback ports; `service_address` waits until it serves.
    The service is `root`'s (another checkout), else SERVICE_ROOT's, else this checkout's."""
    root = root if root is not None else SERVICE_ROOT
    command = [
        *taskservice_command(root),
        "serve",
        f"--store={store}",
        "--grpc-listen=127.0.0.1:0",
        "--log-level=info",
    ]
    command += ["--mcp-listen=127.0.0.1:0"] if mcp else ["--no-mcp"]
    command += extra
    env = None
    cwd = ROOT
    if root is not None:
        # `python -m` puts the working directory first on sys.path: run from the other checkout.
        env = clean_env()
        env["PYTHONPATH"] = os.pathsep.join((str(root), env["PYTHONPATH"]))
        cwd = root
        _check_imports("taskservice", env, root, cwd=root, what="the service")
    return Process(name or f"serve-{store.split(':')[0]}", command, logs, env=env, cwd=cwd)


def _check_imports(module: str, env: dict[str, str], root: Path, *, cwd: Path, what: str) -> None:
    """Fail unless a process started with `env` in `cwd` imports `module` from `root`."""
    found = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__file__)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(root):
        raise ProcessFailed(f"{root}: {what} would import {found} instead")


def service_address(proc: Process, *, mcp: bool = False) -> tuple[str, str]:
    """(gRPC target, MCP URL or "") of a started service, once it serves."""
    port = proc.wait_for(r"gRPC service listening on 127\.0\.0\.1:(\d+)").group(1)
    url = ""
    if mcp:
        mcp_port = proc.wait_for(r"MCP bridge listening on http://127\.0\.0\.1:(\d+)/mcp").group(1)
        url = f"http://127.0.0.1:{mcp_port}/mcp"
    return f"127.0.0.1:{port}", url


@contextlib.contextmanager
def service(
    logs: Path, store: str, *, mcp: bool = False, name: str = ""
) -> Iterator[tuple[Process, str, str]]:
    """`taskservice serve` on free loopback ports: (process, gRPC target, MCP URL or "")."""
    proc = spawn_service(logs, store, mcp=mcp, name=name)
    try:
        yield (proc, *service_address(proc, mcp=mcp))
    finally:
        proc.stop()


def spawn_bench_server(logs: Path, kind: str, *options: str, name: str = "") -> Process:
    """Start a baseline server of `bench.servers`; `bench_server_address` waits until it serves."""
    command = [sys.executable, "-m", "bench.servers", kind, "--listen", "127.0.0.1:0", *options]
    return Process(name or f"baseline-{kind}", command, logs)


def bench_server_address(proc: Process) -> str:
    """The gRPC target (echo) or MCP URL (sdk) of a started baseline server, once it serves."""
    return proc.wait_for(r"listening on (\S+)").group(1)


@contextlib.contextmanager
def bench_server(logs: Path, kind: str) -> Iterator[tuple[Process, str]]:
    """A baseline server of `bench.servers` (echo: gRPC target; sdk: MCP URL)."""
    proc = spawn_bench_server(logs, kind)
    try:
        yield proc, bench_server_address(proc)
    finally:
        proc.stop()


CLIENT_SRC = Path("client/python/src")
"""Where a checkout keeps the Python worker library."""


@contextlib.contextmanager
def worker(logs: Path, target: str, *, root: Path | None = None, name: str = "worker") -> Iterator[Process]:
    """A remote Python worker serving bench.worker_tools, in a process of its own, on the worker
    library of `root` (another checkout) when given."""
    command = [sys.executable, "-m", "taskservice_client", "run", "bench.worker_tools:worker"]
    command += ["--target", target, "--log-level", "WARNING"]
    env = None
    if root is not None:
        env = clean_env()
        env["PYTHONPATH"] = os.pathsep.join((str(root / CLIENT_SRC), env["PYTHONPATH"]))
        _check_imports("taskservice_client", env, root, cwd=ROOT, what="the worker")
    with process(name, command, logs, env=env) as proc:
        yield proc


def run_client(args: Sequence[str], *, timeout: float, logs: Path | None = None) -> Any:
    """Run `python -m bench.clients ARGS` to its end; its last stdout line is its JSON answer."""
    command = [sys.executable, "-m", "bench.clients", *args]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProcessFailed(f"client {args[0]} did not finish within {timeout}s") from exc
    if logs is not None:
        with (logs / "clients.log").open("ab") as log:
            log.write(f"$ {' '.join(args)}\n".encode() + done.stderr)
    if done.returncode != 0:
        raise ProcessFailed(
            f"client {' '.join(args)} exited {done.returncode}:\n{done.stderr.decode()[-3000:]}"
        )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


class InteractiveClient:
    """A client that reports readiness on stdout, then holds its state until its stdin closes."""

    def __init__(self, args: Sequence[str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.clients", *args],
            cwd=ROOT,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=tempfile.TemporaryFile(),  # noqa: SIM115 (closed with the process)
        )

    def read(self, timeout: float) -> Any:
        """The next JSON line the client prints (bounded)."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        stdout: IO[bytes] = self.popen.stdout
        os.set_blocking(stdout.fileno(), False)
        buffer = b""
        while b"\n" not in buffer:
            chunk = stdout.read()
            if chunk:
                buffer += chunk
                continue
            if self.popen.poll() is not None:
                raise ProcessFailed(f"client exited {self.popen.returncode}: {self._stderr()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"client gave no answer within {timeout}s: {self._stderr()}")
            time.sleep(0.02)
        return json.loads(buffer.split(b"\n", 1)[0])

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def _stderr(self) -> str:
        err = self.popen.stderr
        if err is None:
            return ""
        err.seek(0)
        return err.read().decode(errors="replace")[-3000:]

    def close(self, timeout: float = 30.0) -> None:
        if self.popen.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.popen.stdin.close()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=15)
