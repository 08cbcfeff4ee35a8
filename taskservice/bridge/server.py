"""The MCP bridge: an MCP server (mcp 1.30 low-level `Server`) that keeps no task state.

Every tool call, task read, cancel and answer goes to the service's
BridgeService over gRPC, so several bridges can serve the same tasks. The SDK's
default task handlers are not used where they are wrong (see DESIGN.md): the
task-mode check answers JSON-RPC -32601, a failed task's `tasks/result` is a
valid `CallToolResult` with `isError`, every concurrent `tasks/result` waiter
returns, `tasks/list` pages with a real cursor, and cancelling a running task
is an ordinary state change in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

import anyio
import grpc
import grpc.aio
import jsonschema
import pydantic
from google.protobuf import struct_pb2
from mcp import types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.helpers import RELATED_TASK_METADATA_KEY
from mcp.shared.experimental.tasks.polling import poll_until_terminal
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.session import RequestResponder
from taskservice_client._channel import Backoff, RetryPolicy, TLSConfig, open_channel
from taskservice_client._client import Metadata, bearer_metadata
from taskservice_client._convert import check_exact, dump_model, struct_to_dict, task_from_proto
from taskservice_client._errors import RETRYABLE
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc, task_pb2

from taskservice import __version__, mcp_payloads
from taskservice.bridge.auth import PRINCIPAL_KEY, owner_of, plain_call_owner
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.service import MAX_DELIVERED

log = logging.getLogger(__name__)

pb = bridge_service_pb2

SUPPORT_NAMES: dict[int, types.TaskExecutionMode] = {
    task_pb2.TASK_SUPPORT_UNSPECIFIED: "optional",
    task_pb2.TASK_SUPPORT_OPTIONAL: "optional",
    task_pb2.TASK_SUPPORT_REQUIRED: "required",
    task_pb2.TASK_SUPPORT_FORBIDDEN: "forbidden",
}
TERMINAL = frozenset(
    {task_pb2.TASK_STATUS_COMPLETED, task_pb2.TASK_STATUS_FAILED, task_pb2.TASK_STATUS_CANCELLED}
)
FINISHED_KEPT = 4096
"""How many ended tasks a bridge remembers as ended (see McpBridge.finished)."""
NOTIFIED_WAIT = 5.0
"""How long a `tasks/result` waits for its task's terminal status notification to go out first."""

FORWARDED_ERRORS = {
    grpc.StatusCode.NOT_FOUND: types.INVALID_PARAMS,
    grpc.StatusCode.INVALID_ARGUMENT: types.INVALID_PARAMS,
    grpc.StatusCode.FAILED_PRECONDITION: types.INVALID_PARAMS,
    grpc.StatusCode.RESOURCE_EXHAUSTED: types.INVALID_PARAMS,
}


ResultT = TypeVar("ResultT", bound=types.Result)

CALLED_OFF_KEPT = 1024
"""How many called-off requests of a session the bridge still expects a late answer to."""
CANCEL_WAIT = 5.0
"""How long the bridge waits for the client to acknowledge `tasks/cancel` of a request it runs as a task."""
RETRY = RetryPolicy()
"""How the bridge retries the service while it is unreachable (UNAVAILABLE: restarting, or a replica
that went away): the worker library's policy, waits from 0.1 s growing to 5 s, until the bridge closes."""


class AnyResult(types.Result):
    """A client's result taken as it is; the service validates it against the request's method."""


class _Asked:
    """Where one request forwarded to the client stands, for calling it off (`_call_off`)."""

    __slots__ = ("answered", "client_task", "jsonrpc_id")

    def __init__(self) -> None:
        self.jsonrpc_id: int | None = None
        """The JSON-RPC id of the request the client has now and has not answered yet: the
        question, or a `tasks/get` or `tasks/result` for the client's task that runs it."""
        self.client_task: str | None = None
        """The client's task that runs the question, once the client made one."""
        self.answered = False
        """The client answered: the answer is on its way to the service."""


class _Responses:
    """A session's response router (mcp's `ResponseRouter`), installed as the session starts
    (`BridgeServer.session_started`). mcp 1.30's session hands it every response the client
    sends, before the request waiting for it gets it:

    - an answer to a request the bridge called off is taken quietly: the client may answer one
      still (mcp 1.30's client answers a cancelled request with an error), and nobody waits for it;
    - a response to an id the session does not wait for (never sent, or no longer waited for) is
      taken with one short line at info: the SDK would log the whole message at error, however
      large, and send the client an "Internal Server Error" notifications/message;
    - an error answer to a request of `_send` is noted, so that `_send` tells the client's error
      from the one the SDK makes up when the session closes (see `closed_on`).

    `waiting` is the session's own map of the requests it waits for (BaseSession's
    `_response_streams`), read, never changed."""

    def __init__(self, waiting: dict[types.RequestId, Any]) -> None:
        self._waiting = waiting
        self._called_off: dict[types.RequestId, None] = {}
        self._sent: dict[types.RequestId, bool] = {}  # `_send`'s requests: did the client answer an error?

    def add(self, request_id: types.RequestId) -> None:
        """A request the bridge called off: its late answer is no error."""
        self._called_off[request_id] = None
        if len(self._called_off) > CALLED_OFF_KEPT:  # clients that never answer (the TypeScript SDK's)
            del self._called_off[next(iter(self._called_off))]

    def sending(self, request_id: types.RequestId) -> None:
        self._sent[request_id] = False

    def sent(self, request_id: types.RequestId) -> None:
        self._sent.pop(request_id, None)

    def closed_on(self, request_id: types.RequestId, error: McpError) -> bool:
        """Whether `_send`'s request got `error` because the session closed, not from the client.
        The SDK answers every request still waiting with CONNECTION_CLOSED when the session's
        streams close; a client may send the same code (-32000, JSON-RPC's first server error)
        itself, but its answer comes through this router."""
        return error.error.code == types.CONNECTION_CLOSED and not self._sent.get(request_id, False)

    def _taken(self, request_id: types.RequestId) -> bool:
        if request_id in self._called_off:
            del self._called_off[request_id]
            return True
        if request_id not in self._waiting:
            log.info("a response to request %r, which this session does not wait for: ignored", request_id)
            return True
        return False

    def route_response(self, request_id: types.RequestId, response: dict[str, Any]) -> bool:
        return self._taken(request_id)

    def route_error(self, request_id: types.RequestId, error: types.ErrorData) -> bool:
        if self._taken(request_id):
            return True
        if request_id in self._sent:
            self._sent[request_id] = True
        return False


