"""MCP clients' bearer tokens at the bridge's HTTP transport (taskservice.bridge.auth).

Without a known token a request is answered 401 with a Bearer challenge; a principal's
tasks are found again from its later sessions and by nobody else; an MCP session stays
with the principal that opened it. mcp 1.30's real ClientSession drives the flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import types
from mcp.shared.exceptions import McpError
from taskservice_client import RemoteTaskContext, Worker
from taskservice_client.testing import running_worker

from taskservice.bridge.auth import ClientTokens, owner_of
from taskservice.cli import build_parser
from taskservice.testing import running_service

from ..mcp_http import http_bridge, mcp_client
from ..readme.readme_blocks import fenced, section
from ..scaleout.support import BridgeCalls

WAIT = 10.0
TOKENS = {"alice": "alice-token-1", "bob": "bob-token-2"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def service_with_worker() -> AsyncIterator[str]:
    """A service and a worker serving `hello`, registered; yields the service's target."""
    async with running_service() as svc:
        worker = Worker(svc.target, name="tokens-worker")

        @worker.tool(description="Says hello.")
        async def hello(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(type="text", text="hello")])

        async with running_worker(worker):
            calls = BridgeCalls(svc.target)
            try:
                await calls.wait_for_tools("hello")
            finally:
                await calls.close()
            yield svc.target


@contextlib.asynccontextmanager
async def bridge_with_tokens(tokens: ClientTokens | None = None) -> AsyncIterator[str]:
    """service_with_worker and one http_bridge that wants `tokens` (TOKENS unless given)."""
    async with (
        service_with_worker() as target,
        http_bridge(target, tokens or ClientTokens(dict(TOKENS))) as url,
    ):
        yield url


async def test_a_request_without_a_known_token_is_401_with_a_bearer_challenge() -> None:
    async with bridge_with_tokens() as url, httpx.AsyncClient(timeout=WAIT) as http:
        missing = await http.post(url, json=INITIALIZE, headers=ACCEPT)
        wrong = await http.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer guess"})
        basic = await http.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Basic YWxpY2U="})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="taskservice"'
    assert missing.json()["error"]["message"] == "Unauthorized: no bearer token"
    assert missing.json()["jsonrpc"] == "2.0"
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="taskservice", error="invalid_token"'
    assert basic.status_code == 401


async def test_a_principals_tasks_outlive_its_session_and_nobody_else_sees_them() -> None:
    async with bridge_with_tokens() as url:
        await _a_principals_tasks_outlive_its_session_and_nobody_else_sees_them(url)


async def _a_principals_tasks_outlive_its_session_and_nobody_else_sees_them(url: str) -> None:
    async with mcp_client(url, wait=WAIT, token=TOKENS["alice"]) as first:
        with anyio.fail_after(WAIT):
            created = await first.experimental.call_tool_as_task("hello", {})
    task_id = created.task.taskId
    # A new session of the same principal (the client restarted): the task is still its own.
    async with mcp_client(url, wait=WAIT, token=TOKENS["alice"]) as again:
        with anyio.fail_after(WAIT):
            listed = await again.experimental.list_tasks()
            assert [t.taskId for t in listed.tasks] == [task_id]
            result = await again.experimental.get_task_result(task_id, types.CallToolResult)
            assert result.content == [types.TextContent(type="text", text="hello")]
    async with mcp_client(url, wait=WAIT, token=TOKENS["bob"]) as other:
        with anyio.fail_after(WAIT):
            assert (await other.experimental.list_tasks()).tasks == []
            with pytest.raises(McpError) as caught:
                await other.experimental.get_task(task_id)
            assert caught.value.error.code == types.INVALID_PARAMS


async def test_a_principal_finds_its_tasks_through_another_bridge_of_the_service() -> None:
    tokens = ClientTokens(dict(TOKENS))
    async with (
        service_with_worker() as target,
        http_bridge(target, tokens) as first,
        http_bridge(target, tokens) as second,
        mcp_client(first, wait=WAIT, token=TOKENS["alice"]) as on_first,
        mcp_client(second, wait=WAIT, token=TOKENS["alice"]) as on_second,
    ):
        with anyio.fail_after(WAIT):
            created = await on_first.experimental.call_tool_as_task("hello", {})
            listed = await on_second.experimental.list_tasks()
            assert [t.taskId for t in listed.tasks] == [created.task.taskId]
            result = await on_second.experimental.get_task_result(created.task.taskId, types.CallToolResult)
            assert result.content == [types.TextContent(type="text", text="hello")]


