"""`taskservice serve` as a user runs it: bad invocations end with one clear line, env twins work."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from taskservice import cli
from taskservice.store import SqliteTaskStore

from ..certs import make_certs
from ..processes import clean_env, free_port
from .support import TASK_SERVICE, Clients, ServeProcess


@dataclasses.dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    expect: str  # in the one line on stderr
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass
class Finished:
    returncode: int
    stderr: str


def bad_invocations(tmp: Path, busy_port: int) -> dict[str, Case]:
    """Run as real processes: what a user sees on the terminal, gRPC's own logging included."""
    (tmp / "a-directory.db").mkdir()
    return {
        "bogus-flag": Case(("--no-mcp", "--bogus"), "--bogus"),
        "sqlite-on-a-directory": Case(
            ("--no-mcp", "--store", f"sqlite:///{tmp / 'a-directory.db'}"), "cannot open SQLite store"
        ),
        "port-in-use": Case(
            ("--no-mcp", "--store", "memory://", "--grpc-listen", f"127.0.0.1:{busy_port}"), "already in use"
        ),
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Case, Finished]]]:
    """Run every bad invocation at once (each is a Python start-up) and keep how each ended."""
    tmp = tmp_path_factory.mktemp("cli")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cases = bad_invocations(tmp, busy.getsockname()[1])
        running = {
            name: subprocess.Popen(
                [sys.executable, "-m", "taskservice", "serve", *case.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_env(TASKSERVICE_STATE_DIR=str(tmp / "state"), **dict(case.env)),
            )
            for name, case in cases.items()
        }
        results: dict[str, tuple[Case, Finished]] = {}
        try:
            for name, process in running.items():
                _, stderr = process.communicate(timeout=60)
                results[name] = (cases[name], Finished(process.returncode, stderr))
        finally:
            for process in running.values():
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        yield results


CASES = ["bogus-flag", "sqlite-on-a-directory", "port-in-use"]


@pytest.mark.parametrize("name", CASES)
def test_a_bad_invocation_exits_2_with_one_line_and_no_traceback(
    finished: dict[str, tuple[Case, Finished]], name: str
) -> None:
    case, result = finished[name]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("taskservice"), lines[0]
    assert "error:" in lines[0]
    assert case.expect in lines[0]


# The same contract in-process (each Python start-up costs a second or two): `main` returns 2
# and writes one line, on the file descriptor itself (capfd sees what gRPC's C core writes too).
IN_PROCESS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "unsupported-store": (["--store", "ftp://example.com/tasks"], {}, "unsupported store URL"),
    "lease-ttl-env-not-a-number": ([], {"TASKSERVICE_LEASE_TTL_MS": "abc"}, "TASKSERVICE_LEASE_TTL_MS"),
    "bad-log-level": (["--log-level", "loud"], {}, "--log-level"),
    "lease-ttl-zero": (["--lease-ttl-ms", "0"], {}, "lease_ttl_ms"),
    "ttl-default-over-max": (["--default-ttl-ms", "10", "--max-ttl-ms", "5"], {}, "default_ttl_ms"),
    "payload-env-not-a-number": (
        [],
        {"TASKSERVICE_MAX_PAYLOAD_BYTES": "1MB"},
        "TASKSERVICE_MAX_PAYLOAD_BYTES",
    ),
    "no-mcp-env-not-a-boolean": ([], {"TASKSERVICE_NO_MCP": "maybe"}, "TASKSERVICE_NO_MCP"),
    "bad-sqlite-url": (["--store", "sqlite://relative.db"], {}, "bad SQLite store URL"),
    "sqlite-under-a-file": (["--store", "sqlite:///{tmp}/a-file/tasks.db"], {}, "cannot open SQLite store"),
    "sqlite-not-a-database": (["--store", "sqlite:///{tmp}/garbage.db"], {}, "cannot open SQLite store"),
    "unresolvable-listen-host": (["--grpc-listen", "no-such-host.invalid:50051"], {}, "cannot listen on"),
    "tls-cert-without-key": (["--grpc-tls-cert", "{certs}/server_cert.pem"], {}, "go together"),
    "tls-client-ca-alone": (["--grpc-tls-client-ca", "{certs}/ca.pem"], {}, "needs --grpc-tls-cert"),
    "tls-cert-not-pem": (
        ["--grpc-tls-cert", "{tmp}/a-file", "--grpc-tls-key", "{certs}/server_key.pem"],
        {},
        "is not a PEM file",
    ),
    "tls-key-missing": (
        ["--grpc-tls-cert", "{certs}/server_cert.pem", "--grpc-tls-key", "{tmp}/no-such.pem"],
        {},
        "cannot read the TLS key",
    ),
    "tls-key-of-another-certificate": (
        ["--grpc-tls-cert", "{certs}/server_cert.pem", "--grpc-tls-key", "{certs}/client_key.pem"],
        {},
        "the key is not the certificate's",
    ),
    "tls-client-ca-not-a-certificate": (
        ["--grpc-tls-cert", "{certs}/server_cert.pem", "--grpc-tls-key", "{certs}/server_key.pem"],
        {"TASKSERVICE_GRPC_TLS_CLIENT_CA": "{certs}/server_key.pem"},
        "holds no usable certificate",
    ),
    "worker-token-env-padded": ([], {"TASKSERVICE_WORKER_TOKEN": " secret "}, "--worker-token"),
    "mcp-tokens-without-the-bridge": (["--mcp-tokens-file", "{tmp}/a-file"], {}, "which --no-mcp leaves out"),
    "shutdown-grace-negative": (["--shutdown-grace-ms", "-1"], {}, "must not be negative"),
}