class _SessionClosed(Exception):
    """The session closed while `_send`'s request waited for the client: nobody answered it."""


CLIENT_POLL_MIN_MS = 50
"""The shortest wait between two `tasks/get` of a client's task that runs a question: a client may
report a pollInterval of 0, which mcp's poll_until_terminal would take as it is."""


async def _send(
    session: ServerSession,
    responses: _Responses,
    asked: _Asked,
    request: types.ServerRequest,
    result_type: type[ResultT],
    metadata: ServerMessageMetadata | None = None,
) -> ResultT:
    """`session.send_request`, with the request's JSON-RPC id in `asked` while the client has it.
    _SessionClosed when the session closes before the client answers."""
    # The id send_request is about to give the request: mcp 1.30's BaseSession counts them, and
    # nothing runs in between.
    request_id = asked.jsonrpc_id = session._request_id
    responses.sending(request_id)
    try:
        return await session.send_request(request, result_type, metadata=metadata)
    except McpError as exc:
        if responses.closed_on(request_id, exc):
            raise _SessionClosed from None
        raise
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        raise _SessionClosed from None
    finally:
        asked.jsonrpc_id = None
        responses.sent(request_id)


@contextlib.contextmanager
def _reply_to(what: str | None = None) -> Iterator[None]:
    """A reply of the client's that is not the result its request wants (the SDK's pydantic
    error) as a ValueError naming the first field that does not fit, and the request `what` when
    it is not the question itself."""
    try:
        yield
    except pydantic.ValidationError as exc:
        why = str(mcp_payloads.not_valid(exc, exc.title, "result"))
        raise ValueError(f"its reply to {what}: {why}" if what else why) from None


def _not_valid(method: str, why: str) -> task_pb2.McpError:
    """The error a worker gets for a client's answer that could not be passed on to it."""
    return task_pb2.McpError(
        code=types.INVALID_PARAMS, message=f"The client's answer to {method} is not valid: {why}"
    )


def _wire_error(error: types.ErrorData, method: str) -> task_pb2.McpError:
    """The client's error answer as the service takes it; ValueError for what it cannot carry. An
    empty message (valid JSON-RPC; the service wants one) gets a text saying so."""
    if not -(2**31) <= error.code < 2**31:
        raise ValueError("error.code does not fit in 32 bits")
    check_exact(error.message, "error.message")
    message = error.message or f"the client answered {method} with error {error.code} and no message"
    wire = task_pb2.McpError(code=error.code, message=message)
    if error.data is not None:
        wire.data.CopyFrom(_struct({"data": error.data}, "error").fields["data"])
    return wire


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A checked validator for a JSON schema, made once per schema (checking costs ~0.5 ms)."""
    schema = json.loads(schema_json)
    cls = mcp_payloads.json_schema_validator(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """`jsonschema.validate(arguments, schema)`: the same errors; the schema is checked once, not per call."""
    validator = _validator(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is not None:
        raise error


def _struct(data: dict[str, Any], field: str) -> struct_pb2.Struct:
    """MCP's JSON as a Struct. ValueError naming the path (`field`, then the keys and indexes in
    `data`) of a value a Struct cannot carry as it is: an integer beyond ±2^53 (it would reach the
    worker changed), a string with a lone surrogate, NaN, or objects and arrays nested deeper than
    the service takes (see check_exact)."""
    check_exact(data, field)
    message = struct_pb2.Struct()
    message.update(data)
    return message


# The wire Task as mcp.types.Task: the same conversion the worker stub uses.
mcp_task = task_from_proto

TaskModel = TypeVar("TaskModel", bound=types.Task)


def task_as(model: type[TaskModel], message: task_pb2.Task) -> TaskModel:
    """The wire task as `model`, a Task with more around it (a result, notification params).

    mcp_task validates the fields once; they go into `model` as they are, not dumped
    and validated again.
    """
    task = mcp_task(message)
    return model.model_construct(**{name: getattr(task, name) for name in types.Task.model_fields})


def status_params(task: task_pb2.Task) -> types.TaskStatusNotificationParams:
    """notifications/tasks/status's params: the full task."""
    return task_as(types.TaskStatusNotificationParams, task)


def related_task_meta(task_id: str) -> dict[str, Any]:
    return {RELATED_TASK_METADATA_KEY: types.RelatedTaskMetadata(taskId=task_id).model_dump(by_alias=True)}