async def test_an_mcp_session_stays_with_the_principal_that_opened_it() -> None:
    async with bridge_with_tokens() as url:
        await _an_mcp_session_stays_with_the_principal_that_opened_it(url)


async def _an_mcp_session_stays_with_the_principal_that_opened_it(url: str) -> None:
    alice = {**ACCEPT, "Authorization": f"Bearer {TOKENS['alice']}"}
    bob = {**ACCEPT, "Authorization": f"Bearer {TOKENS['bob']}"}
    async with httpx.AsyncClient(timeout=WAIT) as http:
        opened = await http.post(url, json=INITIALIZE, headers=alice)
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tasks/list"}
        assert (
            await http.post(url, json=initialized, headers={**alice, "mcp-session-id": session})
        ).status_code == 202
        taken = await http.post(url, json=listing, headers={**bob, "mcp-session-id": session})
        assert taken.status_code == 403
        assert taken.json()["error"]["message"] == "Forbidden: this MCP session belongs to another client"
        own = await http.post(url, json=listing, headers={**alice, "mcp-session-id": session})
        assert own.status_code == 200
        assert own.json()["result"]["tasks"] == []


def test_a_principal_owns_under_its_own_name() -> None:
    assert owner_of("alice") == "principal:alice"


@contextlib.asynccontextmanager
async def bridge_with_questions(
    tokens: dict[str, str], *, in_process: bool = False
) -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """A service, a worker serving `ask_name` (elicits a name) and `held` (waits until the test sets
    the second event; the first is set once it runs), and an http_bridge wanting `tokens` (the
    in-process one of `taskservice serve`, with `in_process`)."""
    started, release = asyncio.Event(), asyncio.Event()
    async with running_service() as svc:
        worker = Worker(svc.target, name="questions-worker")

        @worker.tool(description="Asks for a name.")
        async def ask_name(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
            answer = await ctx.elicit("Your name?", NAME_SCHEMA)
            return f"{answer.action}: {answer.content}"

        @worker.tool(description="Waits until the test lets it go.")
        async def held(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
            started.set()
            await release.wait()
            return "released"

        service = svc.server.local_bridge() if in_process else svc.target
        async with running_worker(worker), http_bridge(service, ClientTokens(tokens)) as url:
            calls = BridgeCalls(svc.target)
            try:
                await calls.wait_for_tools("ask_name", "held")
            finally:
                await calls.close()
            yield url, started, release


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "over-grpc"])
async def test_a_question_held_when_the_session_ends_is_asked_again_in_the_next(in_process: bool) -> None:
    """mcp's client sends DELETE as it leaves: the SDK then fails the bridge's pending question with
    a CONNECTION_CLOSED error of its own, which is no answer of the client's."""
    asked = asyncio.Event()

    async def hold(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with bridge_with_questions(dict(TOKENS), in_process=in_process) as (url, _, _):
        async with mcp_client(url, wait=WAIT, token=TOKENS["alice"], elicitation=hold) as first:
            with anyio.fail_after(WAIT):
                created = await first.experimental.call_tool_as_task("ask_name", {})
            task_id = created.task.taskId
            async with anyio.create_task_group() as group:
                group.start_soon(first.experimental.get_task_result, task_id, types.CallToolResult)
                with anyio.fail_after(WAIT):
                    await asked.wait()
                group.cancel_scope.cancel()
        # The session is gone (deleted), the question unanswered: the next session gets it.
        async with mcp_client(url, wait=WAIT, token=TOKENS["alice"]) as again:
            with anyio.fail_after(WAIT):
                assert (await again.experimental.get_task(task_id)).status == "input_required"
                result = await again.experimental.get_task_result(task_id, types.CallToolResult)
    assert result.content == [types.TextContent(type="text", text="accept: {'name': 'Grace'}")]


async def test_a_principal_named_like_a_plain_call_owner_does_not_see_those_calls() -> None:
    """A plain tools/call runs as a task of an owner of its own, which no principal's name gives."""
    tokens = {"alice": "alice-token-1", "alice:call": "alice-call-token-3"}
    async with (
        bridge_with_questions(tokens) as (url, started, release),
        mcp_client(url, wait=WAIT, token=tokens["alice"]) as alice,
        mcp_client(url, wait=WAIT, token=tokens["alice:call"]) as other,
        anyio.create_task_group() as group,
    ):
        results: list[types.CallToolResult] = []

        async def call() -> None:
            results.append(await alice.call_tool("held", {}))

        group.start_soon(call)
        with anyio.fail_after(WAIT):
            await started.wait()
            assert (await other.experimental.list_tasks()).tasks == []
            assert (await alice.experimental.list_tasks()).tasks == []
        release.set()
    assert results[0].content == [types.TextContent(type="text", text="released")]


def _tokens_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "clients.tokens"
    path.write_text(text)
    return str(path)


def test_the_tokens_file_is_read_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = _tokens_file(tmp_path, "# who may call\n\nalice  a-1\nbob\tb-2\n")
    tokens = ClientTokens.from_file(path)
    assert tokens.tokens == {"alice": "a-1", "bob": "b-2"}
    assert tokens.principal("Bearer b-2") == "bob"
    assert tokens.principal(b"bearer a-1") == "alice"
    assert tokens.principal("Bearer a-") is None
    assert tokens.principal(None) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no principal"),
        ("# only a comment\n", "no principal"),
        ("alice\n", ":1: expected NAME TOKEN"),
        ("alice a b\n", ":1: expected NAME TOKEN"),
        ("alice a\nalice b\n", ":2: alice is given twice"),
        ("alice same\nbob same\n", "alice and bob have the same token"),
        ("-alice a\n", "is not a principal name"),
        ("alice/call a\n", "is not a principal name"),  # '/' makes plain calls' owners (plain_call_owner)
    ],
)
def test_a_bad_tokens_file_names_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientTokens.from_file(_tokens_file(tmp_path, text))


