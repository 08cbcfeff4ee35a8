"""README "Tokens and TLS", run as written: `taskservice serve` with both tokens and TLS, the
worker run by `python -m taskservice_client run` with its token and the CA, `taskservice
bridge` in front with the bridge token, the health probe and grpcurl; then an MCP client
through that bridge, a task with a question; then the refused calls and what they print.
Also: a bridge or a worker with the wrong credentials stops with one clear line.

The README's tasks.internal is localhost here, on ports of this test (the certificates name
localhost and 127.0.0.1), 0.0.0.0 is 127.0.0.1, and tls/ holds certificates made for the run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import types

from ..certs import make_certs
from ..mcp_http import mcp_client
from ..processes import LoggedProcess, clean_env, free_port
from .walkthrough import TOKENS_TLS, TOKENS_TLS_REFUSED, marked_blocks, missing_line

WAIT = 30.0
README = Path(__file__).resolve().parents[2] / "README.md"

TOOLS_MODULE = """
from typing import Any

from mcp import types
from taskservice_client import RemoteTaskContext, Worker

worker = Worker("127.0.0.1:1", name="analyzer")


@worker.tool(description="Asks for a name, then greets it.", task_support="required")
async def greet(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
    answer = await ctx.elicit("Your name?", {"type": "object", "properties": {"name": {"type": "string"}}})
    greeting = f"hello {answer.content['name']}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=greeting)])
"""


def block(marker: str) -> str:
    found = [b for b in marked_blocks(README.read_text(encoding="utf-8")) if b.marker == marker]
    assert len(found) == 1, f"README.md needs one {marker!r} block"
    return found[0].text


@dataclasses.dataclass
class Command:
    env: dict[str, str]  # its VAR=value prefix
    argv: list[str]


def commands(text: str) -> list[Command]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    found: list[Command] = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        env: dict[str, str] = {}
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]) and words[0] != "export":
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words:
            found.append(Command(env, words))
    return found


@dataclasses.dataclass
class Place:
    """Where the README's commands run, and what they name."""

    folder: Path
    grpc_port: int
    mcp_port: int
    grpcurl: str

    def localize(self, text: str) -> str:
        return (
            text.replace("0.0.0.0:50051", f"127.0.0.1:{self.grpc_port}")
            .replace("tasks.internal:50051", f"localhost:{self.grpc_port}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{self.mcp_port}")
        )

    def argv(self, words: list[str]) -> list[str]:
        program, rest = words[0], words[1:]
        if program == "taskservice":
            return [sys.executable, "-m", "taskservice", *rest]
        if program == "python":
            return [sys.executable, *rest]
        if program == "grpcurl":
            return [self.grpcurl, *rest]
        raise AssertionError(f"README block runs {program!r}, which this test does not know")

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp_port}/mcp"

    @property
    def target(self) -> str:
        return f"localhost:{self.grpc_port}"


def _place(folder: Path, grpcurl_bin: Path) -> Place:
    certs = make_certs(folder / "made")
    (folder / "tls").mkdir()
    shutil.copy(certs.ca, folder / "tls" / "ca.pem")
    shutil.copy(certs.server_cert, folder / "tls" / "server.pem")
    shutil.copy(certs.server_key, folder / "tls" / "server-key.pem")
    shutil.copy(certs.other_ca, folder / "tls" / "other-ca.pem")
    (folder / "analyzer").mkdir()
    (folder / "analyzer" / "__init__.py").write_text("")
    (folder / "analyzer" / "tools.py").write_text(TOOLS_MODULE)
    return Place(folder, free_port(), free_port(), str(grpcurl_bin / "grpcurl"))


@dataclasses.dataclass
class Ran:
    place: Place
    outputs: dict[str, subprocess.CompletedProcess[str]]  # of the commands that end, by program


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, grpcurl_bin: Path) -> Iterator[Ran]:
    """The README's block, in order: servers in the background (each waited for), the rest run."""
    place = _place(tmp_path_factory.mktemp("tokens-tls"), grpcurl_bin)
    exported: dict[str, str] = {}
    background: list[LoggedProcess] = []
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    ready = {"serve": r"listening on \S+ \(TLS\)", "run": r"serves greet", "bridge": r"MCP bridge listening"}
    try:
        for command in commands(place.localize(block(TOKENS_TLS))):
            if command.argv[0] == "export":
                for word in command.argv[1:]:
                    name, _, value = word.partition("=")
                    exported[name] = value
                continue
            env = clean_env(**exported, **command.env)
            verb = next((w for w in command.argv[1:4] if w in ready), "")
            if verb:
                process = LoggedProcess(
                    place.argv(command.argv),
                    place.folder / f"{verb}.log",
                    env=env,
                    cwd=place.folder,
                    name=verb,
                )
                background.append(process)
                process.wait_for(ready[verb], WAIT)
            else:
                outputs[command.argv[0] if command.argv[0] != "taskservice" else command.argv[1]] = (
                    subprocess.run(
                        place.argv(command.argv),
                        capture_output=True,
                        text=True,
                        timeout=WAIT,
                        env=env,
                        cwd=place.folder,
                        stdin=subprocess.DEVNULL,
                    )
                )
        assert [p.name for p in background] == ["serve", "run", "bridge"]
        yield Ran(place, outputs)
    finally:
        for process in reversed(background):
            process.stop()