def tool_result(outcome: pb.TaskOutcome) -> types.CallToolResult:
    """The CallToolResult a terminal task stands for: its result, or an error result saying why not."""
    task = outcome.task
    if task.status == task_pb2.TASK_STATUS_COMPLETED and outcome.HasField("result"):
        return types.CallToolResult.model_validate(struct_to_dict(outcome.result))
    if task.status == task_pb2.TASK_STATUS_CANCELLED:
        text = (
            f"The task was cancelled: {task.status_message}"
            if task.status_message
            else "The task was cancelled."
        )
    else:
        text = task.status_message or "The task failed."
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def shutting_down(method: str, *, goes_on: bool = True) -> McpError:
    """The answer to a request that waits (`tasks/result`, a plain `tools/call`) when the bridge stops.
    A task goes on in the service: the client calls again, here once the bridge is back or on
    another. A plain call's task, which no other request can reach, is cancelled (`goes_on=False`)."""
    then = "the task goes on: nothing is lost" if goes_on else "the call was cancelled"
    return McpError(
        types.ErrorData(
            code=types.INTERNAL_ERROR,
            message=f"{method}: the server is shutting down; call {method} again ({then})",
        )
    )


def rpc_error(exc: grpc.aio.AioRpcError, what: str) -> McpError:
    code = FORWARDED_ERRORS.get(exc.code(), types.INTERNAL_ERROR)
    details = exc.details() or exc.code().name
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        details = f"the task service is unavailable ({exc.code().name}: {details})"
    elif code == types.INTERNAL_ERROR:
        details = f"the task service failed ({exc.code().name}: {details})"
    return McpError(types.ErrorData(code=code, message=f"{what}: {details}"))


def text_param(what: str, name: str, value: str) -> str:
    """A request's string parameter, which goes on as protobuf's UTF-8: -32602 naming it for one
    with a lone surrogate (JSON's "\\ud800")."""
    try:
        check_exact(value, name)
    except ValueError as exc:
        raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=f"{what}: {exc}")) from None
    return value


@contextlib.contextmanager
def mcp_errors(what: str) -> Any:
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise rpc_error(exc, what) from None


@contextlib.asynccontextmanager
async def _closing(stream: Any) -> AsyncIterator[None]:
    """End a server stream the caller leaves early, at once: a call of a channel is cancelled,
    the in-process stub's generator closed (left to the garbage collector, it would be closed
    later by a task of its own, scheduled through the loop's self-pipe)."""
    try:
        yield
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            stream.cancel()


class BridgeServer(Server[Any, Any]):
    """The low-level Server, advertising `tools.listChanged` by default.

    StreamableHTTPSessionManager builds each session's options with a bare
    `create_initialization_options()`, so the default must carry it: the bridge
    does send notifications/tools/list_changed when workers come and go.

    `session_started(session)` is called at each message a session hands the server, the first
    being the client's notifications/initialized (before that, the server sends the client no
    request): McpBridge installs the session's response router there.
    """

    def __init__(
        self, name: str, *, version: str, session_started: Callable[[ServerSession], object]
    ) -> None:
        super().__init__(name, version=version)
        self.session_started = session_started

    async def _handle_message(
        self,
        message: RequestResponder[types.ClientRequest, types.ServerResult]
        | types.ClientNotification
        | Exception,
        session: ServerSession,
        lifespan_context: Any,
        raise_exceptions: bool = False,
    ) -> None:
        self.session_started(session)
        await super()._handle_message(message, session, lifespan_context, raise_exceptions)

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities
        )


class WithMetadata:
    """A stub whose every call carries `metadata` (the bridge's token)."""

    def __init__(self, stub: Any, metadata: Metadata) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, method: str) -> Any:
        return functools.partial(getattr(self._stub, method), metadata=self._metadata)


class ServiceRefused(Exception):
    """The service refused the bridge's credentials: no call the bridge makes would succeed."""


