"""How the bridge answers each POSTed request over streamable HTTP: one JSON object, or an SSE stream.

The spec lets a server choose either per request, and clients must take both. The bridge answers
with JSON the requests whose handlers send nothing else on the request's stream, and over SSE
`initialize`, `tasks/result` and a plain `tools/call` (they carry the task's requests to the
client); `tasks/result` for a task the bridge saw end carries nothing else, so JSON too. These
tests speak raw HTTP, so they see the answer's media type; every other test of the suite drives
the same answers through mcp 1.30's client, and tests/node through the TypeScript SDK's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from taskservice.bridge.transports import PEEK_LIMIT, answers_with_json

from .conftest import WAIT, Stack
from .requirements import requirement

STREAMABLE_HTTP = "spec:2025-11-25/basic/transports#streamable-http"
BOTH = "application/json, text/event-stream"
PROTOCOL = "2025-11-25"


class RawSession:
    """An MCP session over streamable HTTP, request by request, keeping each answer's media type."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.session_id = ""
        self.next_id = 0

    def headers(self, accept: str = BOTH) -> dict[str, str]:
        headers = {"accept": accept, "content-type": "application/json", "mcp-protocol-version": PROTOCOL}
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def post(self, body: dict[str, Any], *, accept: str = BOTH) -> httpx.Response:
        return await self.http.post(self.url, content=json.dumps(body), headers=self.headers(accept))

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        on_headers: Callable[[], None] = lambda: None,
    ) -> tuple[str, dict[str, Any]]:
        """(media type of the answer, the JSON-RPC response in it). `on_headers` runs once the
        answer's headers are in, before its body is read."""
        self.next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            body["params"] = params
        request = self.http.build_request("POST", self.url, content=json.dumps(body), headers=self.headers())
        response = await self.http.send(request, stream=True)
        try:
            on_headers()
            await response.aread()
        finally:
            await response.aclose()
        assert response.status_code == 200, response.text
        self.session_id = self.session_id or response.headers.get("mcp-session-id", "")
        media_type = response.headers["content-type"].split(";")[0]
        if media_type == "application/json":
            return media_type, response.json()
        assert media_type == "text/event-stream", media_type
        for message in sse_messages(response.text):
            if message.get("id") == self.next_id:
                return media_type, message
        raise AssertionError(f"no response to request {self.next_id} in the stream: {response.text!r}")

    async def create_task(self, tool: str, arguments: dict[str, Any]) -> tuple[str, str]:
        """tools/call `tool` as a task: (media type of the answer, the task's id)."""
        media_type, created = await self.request(
            "tools/call", {"name": tool, "arguments": arguments, "task": {"ttl": 60_000}}
        )
        return media_type, created["result"]["task"]["taskId"]


