"""The bridge's transports: streamable HTTP at /mcp, and stdio."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import socket
from collections.abc import Callable, Iterator
from typing import cast

import anyio
import uvicorn
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import GET_STREAM_KEY
from mcp.server.streamable_http_manager import DEFAULT_MAX_REQUEST_BODY_SIZE, StreamableHTTPSessionManager
from mcp.types import INVALID_REQUEST, PARSE_ERROR
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from taskservice.bridge.auth import PRINCIPAL_KEY, ClientTokens
from taskservice.bridge.server import McpBridge

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"


class _GetStreamEnd(logging.Filter):
    """mcp 1.30's transport logs the end of a session's GET stream as an error with a traceback
    ("Error in standalone SSE writer", anyio.ClosedResourceError) whenever the session ends while
    the stream is open: a client's DELETE on leaving, the bridge's shutdown. That is the stream's
    normal end, not an error: this filter drops that record (and only that one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        closed = record.exc_info is not None and isinstance(record.exc_info[1], anyio.ClosedResourceError)
        return not (closed and record.msg == "Error in standalone SSE writer")


logging.getLogger("mcp.server.streamable_http").addFilter(_GetStreamEnd())


# ------------------------------------------------------ JSON or SSE answers
#
# Streamable HTTP lets a server answer each POSTed request either with one JSON object or with
# an SSE stream, and clients must take both. The SDK's transport makes one choice per server;
# an SSE answer costs it two tasks and a stream per request. The bridge chooses per request: a
# JSON object for the requests whose handlers never send a message of their own on the
# request's stream (the transport would drop one), SSE for the rest (`tasks/result` and a
# plain `tools/call`, which carry the task's elicitation and sampling requests and their
# progress, and `initialize`). A `tasks/result` for a task the bridge saw end carries nothing
# but the result: JSON too.

JSON_ANSWERED = frozenset({"ping", "tools/list", "tasks/get", "tasks/list", "tasks/cancel"})
"""Methods always answered with a JSON object; a task-augmented `tools/call` is too (its status
notifications go to the session's GET stream, not to the request's)."""

PEEK_LIMIT = 64 * 1024
"""A POST body longer than this is answered over SSE, without parsing it ahead to choose."""

_answer_as_json: contextvars.ContextVar[bool] = contextvars.ContextVar("answer_as_json", default=False)


class _PerRequestJson:
    """The transport's `is_json_response_enabled`, true while it handles a request that
    `_McpEndpoint` chose to answer with a JSON object (the transport only tests its truth)."""

    def __bool__(self) -> bool:
        return _answer_as_json.get()


def answers_with_json(body: bytes, finished: Callable[[str], bool] = lambda task_id: False) -> bool:
    """Whether a POST body is one JSON-RPC request that is answered with a JSON object.

    `finished(task_id)` says the task has ended: its `tasks/result` then answers the result and
    nothing else (an ended task asks the client nothing more).

    RecursionError for a body nested too deeply for Python's json (as it would be for the SDK's
    transport, which answers that with a 500).
    """
    try:
        message = json.loads(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or "id" not in message:
        return False
    method = message.get("method")
    if method in JSON_ANSWERED:
        return True
    params = message.get("params")
    if not isinstance(params, dict):
        return False
    if method == "tasks/result":
        task_id = params.get("taskId")
        return isinstance(task_id, str) and finished(task_id)
    return method == "tools/call" and params.get("task") is not None


def nested_too_deeply(body: bytes) -> bool:
    """Whether Python's json, which the SDK's transport parses a body with, gives up on `body`
    for its depth (the transport lets that RecursionError out as a 500). It cannot for fewer
    than a few hundred brackets, so only a body that holds that many is parsed here."""
    if body.count(b"[") + body.count(b"{") < JSON_DEPTH_SUSPECT:
        return False
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:
        return False
    return False


JSON_DEPTH_SUSPECT = 500
"""Brackets below which no body can nest deep enough for Python's json to give up (about 1,000
levels, its recursion limit)."""


def _accepts_json_and_sse(scope: Scope) -> bool:
    """The client accepts both answers (clients must; one that does not is refused as before)."""
    accept = b",".join(value for name, value in scope["headers"] if name == b"accept").decode("latin-1")
    types = [part.split(";", 1)[0].strip() for part in accept.split(",")]
    return "application/json" in types and "text/event-stream" in types


async def _read_ahead(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The request's body (None when it is longer than `limit` or the client left), and a
    `receive` that gives the transport the same messages again, then the rest."""
    read: list[Message] = []
    size = 0
    body: bytes | None = None
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit:
            break
        if not message.get("more_body", False):
            body = b"".join(m.get("body", b"") for m in read)
            break

    async def replay() -> Message:
        return read.pop(0) if read else await receive()

    return body, replay


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


async def _refuse(
    send: Send, status: int, message: str, *, challenge: str | None = None, code: int = INVALID_REQUEST
) -> None:
    """An HTTP error with a JSON-RPC error body, as the SDK's transport answers its own."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _InFlight:
    """A count of the requests being served, with an event set while there is none."""

    def __init__(self) -> None:
        self.count = 0
        self._none = asyncio.Event()
        self._none.set()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        self.count += 1
        self._none.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._none.set()

    async def none(self) -> None:
        """Return once no request is being served."""
        await self._none.wait()


class _McpEndpoint:
    """The ASGI endpoint at /mcp (a plain Route, so /mcp is not redirected to /mcp/)."""

    def __init__(
        self,
        manager: StreamableHTTPSessionManager,
        finished: Callable[[str], bool],
        tokens: ClientTokens | None = None,
    ) -> None:
        self.manager = manager
        self.finished = finished
        self.tokens = tokens
        # With tokens: the principal that opened each live MCP session.
        self.sessions: dict[str, str] = {}
        self.closed = False
        """Set as the sessions end (HttpBridgeServer's stop): new requests are then refused."""
        self.answering = _InFlight()
        """The requests being answered: POST and DELETE."""
        self.streaming = _InFlight()
        """The sessions' GET streams being served."""

    def end_get_streams(self) -> None:
        """End every session's GET stream once it has sent what it has: its messages' stream is
        closed on the sending side only. (Ending the session does not wait: the SDK's writer of the
        stream then finds its own end closed under it, and logs that as an error.)"""
        sessions: dict[str, object] | None = getattr(self.manager, "_server_instances", None)
        if sessions is None:  # another mcp than 1.30's: the streams end when the grace runs out
            log.warning("the MCP sessions' GET streams could not be ended early (mcp changed)")
            return
        for transport in sessions.values():
            streams = getattr(transport, "_request_streams", {}).get(GET_STREAM_KEY)
            if streams is not None:
                streams[0].close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.closed:
            await _refuse(send, 503, "Service Unavailable: the server is shutting down")
            return
        with (self.streaming if scope["method"] == "GET" else self.answering).serving():
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.tokens is not None:
            authorized = await self._authorize(scope, send)
            if authorized is None:
                return
            scope, send = authorized
        as_json = False
        if scope["method"] == "POST" and _accepts_json_and_sse(scope):
            # The whole body, up to the size the transport takes (it answers a longer one 413).
            body, receive = await _read_ahead(receive, DEFAULT_MAX_REQUEST_BODY_SIZE)
            try:
                if body is not None and len(body) <= PEEK_LIMIT:
                    as_json = answers_with_json(body, self.finished)
                elif body is not None and nested_too_deeply(body):
                    raise RecursionError
            except RecursionError:
                await _refuse(send, 400, "Parse error: the JSON is nested too deeply", code=PARSE_ERROR)
                return
        token = _answer_as_json.set(as_json)
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            _answer_as_json.reset(token)

    async def _authorize(self, scope: Scope, send: Send) -> tuple[Scope, Send] | None:
        """The request's scope with its principal, and a `send` that notes the session it opens;
        None once it has been refused (401: no or unknown token; 403: another's session)."""
        assert self.tokens is not None
        given = _header(scope, b"authorization")
        principal = self.tokens.principal(given)
        if principal is None:
            why = "no bearer token" if given is None else "the bearer token is not known here"
            challenge = 'Bearer realm="taskservice"' + ("" if given is None else ', error="invalid_token"')
            await _refuse(send, 401, f"Unauthorized: {why}", challenge=challenge)
            return None
        session = _header(scope, b"mcp-session-id")
        if session is not None:
            holder = self.sessions.get(session.decode("latin-1"))
            if holder is not None and holder != principal:
                await _refuse(send, 403, "Forbidden: this MCP session belongs to another client")
                return None
            return {**scope, PRINCIPAL_KEY: principal}, send

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened = next(
                    (v for k, v in message.get("headers", []) if k.lower() == b"mcp-session-id"), None
                )
                if opened is not None:
                    self._forget_closed()
                    self.sessions[opened.decode("latin-1")] = principal
            await send(message)

        return {**scope, PRINCIPAL_KEY: principal}, noting

    def _forget_closed(self) -> None:
        """Drop the sessions the SDK's manager has closed (idle, deleted), now and then."""
        live: dict[str, object] | None = getattr(self.manager, "_server_instances", None)
        if live is not None and len(self.sessions) >= 2 * len(live) + 64:
            self.sessions = {sid: who for sid, who in self.sessions.items() if sid in live}


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not a HOST:PORT address: {address!r}")
    return host.strip("[]"), int(port)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the process that embeds it decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


DEFAULT_GRACE = 5.0
"""How long a stop of the HTTP bridge may take, unless told otherwise (see HttpBridgeServer.stop)."""


class HttpBridgeServer:
    """The bridge over streamable HTTP. The socket is bound at construction, so a bad
    address fails there with OSError (uvicorn itself would exit the process).

    Its MCP sessions live as long as `serve` runs (not in a lifespan of uvicorn's, which would
    end them only once every connection has closed: never, while a client holds the session's
    GET stream open). `stop` ends them, in order: see `_stop`."""

    def __init__(
        self,
        bridge: McpBridge,
        address: str,
        *,
        log_level: str = "warning",
        tokens: ClientTokens | None = None,
    ) -> None:
        """`tokens`: the principals whose bearer tokens every request must carry (see auth)."""
        host, port = split_host_port(address)
        self.socket = socket.create_server(
            (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
        )
        # Connections inherit it: asyncio sets TCP_NODELAY only on sockets made with
        # IPPROTO_TCP, which create_server's are not, and without it a JSON answer sent in
        # two writes on a kept-alive connection waits for the client's delayed ACK (40 ms).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = int(self.socket.getsockname()[1])
        self.bridge = bridge
        self.manager = StreamableHTTPSessionManager(
            app=bridge.server, stateless=False, json_response=cast("bool", _PerRequestJson())
        )
        self.endpoint = _McpEndpoint(self.manager, bridge.finished, tokens)
        app = Starlette(routes=[Route(MCP_PATH, endpoint=self.endpoint)])
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False)
        self.server = _Uvicorn(config)
        self._stopping = asyncio.Event()
        self._grace = DEFAULT_GRACE

    async def serve(self) -> None:
        """Serve until `stop`, and return once stopped."""
        serving: asyncio.Future[None] | None = None
        try:
            async with self.manager.run():
                serving = asyncio.ensure_future(self.server.serve(sockets=[self.socket]))
                stopping = asyncio.ensure_future(self._stopping.wait())
                try:
                    await asyncio.wait((serving, stopping), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                if not serving.done():
                    await self._stop()
                # Leaving the manager's run ends the sessions: their GET streams close.
            await serving  # uvicorn, once its connections closed (or the grace ran out)
        finally:
            if serving is not None and not serving.done():  # cancelled itself: uvicorn goes too
                serving.cancel()
            self.socket.close()

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """Make `serve` stop, within about `grace` seconds whatever the clients do."""
        self._grace = grace
        self._stopping.set()

    async def _stop(self) -> None:
        # uvicorn closes its listener at its next tick, then waits for its connections to close;
        # when the grace runs out it cancels the requests still open (a client that reads none).
        self.server.config.timeout_graceful_shutdown = max(math.ceil(self._grace), 1)
        self.server.should_exit = True
        # Every request waiting for a task's end is answered with the error that says to call
        # again; the sessions end once these answers are sent, their GET streams first.
        self.bridge.stop_waiting()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._grace):
                await self.endpoint.answering.none()
                self.endpoint.closed = True
                self.endpoint.end_get_streams()
                await self.endpoint.streaming.none()
        self.endpoint.closed = True


async def serve_stdio(bridge: McpBridge) -> None:
    async with stdio_server() as (read, write):
        await bridge.server.run(read, write, bridge.initialization_options())