def test_the_probe_and_grpcurl_get_through(ran: Ran) -> None:
    health = ran.outputs["health"]
    assert (health.returncode, health.stdout.strip()) == (0, f"{ran.place.target}: SERVING"), health.stderr
    listed = ran.outputs["grpcurl"]
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert [tool["name"] for tool in json.loads(listed.stdout)["tools"]] == ["greet"]


async def test_a_task_with_a_question_crosses_the_tokens_and_tls(ran: Ran) -> None:
    async with mcp_client(ran.place.mcp_url, wait=WAIT) as session:
        with anyio.fail_after(WAIT):
            assert [t.name for t in (await session.list_tools()).tools] == ["greet"]
            created = await session.experimental.call_tool_as_task("greet", {})
            result = await session.experimental.get_task_result(created.task.taskId, types.CallToolResult)
    assert result.content == [types.TextContent(type="text", text="hello Grace")]


def _sessions(text: str) -> list[tuple[str, str]]:
    """A console block's `$ ` commands (continuations joined), each with the lines it prints."""
    found: list[tuple[str, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        assert lines[index].startswith("$ "), f"not a command: {lines[index]!r}"
        command = lines[index][2:]
        while command.endswith("\\"):
            index += 1
            command = command[:-1] + " " + lines[index].strip()
        index += 1
        output: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        found.append((command, "\n".join(output)))
    return found


def test_the_refused_calls_print_what_the_readme_shows(ran: Ran) -> None:
    sessions = _sessions(ran.place.localize(block(TOKENS_TLS_REFUSED)))
    assert len(sessions) == 2
    for command, expected in sessions:
        done = subprocess.run(
            ran.place.argv(shlex.split(command)),
            capture_output=True,
            text=True,
            timeout=WAIT,
            env=clean_env(),
            cwd=ran.place.folder,
            stdin=subprocess.DEVNULL,
        )
        printed = done.stdout + done.stderr
        assert done.returncode in (64 + 16, 64 + 7), (
            printed
        )  # grpcurl: 64 + UNAUTHENTICATED / PERMISSION_DENIED
        assert missing_line(expected, printed) is None, (
            f"{command}\nprinted:\n{printed}\nexpected:\n{expected}"
        )


def _run(place: Place, *words: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        place.argv(list(words)),
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env or clean_env(),
        cwd=place.folder,
        stdin=subprocess.DEVNULL,
    )


def test_a_ca_that_did_not_sign_the_service_is_refused(ran: Ran) -> None:
    untrusted = _run(
        ran.place,
        "taskservice",
        "health",
        "--service",
        ran.place.target,
        "--service-tls-ca",
        "tls/other-ca.pem",
    )
    assert untrusted.returncode == 1
    assert "UNAVAILABLE" in untrusted.stdout


def test_a_bridge_without_the_bridge_token_stops_with_one_line(ran: Ran) -> None:
    bridge = ["taskservice", "bridge", "--service", ran.place.target, "--service-tls-ca", "tls/ca.pem"]
    listen = ["--mcp-listen", f"127.0.0.1:{free_port()}"]
    refused = _run(ran.place, *bridge, *listen)
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert "the service refused the bridge: BridgeService needs the bridge token" in lines[0]
    wrong_role = _run(ran.place, *bridge, *listen, env=clean_env(TASKSERVICE_SERVICE_TOKEN="worker-secret"))
    assert wrong_role.returncode == 2
    assert "BridgeService takes the bridge token; this call carries the worker token" in wrong_role.stderr


def test_a_worker_with_a_wrong_token_stops_and_says_why(ran: Ran) -> None:
    worker = ["python", "-m", "taskservice_client", "run", "analyzer.tools:worker"]
    stopped = _run(
        ran.place, *worker, "--target", ran.place.target, "--tls-ca", "tls/ca.pem", "--token", "guess"
    )
    assert stopped.returncode == 1
    assert "the worker stopped" in stopped.stderr
    assert "the token is not the worker token" in stopped.stderr


def test_the_readme_names_no_address_this_test_does_not_replace() -> None:
    for marker in (TOKENS_TLS, TOKENS_TLS_REFUSED):
        text = block(marker)
        addresses = set(re.findall(r"[\w.]+:\d{2,5}\b", text))
        assert addresses <= {"0.0.0.0:50051", "tasks.internal:50051", "127.0.0.1:8000"}, addresses