@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_main_refuses_a_bad_setting_with_one_line(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    args, env, expect = IN_PROCESS[name]
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "garbage.db").write_bytes(b"this is not an SQLite database, not at all" * 100)
    certs = make_certs(tmp_path / "certs").ca.parent
    for key in [k for k in os.environ if k.startswith("TASKSERVICE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TASKSERVICE_STATE_DIR", str(tmp_path / "state"))
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path, certs=certs))
    base = ["serve", "--no-mcp", "--store", "memory://", "--grpc-listen", "127.0.0.1:0"]
    argv = base + [arg.format(tmp=tmp_path, certs=certs) for arg in args]
    try:
        code: object = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    assert expect in lines[0]


BRIDGE_SETTINGS: dict[str, tuple[list[str], str]] = {
    "tokens-over-stdio": (["--stdio", "--mcp-tokens-file", "{tmp}/clients"], "--mcp-tokens-file is for HTTP"),
    "tokens-file-missing": (["--mcp-tokens-file", "{tmp}/absent"], "cannot read the MCP tokens file"),
    "tokens-file-bad-line": (["--mcp-tokens-file", "{tmp}/bad"], "bad:2: expected NAME TOKEN"),
    "service-ca-not-pem": (["--service-tls-ca", "{tmp}/clients"], "is not a PEM file"),
    "service-cert-without-key": (["--service-tls-cert", "{tmp}/clients"], "go together"),
    "shutdown-grace-negative": (["--shutdown-grace-ms", "-5"], "--shutdown-grace-ms must not be negative"),
}