def sse_messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages in an SSE body (events without data, such as priming events, skipped)."""
    messages = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
        if data:
            messages.append(json.loads(data))
    return messages


@contextlib.asynccontextmanager
async def initialized(stack: Stack) -> AsyncIterator[RawSession]:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        session = RawSession(http, stack.mcp_url)
        media_type, opened = await session.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "raw-http-test", "version": "1"},
            },
        )
        assert media_type == "text/event-stream"
        assert opened["result"]["protocolVersion"] == PROTOCOL
        assert session.session_id
        notified = await session.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert notified.status_code == 202, notified.text
        try:
            yield session
        finally:
            await http.delete(stack.mcp_url, headers=session.headers())


@requirement(STREAMABLE_HTTP)
async def test_requests_without_messages_of_their_own_are_answered_with_json(stack: Stack) -> None:
    async with initialized(stack) as session:
        media_type, listed = await session.request("tools/list")
        assert media_type == "application/json"
        assert "echo" in {tool["name"] for tool in listed["result"]["tools"]}

        media_type, task_id = await session.create_task("echo", {"text": "hi"})
        assert media_type == "application/json"

        media_type, got = await session.request("tasks/get", {"taskId": task_id})
        assert media_type == "application/json"
        assert got["result"]["taskId"] == task_id

        media_type, page = await session.request("tasks/list")
        assert media_type == "application/json"
        assert task_id in {task["taskId"] for task in page["result"]["tasks"]}

        media_type, pong = await session.request("ping")
        assert (media_type, pong["result"]) == ("application/json", {})

        # An error is a JSON object too.
        media_type, missing = await session.request("tasks/get", {"taskId": "no-such-task"})
        assert media_type == "application/json"
        assert "error" in missing, missing


@requirement(STREAMABLE_HTTP)
async def test_requests_that_carry_the_tasks_messages_are_answered_over_sse(stack: Stack) -> None:
    async with initialized(stack) as session:
        _, task_id = await session.create_task("gated", {"gate": "sse-result"})
        # The task still runs when its tasks/result comes: the gate opens once the answer has begun.
        media_type, result = await session.request(
            "tasks/result", {"taskId": task_id}, on_headers=lambda: stack.open_gate("sse-result", "now")
        )
        assert media_type == "text/event-stream"
        assert result["result"]["content"] == [{"type": "text", "text": "opened: now"}]

        media_type, called = await session.request(
            "tools/call", {"name": "echo", "arguments": {"text": "ho"}}
        )
        assert media_type == "text/event-stream"
        assert called["result"]["content"] == [{"type": "text", "text": "echo: ho"}]

        media_type, cancelled = await session.request("tasks/cancel", {"taskId": task_id})
        assert media_type == "application/json"
        assert "error" in cancelled, "a completed task cannot be cancelled"


@requirement(STREAMABLE_HTTP)
async def test_the_result_of_a_task_seen_to_end_is_answered_with_json(stack: Stack) -> None:
    async with initialized(stack) as session:
        _, task_id = await session.create_task("echo", {"text": "hi"})
        with anyio.fail_after(WAIT):
            while True:
                _, got = await session.request("tasks/get", {"taskId": task_id})
                if got["result"]["status"] == "completed":
                    break
                await anyio.sleep(0.02)
        media_type, result = await session.request("tasks/result", {"taskId": task_id})
        assert media_type == "application/json"
        assert result["result"]["content"] == [{"type": "text", "text": "echo: hi"}]
        assert result["result"]["_meta"] == {"io.modelcontextprotocol/related-task": {"taskId": task_id}}
        # Not for a task the bridge has not seen end (here: none such), which is answered as before.
        media_type, missing = await session.request("tasks/result", {"taskId": "no-such-task"})
        assert media_type == "text/event-stream"
        assert "error" in missing, missing


@requirement(STREAMABLE_HTTP)
async def test_a_body_longer_than_the_read_ahead_arrives_whole_and_is_answered_over_sse(stack: Stack) -> None:
    text = "x" * (PEEK_LIMIT + 1000)
    async with initialized(stack) as session:
        media_type, task_id = await session.create_task("echo", {"text": text})
        assert media_type == "text/event-stream"
        _, result = await session.request("tasks/result", {"taskId": task_id})
        assert result["result"]["content"] == [{"type": "text", "text": f"echo: {text}"}]


@requirement(STREAMABLE_HTTP)
async def test_a_client_that_does_not_accept_both_answers_is_refused_as_the_sdk_refuses_it(
    stack: Stack,
) -> None:
    async with initialized(stack) as session:
        for accept in ("application/json", "text/event-stream"):
            response = await session.post({"jsonrpc": "2.0", "id": 99, "method": "tools/list"}, accept=accept)
            assert response.status_code == 406, (accept, response.text)


@requirement(STREAMABLE_HTTP)
def test_which_requests_are_answered_with_json() -> None:
    def request(method: str, params: dict[str, Any] | None = None) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode()

    for method in ("ping", "tools/list", "tasks/get", "tasks/list", "tasks/cancel"):
        assert answers_with_json(request(method)), method
    assert answers_with_json(request("tools/call", {"name": "t", "task": {}}))
    assert not answers_with_json(request("tools/call", {"name": "t"}))
    assert not answers_with_json(request("tools/call", {"name": "t", "task": None}))
    assert not answers_with_json(request("tasks/result", {"taskId": "t"}))
    ended = {"t"}.__contains__
    assert answers_with_json(request("tasks/result", {"taskId": "t"}), ended)
    assert not answers_with_json(request("tasks/result", {"taskId": "u"}), ended)
    assert not answers_with_json(request("tasks/result", {"taskId": 7}), lambda task_id: True)
    assert not answers_with_json(request("initialize"))
    assert not answers_with_json(request("prompts/list"))
    # Not one request: a notification, a batch, a response, or no JSON at all.
    assert not answers_with_json(b'{"jsonrpc": "2.0", "method": "tools/list"}')
    assert not answers_with_json(b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]')
    assert not answers_with_json(b'{"jsonrpc": "2.0", "id": 1, "result": {}}')
    assert not answers_with_json(b"{not json")
    assert not answers_with_json(b"")


@requirement(STREAMABLE_HTTP, "design:params-are-not-changed")
async def test_a_lone_surrogate_in_a_parameter_is_invalid_params_naming_it(stack: Stack) -> None:
    """JSON can escape half of a UTF-16 pair ("\\ud800"); the SDK's HTTP transport lets it
    through (its stdio one does not), and protobuf's UTF-8 strings cannot carry it."""
    lone = "\ud800"
    why = "holds a lone surrogate (such as \\ud800), which UTF-8 text cannot carry"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("tasks/get", {"taskId": lone}, "tasks/get: taskId"),
        ("tasks/result", {"taskId": lone}, "tasks/result: taskId"),
        ("tasks/cancel", {"taskId": lone}, "tasks/cancel: taskId"),
        ("tasks/list", {"cursor": f"page{lone}"}, "tasks/list: cursor"),
        (
            "tools/call",
            {"name": "echo_arguments", "arguments": {"s": ["ok", lone]}, "task": {}},
            "tools/call: arguments.s[1]",
        ),
        ("tools/call", {"name": "echo_arguments", "arguments": {"s": lone}}, "tools/call: arguments.s"),
    ]
    async with initialized(stack) as session:
        for method, params, named in cases:
            _, answered = await session.request(method, params)
            assert answered.get("error") == {"code": -32602, "message": f"{named} {why}"}, (method, answered)


@requirement(STREAMABLE_HTTP)
@pytest.mark.parametrize("padding", [0, PEEK_LIMIT], ids=["short", "longer-than-read-ahead"])
async def test_a_body_nested_too_deeply_to_parse_is_a_parse_error(stack: Stack, padding: int) -> None:
    deep = "[" * 5000 + "]" * 5000
    params = f'{{"pad": "{"p" * padding}", "x": {deep}}}'
    async with initialized(stack) as session:
        response = await session.http.post(
            session.url,
            content=f'{{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {params}}}',
            headers=session.headers(),
        )
        assert response.status_code == 400, response.text
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "Parse error: the JSON is nested too deeply"},
        }
        # The session goes on.
        media_type, pong = await session.request("ping")
        assert (media_type, pong["result"]) == ("application/json", {})