class McpBridge:
    """Speaks MCP to clients, forwards everything to a TaskService's BridgeService."""

    def __init__(
        self,
        service: str | bridge_service_pb2_grpc.BridgeServiceAsyncStub,
        *,
        name: str = "taskservice",
        token: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        """`service` is the service's gRPC target, or a BridgeService stub already made (the
        in-process one of `taskservice serve`, see TaskServiceServer.local_bridge). With a
        target, `token` is the service's bridge token, sent with every call, and `tls` makes
        the channel a TLS one (the Python stub's TLSConfig)."""
        self.channel: grpc.aio.Channel | None = None
        if isinstance(service, str):
            self.channel = open_channel(
                service,
                tls=tls or False,
                options=[
                    ("grpc.keepalive_time_ms", 30_000),
                    ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.enable_retries", 1),
                ],
            )
            stub: Any = bridge_service_pb2_grpc.BridgeServiceStub(self.channel)
            if token:
                stub = WithMetadata(stub, bearer_metadata(token))
            service = cast("bridge_service_pb2_grpc.BridgeServiceAsyncStub", stub)
        self.service = service
        self.server: Server[Any, Any] = BridgeServer(
            name, version=__version__, session_started=self._responses
        )
        self._owners: weakref.WeakKeyDictionary[ServerSession, str] = weakref.WeakKeyDictionary()
        self._session_capabilities: weakref.WeakKeyDictionary[ServerSession, struct_pb2.Struct] = (
            weakref.WeakKeyDictionary()
        )
        self._background: set[asyncio.Task[None]] = set()
        self._tools: dict[str, types.Tool] | None = None
        # Ids of tasks this bridge saw end, oldest first (a dict as an ordered set).
        self._finished: dict[str, None] = {}
        # Per session, the tasks whose status it follows, each with an event set once the task's
        # terminal status has been notified (or found not to be notified).
        self._notifying: weakref.WeakKeyDictionary[ServerSession, dict[str, asyncio.Event]] = (
            weakref.WeakKeyDictionary()
        )
        # Set once the bridge stops: requests that wait are answered `shutting_down`, nothing retries.
        self._closing = asyncio.Event()
        # The handlers waiting for a task's end (`_waits`), and those `stop_waiting` interrupted.
        self._waiting: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()
        self._routers: weakref.WeakKeyDictionary[ServerSession, _Responses] = weakref.WeakKeyDictionary()
        self._register_handlers()

    # --------------------------------------------------------------- plumbing

    def initialization_options(self) -> InitializationOptions:
        return self.server.create_initialization_options()

    def _register_handlers(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # Creating the experimental handlers makes the server advertise tasks
            # for the request types registered below.
            self.server.experimental  # noqa: B018
        handlers: dict[type, Callable[[Any], Awaitable[types.ServerResult]]] = {
            types.ListToolsRequest: self._list_tools,
            types.CallToolRequest: self._call_tool,
            types.GetTaskRequest: self._get_task,
            types.ListTasksRequest: self._list_tasks,
            types.CancelTaskRequest: self._cancel_task,
            types.GetTaskPayloadRequest: self._task_result,
        }
        self.server.request_handlers.update(handlers)

    def _owner(self) -> tuple[ServerSession, str]:
        """The calling session and the owner its tasks are stored under."""
        context = self.server.request_context
        session = context.session
        owner = self._owners.get(session)
        if owner is None:
            # Over HTTP with client tokens, the principal the endpoint found (an MCP session
            # stays with the principal that opened it); else the session itself.
            scope = getattr(context.request, "scope", None)
            principal = scope.get(PRINCIPAL_KEY) if isinstance(scope, dict) else None
            owner = owner_of(principal) if principal else f"session:{secrets.token_urlsafe(16)}"
            self._owners[session] = owner
        return session, owner

    def _responses(self, session: ServerSession) -> _Responses:
        """The session's response router, installed as it is first needed."""
        responses = self._routers.get(session)
        if responses is None:
            responses = self._routers[session] = _Responses(session._response_streams)
            session.add_response_router(responses)
        return responses

    def _capabilities(self, session: ServerSession) -> struct_pb2.Struct | None:
        """The capabilities the session's client declared, as sent with each task it creates
        (converted once per session: they do not change after initialization)."""
        if session.client_params is None:
            return None
        known = self._session_capabilities.get(session)
        if known is None:
            caps = dump_model(session.client_params.capabilities)
            known = self._session_capabilities[session] = _struct(caps, "capabilities")
        return known

    def finished(self, task_id: str) -> bool:
        """Whether this bridge saw the task end (one of the last FINISHED_KEPT it saw end).

        A task's end is final, so `tasks/result` for such a task can only answer its result
        (or an error): the HTTP transport then answers it with a JSON object, not over SSE.
        False says nothing: the task may have ended elsewhere or been forgotten.
        """
        return task_id in self._finished

    def _saw(self, task: task_pb2.Task) -> None:
        """Remember the task as ended if it is."""
        if task.status in TERMINAL and task.task_id not in self._finished:
            self._finished[task.task_id] = None
            if len(self._finished) > FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def check_access(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (one call's deadline)
        """Raise ServiceRefused when the service refuses this bridge's token (or its lack of
        one). A service that does not answer is not an error here: the bridge reconnects."""
        try:
            await self.service.ListTools(pb.ListToolsRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise ServiceRefused(f"the service refused the bridge: {exc.details()}") from None
            log.warning("the service did not answer yet (%s); the bridge will retry", exc.code().name)

    async def start(self) -> None:
        """Start following the service's tool set (for tools/list_changed)."""
        self._spawn(self._watch_tools(), "bridge-watch-tools")

    @property
    def closing(self) -> bool:
        """Whether the bridge is stopping (`stop_waiting` was called)."""
        return self._closing.is_set()

    def stop_waiting(self) -> None:
        """Begin to stop: every request waiting for a task's end (`tasks/result`, a plain `tools/call`)
        is answered at once with the `shutting_down` error, as is any such request still to come,
        and nothing is retried any more. The tasks go on in the service, but for a plain call's,
        which no other request can reach: `_call_tool` cancels it."""
        self._closing.set()
        for task in self._waiting:
            self._interrupted.add(task)
            task.cancel()

    @contextlib.contextmanager
    def _waits(self) -> Iterator[None]:
        """Around a wait for a task's end, which `stop_waiting` interrupts (see `_interrupted_by_stop`)."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            yield
        finally:
            self._waiting.discard(task)

    def _interrupted_by_stop(self) -> bool:
        """Whether the CancelledError being handled is `stop_waiting`'s: then it is taken back."""
        task = asyncio.current_task()
        if task not in self._interrupted:
            return False
        assert task is not None
        self._interrupted.discard(task)
        task.uncancel()
        return True

    async def _pause(self, backoff: Backoff) -> bool:
        """Wait out the backoff's next delay before a retry; False (at once) when the bridge closes."""
        delay = backoff.next_delay()
        if delay is not None and not self.closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
        return delay is not None and not self.closing

    async def close(self) -> None:
        self.stop_waiting()
        for task in tuple(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(tuple(self._background), timeout=2)
        if self.channel is not None:
            await self.channel.close(None)

    # ------------------------------------------------------------------ tools

    @staticmethod
    def _mcp_tool(tool: task_pb2.ToolDefinition) -> types.Tool:
        """The tool as MCP lists it, checked as the service checks a worker's declaration."""
        return mcp_payloads.tool_definition(
            f"tool {tool.name!r}",
            name=tool.name,
            title=tool.title,
            description=tool.description,
            input_schema=struct_to_dict(tool.input_schema) if tool.HasField("input_schema") else None,
            output_schema=struct_to_dict(tool.output_schema) if tool.HasField("output_schema") else None,
            annotations=struct_to_dict(tool.annotations) if tool.HasField("annotations") else None,
            task_support=SUPPORT_NAMES.get(tool.task_support, f"unknown ({tool.task_support})"),
        )

    def _mcp_tools(self, definitions: Iterable[task_pb2.ToolDefinition]) -> dict[str, types.Tool]:
        """The tools as MCP lists them. One that does not convert (declared to a service that did
        not check it) is logged and left out: the others stay listed and current."""
        tools: dict[str, types.Tool] = {}
        for definition in definitions:
            try:
                tools[definition.name] = self._mcp_tool(definition)
            except InvalidArgument as exc:
                log.warning("tool %r left out of tools/list: %s", definition.name, exc.message)
        return tools

    async def tools(self) -> dict[str, types.Tool]:
        if self._tools is not None:
            return self._tools
        with mcp_errors("tools/list"):
            listed = await self.service.ListTools(pb.ListToolsRequest())
        return self._mcp_tools(listed.tools)

    async def _watch_tools(self) -> None:
        """Keep the tool set current and tell sessions when it changes; reconnect with backoff,
        after any failure (a bug here must not freeze the tool list for good)."""
        backoff = RETRY.backoff()
        while True:
            try:
                first = True
                async for update in self.service.WatchTools(pb.WatchToolsRequest()):
                    tools = self._mcp_tools(update.tools)
                    changed = self._tools is not None and tools != self._tools
                    self._tools = tools
                    if changed or not first:
                        await self._tools_changed()
                    first = False
                    backoff.reset()  # after the update is handled: one that fails each time backs off
            except grpc.aio.AioRpcError as exc:
                log.info("tool watch interrupted (%s); retrying", exc.code().name)
            except Exception:
                log.exception("tool watch failed; watching again")
            self._tools = None
            if not await self._pause(backoff):
                return

    async def _tools_changed(self) -> None:
        for session in list(self._owners):
            with contextlib.suppress(Exception):
                await session.send_tool_list_changed()

    async def _list_tools(self, request: types.ListToolsRequest) -> types.ServerResult:
        self._owner()
        return types.ServerResult(types.ListToolsResult(tools=list((await self.tools()).values())))

    # ------------------------------------------------------------- tools/call

    async def _call_tool(self, request: types.CallToolRequest) -> types.ServerResult:
        session, owner = self._owner()
        params = request.params
        tool = (await self.tools()).get(params.name)
        if tool is None:
            raise McpError(
                types.ErrorData(
                    code=types.INVALID_PARAMS,
                    message=f"Unknown tool {params.name!r}: no connected worker serves it",
                )
            )
        as_task = params.task is not None
        if not as_task and self.closing:
            raise shutting_down("tools/call")  # before its task is made: nobody could read its result
        support = tool.execution.taskSupport if tool.execution else "optional"
        if as_task and support == "forbidden":
            raise McpError(
                types.ErrorData(
                    code=types.METHOD_NOT_FOUND,
                    message=f"Tool {params.name!r} does not support task-augmented execution",
                )
            )
        if not as_task and support == "required":
            raise McpError(
                types.ErrorData(
                    code=types.METHOD_NOT_FOUND,
                    message=f"Tool {params.name!r} requires task-augmented execution",
                )
            )
        arguments = params.arguments or {}
        try:
            validate_arguments(arguments, tool.inputSchema)
        except jsonschema.ValidationError as exc:
            if as_task:
                raise McpError(
                    types.ErrorData(
                        code=types.INVALID_PARAMS, message=f"Input validation error: {exc.message}"
                    )
                ) from None
            return types.ServerResult(
                types.CallToolResult(
                    content=[types.TextContent(type="text", text=f"Input validation error: {exc.message}")],
                    isError=True,
                )
            )
        meta = dump_model(params.meta) if params.meta else {}
        # A call without `task` runs as a task of the service too, but under an owner of its own:
        # the client never asked for a task, so tasks/list, tasks/get and tasks/cancel must not show it.
        task_owner = owner if as_task else plain_call_owner(owner)
        try:
            create = pb.CreateTaskRequest(
                owner=task_owner,
                tool_name=params.name,
                arguments=_struct(arguments, "arguments"),
                meta=_struct(meta, "_meta"),
            )
            capabilities = self._capabilities(session)
        except ValueError as exc:
            raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=f"tools/call: {exc}")) from None
        if params.task is not None and params.task.ttl is not None:
            ttl = params.task.ttl
            if not -(2**63) <= ttl < 2**63:  # ttl_ms is an int64; the service checks the rest
                why = "must be positive" if ttl < 0 else "must be below 2^63"
                message = f"tools/call: task.ttl: {why}"
                raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=message))
            create.ttl_ms = ttl
        if capabilities is not None:
            create.client_capabilities.CopyFrom(capabilities)
        with mcp_errors("tools/call"):
            task = (await self.service.CreateTask(create)).task
        progress_token = meta.get("progressToken")
        request_id = self.server.request_context.request_id
        if as_task:
            notified = self._notifying.setdefault(session, {})[task.task_id] = asyncio.Event()
            follow = self._follow(
                session, owner, task, progress_token, None, notify_status=True, notified=notified
            )
            self._spawn(follow, f"bridge-follow-{task.task_id}")
            return types.ServerResult(types.CreateTaskResult(task=mcp_task(task)))
        if progress_token is not None:
            self._spawn(
                self._follow(session, task_owner, task, progress_token, request_id, notify_status=False),
                f"bridge-follow-{task.task_id}",
            )
        try:
            outcome = await self._run_to_outcome(
                session, task_owner, task.task_id, request_id, method="tools/call"
            )
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call (or left): nobody can read this result any more.
            await self._cancel_plain_call(task_owner, task.task_id, "The client cancelled the tools/call.")
            raise
        except McpError:
            if not self.closing:
                raise
            # Cut off by the bridge's stop: no other request can reach this task, so it must not
            # run on (and a client that calls again would run the tool twice).
            why = "The server shut down during the tools/call."
            await self._cancel_plain_call(task_owner, task.task_id, why)
            raise shutting_down("tools/call", goes_on=False) from None
        return types.ServerResult(tool_result(outcome))

    async def _cancel_plain_call(self, owner: str, task_id: str, reason: str) -> None:
        """Cancel the task of a plain tools/call that nobody waits for any more."""
        with anyio.CancelScope(shield=True), contextlib.suppress(grpc.aio.AioRpcError):
            cancel = pb.CancelTaskRequest(owner=owner, task_id=task_id, reason=reason)
            await self.service.CancelTask(cancel, timeout=5)

    async def _follow(
        self,
        session: ServerSession,
        owner: str,
        created: task_pb2.Task,
        progress_token: str | int | None,
        related_request_id: types.RequestId | None,
        *,
        notify_status: bool,
        notified: asyncio.Event | None = None,
    ) -> None:
        """Send status (and progress) notifications for a task until it ends; set `notified`
        once its terminal status went out (or was found not to be notified)."""
        task_id = created.task_id
        progress = 0
        # The stream starts with the task as it is now, which may already be a change since the
        # state the client got with the task: compare with that, do not just skip the first event.
        seen = (created.status, created.status_message, created.last_updated_at)
        try:
            async for event in self.service.FollowTask(pb.FollowTaskRequest(owner=owner, task_id=task_id)):
                self._saw(event.task)
                state = (event.task.status, event.task.status_message, event.task.last_updated_at)
                if notified is not None and event.task.status in TERMINAL:
                    # Before its notification's send, not after: see _terminal_notified.
                    notified.set()
                if state != seen and event.notify:
                    if notify_status:
                        await session.send_notification(
                            types.ServerNotification(
                                types.TaskStatusNotification(params=status_params(event.task))
                            )
                        )
                    if progress_token is not None and event.task.status not in TERMINAL:
                        progress += 1
                        await session.send_progress_notification(
                            progress_token,
                            float(progress),
                            message=event.task.status_message or None,
                            related_request_id=str(related_request_id)
                            if related_request_id is not None
                            else None,
                        )
                seen = state
        except grpc.aio.AioRpcError as exc:
            log.debug("stopped following task %s: %s", task_id, exc.code().name)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("session closed while following task %s", task_id)
        finally:
            if notified is not None:
                notified.set()  # whatever ended the follower, nobody waits for it any more
                following = self._notifying.get(session)
                if following is not None and following.get(task_id) is notified:
                    del following[task_id]

    async def _terminal_notified(self, session: ServerSession, task_id: str) -> None:
        """Wait until this session's follower of the task is sending its terminal status: a client
        that closes its session once it has the result (mcp's stdio client does) would otherwise
        find the notification after the result, on a closed stream. Bounded by NOTIFIED_WAIT.

        The follower sets its event as it starts the send, which reaches the session's write
        stream at the send's first checkpoint; the result's send into that stream checkpoints
        too, later, and the stream takes its senders in the order they came. So the result still
        goes after the notification, without waiting behind whatever else the loop then runs."""
        notified = self._notifying.get(session, {}).get(task_id)
        if notified is not None and not notified.is_set():
            with anyio.move_on_after(NOTIFIED_WAIT):
                await notified.wait()

    # ----------------------------------------------- tasks/result and waiting

    async def _run_to_outcome(
        self,
        session: ServerSession,
        owner: str,
        task_id: str,
        request_id: types.RequestId,
        *,
        method: str = "tasks/result",
    ) -> pb.TaskOutcome:
        """Follow a task to its end, carrying its requests to the client on this request's stream.

        When the bridge stops, the wait ends with the `shutting_down` error for `method`."""
        if self.closing:
            raise shutting_down(method)
        outcome: pb.TaskOutcome | None = None
        failure: McpError | None = None
        # Errors are raised outside the task group: inside, anyio would wrap them in an
        # ExceptionGroup, which the SDK answers as an error with code 0 instead of ours.
        # asyncio's task group, not anyio's: anyio's runs a checkpoint on the way out even when
        # no child is left (the usual case: the forward ended with its answer), which puts the
        # outcome behind every step then ready on the loop (bench.trace --loop-steps).
        forwards: dict[str, tuple[asyncio.Task[None], _Asked]] = {}
        async with asyncio.TaskGroup() as group:
            try:
                with self._waits():
                    outcome = await self._events_to_outcome(
                        session, owner, task_id, request_id, group, forwards, method
                    )
            except McpError as exc:
                failure = exc
            except asyncio.CancelledError:
                if not self._interrupted_by_stop():
                    raise
                failure = shutting_down(method)
            # The task waits no more (or, after a failure, no answer can go back this way).
            for forward, asked in forwards.values():
                await self._call_off(session, forward, asked, request_id)
        if failure is not None:
            raise failure
        assert outcome is not None
        return outcome

    async def _events_to_outcome(
        self,
        session: ServerSession,
        owner: str,
        task_id: str,
        request_id: types.RequestId,
        group: asyncio.TaskGroup,
        forwards: dict[str, tuple[asyncio.Task[None], _Asked]],
        method: str,
    ) -> pb.TaskOutcome:
        """Read the task's events until its outcome, forwarding each request into `forwards`.

        Only the requests and the outcome: the status changes go out as notifications from the
        task's follower (`_follow`), not from here. The stream is named, and so are the answers
        it carries back, so that a question the client answered in another tasks/result open on
        the task at the same time is called off here. A stream that breaks with UNAVAILABLE (the
        service restarts, or its replica went away: the channel picks another) is opened again
        under the same name, after a backoff: a question the client already has is not put to it
        again, and its answer still goes back. Any other error is raised as an McpError."""
        view = secrets.token_hex(8)
        backoff = RETRY.backoff()
        while True:
            # Opened again: the questions the client holds are named, so that one withdrawn (or
            # answered elsewhere) during the break still comes as `withdrawn`.
            held = [request for request, (forward, _) in forwards.items() if not forward.done()]
            follow = pb.StreamTaskEventsRequest(
                owner=owner,
                task_id=task_id,
                skip_changes=True,
                view_id=view,
                delivered_request_ids=held[-MAX_DELIVERED:],
            )
            events = self.service.StreamTaskEvents(follow)
            try:
                async with _closing(events):
                    async for event in events:
                        kind = event.WhichOneof("event")
                        if kind == "request":
                            pending = event.request
                            if pending.request_id not in forwards:  # else delivered again after a break
                                asked = _Asked()
                                forward = group.create_task(
                                    self._forward(session, owner, pending, request_id, asked, view)
                                )
                                forwards[pending.request_id] = (forward, asked)
                        elif kind == "withdrawn":
                            withdrawn = forwards.pop(event.withdrawn.request_id, None)
                            if withdrawn is not None:
                                await self._call_off(session, *withdrawn, request_id)
                        elif kind == "outcome":
                            self._saw(event.outcome.task)
                            return event.outcome
                        backoff.reset()
            except grpc.aio.AioRpcError as exc:
                if self.closing:
                    raise shutting_down(method) from None
                if exc.code() not in RETRYABLE:
                    raise rpc_error(exc, f"task {task_id}") from None
                log.info("task %s: its events broke off (%s); re-attaching", task_id, exc.code().name)
                if not await self._pause(backoff):
                    raise shutting_down(method) from None
            else:
                ended = f"task {task_id}: stream ended early"
                raise McpError(types.ErrorData(code=types.INTERNAL_ERROR, message=ended))

    async def _call_off(
        self,
        session: ServerSession,
        forward: asyncio.Task[None],
        asked: _Asked,
        related_request_id: types.RequestId,
    ) -> None:
        """Stop forwarding a request the task no longer waits for, and tell the client so:
        `tasks/cancel` for the client's task that runs it, if it made one (the spec's way for a
        task-augmented request), and `notifications/cancelled` for whichever request of the
        forward the client has now (the question itself, or a poll of that task)."""
        if forward.done():
            return  # answered
        if asked.answered and self.closing:
            return  # the answer is being stored: kept (the retries stop, as the bridge closes)
        forward.cancel()
        if asked.client_task is not None:
            self._spawn(self._cancel_client_task(session, asked.client_task), "bridge-cancel-client-task")
        if asked.jsonrpc_id is not None:
            self._responses(session).add(asked.jsonrpc_id)
            cancelled = types.CancelledNotification(
                params=types.CancelledNotificationParams(
                    requestId=asked.jsonrpc_id, reason="The task no longer waits for this request."
                )
            )
            try:
                await session.send_notification(
                    types.ServerNotification(cancelled), related_request_id=related_request_id
                )
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                log.info("request %s not called off: the session is closed", asked.jsonrpc_id)

    @staticmethod
    async def _cancel_client_task(session: ServerSession, task_id: str) -> None:
        params = types.CancelTaskRequestParams(taskId=task_id)
        request = types.ServerRequest(types.CancelTaskRequest(params=params))
        try:
            with anyio.fail_after(CANCEL_WAIT):
                await session.send_request(request, types.CancelTaskResult)
        except (McpError, TimeoutError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            # Ended meanwhile, or a client that does not answer: it keeps a task nobody reads.
            log.info("the client's task %s not cancelled: %s", task_id, exc)

    async def _forward(
        self,
        session: ServerSession,
        owner: str,
        pending: task_pb2.PendingRequest,
        related_request_id: types.RequestId,
        asked: _Asked,
        view: str,
    ) -> None:
        """Send one queued request to the client and store its answer (or error) in the service,
        as the answer of the event stream `view`. `asked` follows the request at the client, for
        `_call_off`.

        Whatever the client answers, the worker gets an answer: the client's, or an error saying
        why that could not be passed on. When the session closes first, nothing is answered: the
        request stays pending, and the client's next tasks/result puts it again. Nothing but a
        cancellation leaves this coroutine, which runs in tasks/result's task group."""
        answer = pb.AnswerRequestRequest(
            owner=owner, task_id=pending.task_id, request_id=pending.request_id, view_id=view
        )
        try:
            try:
                result = await self._ask(session, pending, related_request_id, asked)
            except McpError as exc:
                answer.error.CopyFrom(_wire_error(exc.error, pending.method))
            else:
                answer.result.CopyFrom(_struct(dump_model(result), "result"))
        except _SessionClosed:
            log.info("request %s stays pending: the client's session closed", pending.request_id)
            return
        except ValueError as exc:  # an answer the service could not take as it is
            answer.error.CopyFrom(_not_valid(pending.method, str(exc)))
        except Exception as exc:
            log.exception("the client's answer to request %s not passed on", pending.request_id)
            answer.error.CopyFrom(
                task_pb2.McpError(
                    code=types.INTERNAL_ERROR,
                    message=f"The bridge could not pass on the client's answer to {pending.method}: {exc!r}",
                )
            )
        asked.answered = True
        if asked.client_task is not None:  # a client's task whose poll failed: of no use any more
            self._spawn(self._cancel_client_task(session, asked.client_task), "bridge-cancel-client-task")
            asked.client_task = None
        try:
            await self._store_answer(answer, pending.method)
        except Exception:
            log.exception("the answer to request %s not stored", pending.request_id)

    async def _ask(
        self,
        session: ServerSession,
        pending: task_pb2.PendingRequest,
        related_request_id: types.RequestId,
        asked: _Asked,
    ) -> types.Result:
        """The client's answer to a queued request. McpError: the client answered an error;
        ValueError: a reply that is not what was asked for, saying which; _SessionClosed."""
        responses = self._responses(session)
        params = struct_to_dict(pending.params)
        metadata = ServerMessageMetadata(related_request_id=related_request_id)
        if pending.method == "elicitation/create":
            request = types.ServerRequest(types.ElicitRequest.model_validate({"params": params}))
        else:
            request = types.ServerRequest(types.CreateMessageRequest.model_validate({"params": params}))
        if "task" not in params:
            with _reply_to():
                return await _send(session, responses, asked, request, AnyResult, metadata)
        # The client runs it as its own task: wait for that task, then fetch its result.
        with _reply_to():
            created = await _send(session, responses, asked, request, types.CreateTaskResult, metadata)
        client_task = asked.client_task = created.task.taskId

        async def get_task(task_id: str) -> types.GetTaskResult:
            which = types.GetTaskRequestParams(taskId=task_id)
            query = types.ServerRequest(types.GetTaskRequest(params=which))
            with _reply_to(f"tasks/get of its task {task_id}"):
                status = await _send(session, responses, asked, query, types.GetTaskResult)
            if status.pollInterval is not None and status.pollInterval < CLIENT_POLL_MIN_MS:
                # poll_until_terminal waits as long as the client says, 0 included.
                status = status.model_copy(update={"pollInterval": CLIENT_POLL_MIN_MS})
            return status

        async for _ in poll_until_terminal(get_task, client_task):
            pass
        asked.client_task = None  # ended: nothing to cancel
        fetch = types.GetTaskPayloadRequestParams(taskId=client_task)
        payload = types.ServerRequest(types.GetTaskPayloadRequest(params=fetch))
        with _reply_to(f"tasks/result of its task {client_task}"):
            return await _send(session, responses, asked, payload, AnyResult)

    async def _store_answer(self, answer: pb.AnswerRequestRequest, method: str) -> None:
        """AnswerRequest. An answer the service refuses (it checks the client's answers against
        MCP's models and the payload limit) is replaced by an error saying why, so that the worker
        is not left waiting for an answer that never comes."""
        try:
            await self._answer(answer)
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
                # Another waiter answered first, the task ended meanwhile, or the request was
                # withdrawn (its worker lost the task): nothing to do.
                log.info("answer to request %s not stored: %s", answer.request_id, exc.details())
                return
            refused = exc.details() or exc.code().name
        answer.error.CopyFrom(_not_valid(method, refused))
        try:
            await self._answer(answer)
        except grpc.aio.AioRpcError as again:
            log.info("answer to request %s not stored: %s", answer.request_id, again.details())

    async def _answer(self, answer: pb.AnswerRequestRequest) -> None:
        """AnswerRequest, again after a backoff while the service is unreachable (not once the
        bridge closes: the question then stays pending, and the next `tasks/result` asks it)."""
        backoff = RETRY.backoff()
        while True:
            try:
                await self.service.AnswerRequest(answer)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or not await self._pause(backoff):
                    raise
                log.info("answer to %s not stored yet (%s); retrying", answer.request_id, exc.code().name)

    async def _task_result(self, request: types.GetTaskPayloadRequest) -> types.ServerResult:
        session, owner = self._owner()
        task_id = text_param("tasks/result", "taskId", request.params.taskId)
        outcome = await self._run_to_outcome(session, owner, task_id, self.server.request_context.request_id)
        await self._terminal_notified(session, task_id)
        if outcome.task.status == task_pb2.TASK_STATUS_COMPLETED and outcome.HasField("result"):
            # Stored by Complete, which checked it is a CallToolResult: no second round of validation.
            data = struct_to_dict(outcome.result)
        else:
            data = dump_model(tool_result(outcome))
        data["_meta"] = {**(data.get("_meta") or {}), **related_task_meta(task_id)}
        return types.ServerResult(types.GetTaskPayloadResult.model_validate(data))

    # ----------------------------------------------------- tasks/get, list, cancel

    async def _get_task(self, request: types.GetTaskRequest) -> types.ServerResult:
        _, owner = self._owner()
        task_id = text_param("tasks/get", "taskId", request.params.taskId)
        with mcp_errors("tasks/get"):
            found = await self.service.LookupTask(pb.LookupTaskRequest(owner=owner, task_id=task_id))
        self._saw(found.task)
        return types.ServerResult(task_as(types.GetTaskResult, found.task))

    async def _list_tasks(self, request: types.ListTasksRequest) -> types.ServerResult:
        _, owner = self._owner()
        cursor = request.params.cursor if request.params else None
        if cursor:
            text_param("tasks/list", "cursor", cursor)
        with mcp_errors("tasks/list"):
            page = await self.service.ListTasks(pb.ListTasksRequest(owner=owner, page_token=cursor or ""))
        return types.ServerResult(
            types.ListTasksResult(
                tasks=[mcp_task(t) for t in page.tasks], nextCursor=page.next_page_token or None
            )
        )

    async def _cancel_task(self, request: types.CancelTaskRequest) -> types.ServerResult:
        _, owner = self._owner()
        task_id = text_param("tasks/cancel", "taskId", request.params.taskId)
        with mcp_errors("tasks/cancel"):
            cancelled = await self.service.CancelTask(pb.CancelTaskRequest(owner=owner, task_id=task_id))
        self._saw(cancelled.task)
        return types.ServerResult(task_as(types.CancelTaskResult, cancelled.task))