@pytest.mark.parametrize("name", sorted(BRIDGE_SETTINGS))
def test_bridge_refuses_a_bad_setting_with_one_line(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Before it connects to anything: the service here does not exist."""
    args, expect = BRIDGE_SETTINGS[name]
    (tmp_path / "clients").write_text("alice a-1\n")
    (tmp_path / "bad").write_text("alice a-1\nbob\n")
    for key in [k for k in os.environ if k.startswith("TASKSERVICE_")]:
        monkeypatch.delenv(key)
    argv = ["bridge", "--service", "127.0.0.1:1", "--mcp-listen", "127.0.0.1:0"]
    assert cli.main(argv + [arg.format(tmp=tmp_path) for arg in args]) == 2
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert "error:" in lines[0]
    assert expect in lines[0]


async def test_serve_on_a_sqlite_file_another_service_holds_fails_with_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The README's promise: a second service on the same SQLite file fails at start."""
    path = tmp_path / "tasks.db"
    held = SqliteTaskStore(path)  # what the first service holds while it runs
    try:
        argv = ["serve", "--no-mcp", "--store", f"sqlite:///{path}", "--grpc-listen", "127.0.0.1:0"]
        assert await asyncio.to_thread(cli.main, argv) == 2
    finally:
        await held.close()
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert "error:" in lines[0]
    assert "another process has it open" in lines[0]
    assert str(path) in lines[0]


async def test_env_twins_alone_configure_serve_and_sigterm_exits_0(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "from-env" / "tasks.db"
    env = clean_env(
        TASKSERVICE_GRPC_LISTEN=f"127.0.0.1:{port}",
        TASKSERVICE_STORE=f"sqlite:///{db}",
        TASKSERVICE_NO_MCP="1",
        TASKSERVICE_LOG_LEVEL="warning",
        TASKSERVICE_STATE_DIR=str(tmp_path / "default-state"),
    )
    process = await ServeProcess.start(tmp_path / "serve.log", env=env)
    try:
        await process.wait_until_serving(f"127.0.0.1:{port}")
        clients = Clients(f"127.0.0.1:{port}")
        try:
            assert await clients.health_status(TASK_SERVICE) == health_pb2.HealthCheckResponse.SERVING
        finally:
            await clients.close()
        assert db.exists()
        assert not (tmp_path / "default-state").exists()
        assert await process.signal(signal.SIGTERM) == 0
    finally:
        await process.ensure_stopped()
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log


async def test_serve_freezes_its_start_up_heap_once(tmp_path: Path) -> None:
    """Full collections then skip the modules and servers start-up made (see `freeze_startup_heap`)."""
    port = free_port()
    env = clean_env(
        TASKSERVICE_GRPC_LISTEN=f"127.0.0.1:{port}",
        TASKSERVICE_MCP_LISTEN=f"127.0.0.1:{free_port()}",
        TASKSERVICE_STORE="memory://",
        TASKSERVICE_LOG_LEVEL="debug",
        TASKSERVICE_STATE_DIR=str(tmp_path / "state"),
    )
    process = await ServeProcess.start(tmp_path / "serve.log", env=env)
    try:
        await process.wait_until_serving(f"127.0.0.1:{port}")
        assert await process.signal(signal.SIGTERM) == 0
    finally:
        await process.ensure_stopped()
    frozen = [
        int(line.rsplit(": ", 1)[1].split()[0])
        for line in (tmp_path / "serve.log").read_text().splitlines()
        if "start-up heap frozen: " in line
    ]
    assert len(frozen) == 1, frozen
    # gRPC, the MCP SDK, pydantic's models and uvicorn: far more than a bare interpreter's.
    assert frozen[0] > 50_000, frozen


def test_freeze_startup_heap_moves_live_objects_to_the_permanent_generation() -> None:
    kept: list[list[int]] = [[] for _ in range(1_000)]
    before = gc.get_freeze_count()
    try:
        cli.freeze_startup_heap()
        assert gc.get_freeze_count() >= before + len(kept)
        fresh: list[int] = []  # made after the freeze: collections still walk it
        tracked = gc.get_objects()
        assert not any(kept[0] is o for o in tracked)
        assert any(fresh is o for o in tracked)
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(
    ("level", "service", "sdk"),
    [
        ("debug", logging.DEBUG, logging.DEBUG),
        ("info", logging.INFO, logging.WARNING),
        ("warning", logging.WARNING, logging.WARNING),
        ("error", logging.ERROR, logging.ERROR),
    ],
)
def test_the_sdks_per_request_lines_are_logged_only_at_debug(level: str, service: int, sdk: int) -> None:
    root, mcp = logging.getLogger(), logging.getLogger(cli.SDK_LOGGER)
    kept = root.level, mcp.level, list(root.handlers)
    root.handlers.clear()  # basicConfig configures only a root without handlers
    try:
        cli.configure_logging(level)
        assert root.level == service
        assert logging.getLogger("taskservice.grpc_api.server").getEffectiveLevel() == service
        assert logging.getLogger("mcp.server.lowlevel.server").getEffectiveLevel() == sdk
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = kept[2]
        root.setLevel(kept[0])
        mcp.setLevel(kept[1])