def test_a_missing_tokens_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the MCP tokens file"):
        ClientTokens.from_file(str(tmp_path / "absent"))


# ---------------------------------------------------------------- README "MCP clients' tokens"

README_URL = "http://127.0.0.1:8000/mcp"


def test_the_readmes_command_names_its_tokens_file() -> None:
    text = section("MCP clients' tokens")
    (tokens_file,) = fenced(text, "text")
    (command,) = fenced(text, "sh")
    name = tokens_file.splitlines()[0].removeprefix("# ").split(":")[0]
    words = shlex.split(command)
    assert words[:2] == ["taskservice", "serve"]
    args = build_parser().parse_args(words[1:])
    assert args.mcp_tokens_file == name == "clients.tokens"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_readmes_tokens_file_and_client_work(tmp_path: Path) -> None:
    text = section("MCP clients' tokens")
    (tokens_file,) = fenced(text, "text")
    (client,) = fenced(text, "python")
    path = tmp_path / "clients.tokens"
    path.write_text(tokens_file)
    tokens = ClientTokens.from_file(str(path))
    assert sorted(tokens.tokens) == ["alice", "ci-pipeline"]
    async with bridge_with_tokens(tokens) as url:
        assert README_URL in client
        namespace: dict[str, Any] = {}
        exec(compile(client.replace(README_URL, url), "README.md (MCP clients' tokens)", "exec"), namespace)
        session_as = namespace["session_as"]
        async with session_as(tokens.tokens["alice"]) as session:
            with anyio.fail_after(WAIT):
                created = await session.experimental.call_tool_as_task("hello", {})
                result = await session.experimental.get_task_result(created.task.taskId, types.CallToolResult)
        assert result.content == [types.TextContent(type="text", text="hello")]
        async with session_as(tokens.tokens["ci-pipeline"]) as other:
            with anyio.fail_after(WAIT):
                assert (await other.experimental.list_tasks()).tasks == []
