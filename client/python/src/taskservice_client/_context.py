"""RemoteTaskContext: the SDK's ServerTaskContext, with the task's state held by the service."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import grpc
import pydantic
from mcp.server.validation import validate_tool_use_result_messages
from mcp.shared.exceptions import McpError
from mcp.types import (
    CreateMessageResult,
    ElicitRequestedSchema,
    ElicitResult,
    IncludeContext,
    ModelPreferences,
    Result,
    SamplingMessage,
    Task,
    TaskStatus,
    Tool,
    ToolChoice,
)

from taskservice_client._client import ServiceClient, cancellable, method_name
from taskservice_client._convert import (
    dict_to_struct,
    dump_model,
    mcp_error_data,
    model_struct,
    struct_to_dict,
    task_from_proto,
)
from taskservice_client._errors import RETRYABLE, TaskServiceRejected, TaskServiceUnavailable, translate
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2

log = logging.getLogger("taskservice_client")

pb = task_service_pb2
M = TypeVar("M", bound=pydantic.BaseModel)

# What grpc.aio's read() returns at a stream's end (grpc-stubs do not declare it).
_STREAM_END: object = grpc.aio.EOF  # type: ignore[attr-defined]


def new_request_id() -> str:
    """A request id chosen before the first attempt, so that a retry re-attaches instead of asking again."""
    return "w-" + secrets.token_urlsafe(16)


def _set(**fields: Any) -> dict[str, Any]:
    """Keyword arguments for a protobuf constructor, without the unset (None) ones."""
    return {name: value for name, value in fields.items() if value is not None}


class RemoteTaskContext:
    """The context of one task, run in a worker process: the surface of the SDK's `ServerTaskContext`.

    Every method is a call to the task service, which stores the change before
    it answers. `elicit`, `elicit_url`, `create_message` and their `*_as_task`
    variants wait for the client's answer however long it takes; when the
    service goes away meanwhile they reconnect and re-attach to the same
    request (the client is never asked twice). When the client cancels the
    task, `is_cancelled` becomes true and the wait raises the cancellation
    exception of the running async library.

    Workers receive one per task from `Worker`; they do not construct it.
    """

    def __init__(
        self,
        *,
        task: Task,
        client: ServiceClient,
        on_cancel: Callable[[], None] | None = None,
        lease_id: str = "",
    ) -> None:
        """`lease_id`: the assignment's lease, which the status changes, the questions for the
        client and the outcome name, so that a worker declared lost cannot change a task, or
        ask its client, once another worker runs it."""
        self._task = task
        self._client = client
        self._lease_id = lease_id
        self._cancelled = False
        self._on_cancel = on_cancel
        # Set once the work completes or fails the task itself: its end is not a loss.
        self._finishing = False

    # --------------------------------------------------------------- state

    @property
    def task_id(self) -> str:
        """The task identifier."""
        return self._task.taskId

    @property
    def task(self) -> Task:
        """The current task state (kept current as the service reports changes)."""
        return self._task

    @property
    def is_cancelled(self) -> bool:
        """Whether cancellation has been requested."""
        return self._cancelled

    def request_cancellation(self) -> None:
        """Request cancellation of this task.

        This sets is_cancelled=True. Task work should check this
        periodically and exit gracefully if set.
        """
        self._cancelled = True

    def _observe(self, message: task_pb2.Task) -> Task:
        """Take a task state the service reported, unless a newer one is known already."""
        task = task_from_proto(message)
        if task.taskId == self.task_id and task.lastUpdatedAt >= self._task.lastUpdatedAt:
            self._task = task
        if task.status == "cancelled":
            self._service_cancelled()
        return task

    def _service_cancelled(self) -> None:
        """The service says the task was cancelled: flag it and stop the work."""
        first = not self._cancelled
        self._cancelled = True
        if first and self._on_cancel is not None:
            self._on_cancel()

    async def _raise_cancelled(self) -> None:
        self._service_cancelled()
        # With a Worker, the tool runs in a cancel scope that `_on_cancel` just
        # cancelled: the next checkpoint raises. Alone, raise it here.
        await anyio.lowlevel.checkpoint()
        raise anyio.get_cancelled_exc_class()()

    # ------------------------------------------------------- status changes

    async def update_status(self, message: str, *, notify: bool = True) -> None:
        """Update the task's status message.

        Args:
            message: The new status message
            notify: Whether to send a notification to the client
        """
        response = await self._client.unary(
            self._client.tasks.UpdateStatus,
            pb.UpdateStatusRequest(
                task_id=self.task_id, status_message=message, notify=notify, lease_id=self._lease_id
            ),
            pb.UpdateStatusResponse,
        )
        self._observe(response.task)

    async def complete(self, result: Result, *, notify: bool = True) -> None:
        """Mark the task as completed with the given result.

        Args:
            result: The task result (an MCP `CallToolResult`)
            notify: Whether to send a notification to the client

        Raises:
            ValueError: If the result holds a value the wire cannot carry exactly (an integer
                beyond ±2^53, a lone surrogate), naming its path
        """
        request = pb.CompleteRequest(
            task_id=self.task_id,
            result=model_struct(result, "result"),
            notify=notify,
            lease_id=self._lease_id,
        )
        await self._end(self._client.tasks.Complete, request, pb.CompleteResponse, "completed")

    async def fail(self, error: str, *, notify: bool = True) -> None:
        """Mark the task as failed with an error message.

        Args:
            error: The error message
            notify: Whether to send a notification to the client
        """
        request = pb.FailRequest(
            task_id=self.task_id, error=error or "failed", notify=notify, lease_id=self._lease_id
        )
        await self._end(self._client.tasks.Fail, request, pb.FailResponse, "failed")

    async def _end(
        self,
        rpc: Callable[..., Any],
        request: object,
        response_type: type[pb.CompleteResponse | pb.FailResponse],
        wanted: TaskStatus,
    ) -> None:
        """Complete or fail the task. A retried call whose first attempt went through is a success
        (as in the SDK's stores)."""
        self._finishing = True
        try:
            response = await self._client.unary(rpc, request, response_type)
        except TaskServiceRejected as error:
            if error.code is not grpc.StatusCode.FAILED_PRECONDITION:
                raise
            await self._refresh()
            if self._task.status != wanted:
                raise
            return
        self._observe(response.task)

    async def _refresh(self) -> Task:
        response = await self._client.unary(
            self._client.tasks.GetTask, pb.GetTaskRequest(task_id=self.task_id), pb.GetTaskResponse
        )
        return self._observe(response.task)

    # ------------------------------------------------- requests for the client

    async def _ask(self, rpc: Callable[..., Any], build: Callable[[str], Any], model: type[M]) -> M:
        """Ask the client through a server stream; re-attach by request id after a break.

        The request names the assignment's lease: once the task is another worker's (or back
        in the queue), the service withdraws the question and ends the stream with
        LEASE_NOT_HELD, which raises here.
        """
        request = build(new_request_id())
        request.lease_id = self._lease_id
        backoff = self._client.retry.backoff()
        while True:
            call = self._client.stream(rpc, request)
            reason = "the stream ended before the answer"
            answered = False
            try:
                async with cancellable():
                    # read(), not `async for`: leaving an `async for` at the answer would leave
                    # the call's response generator for the garbage collector to close.
                    while True:
                        event: Any = await call.read()
                        if event is _STREAM_END:
                            break
                        backoff.reset()
                        self._observe(event.task)
                        kind = event.WhichOneof("event")
                        if kind == "result":
                            answered = True
                            return model.model_validate(struct_to_dict(event.result))
                        if kind == "error":
                            answered = True
                            raise McpError(mcp_error_data(event.error))
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code is grpc.StatusCode.CANCELLED:
                    if await self._cancelled_on_service():
                        await self._raise_cancelled()
                elif code not in RETRYABLE:
                    raise translate(error, method_name(rpc)) from None
                reason = f"{code.name}: {error.details()}"
            finally:
                if answered:
                    # The answer is the stream's last event, and the service ends the call after
                    # it. The cancel (in case it does not) costs the loop a C-core cancellation, so
                    # it waits for the loop's next turn: the tool goes on with the answer first.
                    asyncio.get_running_loop().call_soon(call.cancel)
                else:
                    call.cancel()
            delay = backoff.next_delay()
            if delay is None:
                raise TaskServiceUnavailable(grpc.StatusCode.UNAVAILABLE, reason, method=method_name(rpc))
            log.info("task %s: %s; re-attaching in %.2fs", self.task_id, reason, delay)
            await anyio.sleep(delay)

    async def _cancelled_on_service(self) -> bool:
        """After a CANCELLED stream: is the task really cancelled (or did the stream just end)?"""
        try:
            task = await self._refresh()
        except TaskServiceRejected:
            return True  # gone: nothing left to wait for
        return task.status == "cancelled" or self._cancelled

    async def elicit(
        self,
        message: str,
        requested_schema: ElicitRequestedSchema,
    ) -> ElicitResult:
        """Send an elicitation request to the client and wait for the answer.

        The task is `input_required` until the client answers, then `working` again.

        Args:
            message: The message to present to the user
            requested_schema: Schema defining the expected response structure

        Returns:
            The client's response

        Raises:
            McpError: If the client doesn't support elicitation, or answered with an error
        """
        schema = dict_to_struct(requested_schema)
        return await self._ask(
            self._client.tasks.Elicit,
            lambda rid: pb.ElicitRequest(
                task_id=self.task_id, message=message, requested_schema=schema, request_id=rid
            ),
            ElicitResult,
        )

    async def elicit_url(
        self,
        message: str,
        url: str,
        elicitation_id: str,
    ) -> ElicitResult:
        """Send a URL mode elicitation request and wait for the answer.

        Args:
            message: Human-readable explanation of why the interaction is needed
            url: The URL the user should navigate to
            elicitation_id: Unique identifier for tracking this elicitation

        Returns:
            The client's response indicating acceptance, decline, or cancellation

        Raises:
            McpError: If the client doesn't support elicitation, or answered with an error
        """
        return await self._ask(
            self._client.tasks.ElicitUrl,
            lambda rid: pb.ElicitUrlRequest(
                task_id=self.task_id,
                message=message,
                url=url,
                elicitation_id=elicitation_id,
                request_id=rid,
            ),
            ElicitResult,
        )

    def _sampling_fields(
        self,
        messages: list[SamplingMessage],
        max_tokens: int,
        system_prompt: str | None,
        include_context: IncludeContext | None,
        temperature: float | None,
        stop_sequences: list[str] | None,
        metadata: dict[str, Any] | None,
        model_preferences: ModelPreferences | None,
        tools: list[Tool] | None,
        tool_choice: ToolChoice | None,
    ) -> dict[str, Any]:
        validate_tool_use_result_messages(messages)
        return _set(
            task_id=self.task_id,
            messages=[model_struct(m) for m in messages],
            max_tokens=max_tokens,
            system_prompt=system_prompt,
            include_context=include_context,
            temperature=temperature,
            stop_sequences=stop_sequences,
            metadata=None if metadata is None else dict_to_struct(metadata),
            model_preferences=None if model_preferences is None else model_struct(model_preferences),
            tools=None if tools is None else [model_struct(t) for t in tools],
            tool_choice=None if tool_choice is None else dict_to_struct(dump_model(tool_choice)),
        )

    async def create_message(
        self,
        messages: list[SamplingMessage],
        *,
        max_tokens: int,
        system_prompt: str | None = None,
        include_context: IncludeContext | None = None,
        temperature: float | None = None,
        stop_sequences: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        model_preferences: ModelPreferences | None = None,
        tools: list[Tool] | None = None,
        tool_choice: ToolChoice | None = None,
    ) -> CreateMessageResult:
        """Send a sampling request to the client and wait for the answer.

        Args:
            messages: The conversation messages for sampling
            max_tokens: Maximum tokens in the response
            system_prompt: Optional system prompt
            include_context: Context inclusion strategy
            temperature: Sampling temperature
            stop_sequences: Stop sequences
            metadata: Additional metadata
            model_preferences: Model selection preferences
            tools: Optional list of tools the LLM can use during sampling
            tool_choice: Optional control over tool usage behavior

        Returns:
            The sampling result from the client

        Raises:
            McpError: If the client doesn't support sampling (or tools), or answered with an error
            ValueError: If tool_use or tool_result message structure is invalid
        """
        fields = self._sampling_fields(
            messages,
            max_tokens,
            system_prompt,
            include_context,
            temperature,
            stop_sequences,
            metadata,
            model_preferences,
            tools,
            tool_choice,
        )
        return await self._ask(
            self._client.tasks.CreateMessage,
            lambda rid: pb.CreateMessageRequest(request_id=rid, **fields),
            CreateMessageResult,
        )

    async def elicit_as_task(
        self,
        message: str,
        requested_schema: ElicitRequestedSchema,
        *,
        ttl: int = 60000,
    ) -> ElicitResult:
        """Send an elicitation the client runs as a task of its own; wait for its final result.

        Args:
            message: The message to present to the user
            requested_schema: Schema defining the expected response structure
            ttl: Task time-to-live in milliseconds for the client's task

        Returns:
            The client's elicitation response

        Raises:
            McpError: If the client doesn't support task-augmented elicitation
        """
        schema = dict_to_struct(requested_schema)
        return await self._ask(
            self._client.tasks.ElicitAsTask,
            lambda rid: pb.ElicitAsTaskRequest(
                task_id=self.task_id, message=message, requested_schema=schema, ttl_ms=ttl, request_id=rid
            ),
            ElicitResult,
        )

    async def create_message_as_task(
        self,
        messages: list[SamplingMessage],
        *,
        max_tokens: int,
        ttl: int = 60000,
        system_prompt: str | None = None,
        include_context: IncludeContext | None = None,
        temperature: float | None = None,
        stop_sequences: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        model_preferences: ModelPreferences | None = None,
        tools: list[Tool] | None = None,
        tool_choice: ToolChoice | None = None,
    ) -> CreateMessageResult:
        """Send a sampling request the client runs as a task of its own; wait for its final result.

        Args:
            messages: The conversation messages for sampling
            max_tokens: Maximum tokens in the response
            ttl: Task time-to-live in milliseconds for the client's task
            system_prompt: Optional system prompt
            include_context: Context inclusion strategy
            temperature: Sampling temperature
            stop_sequences: Stop sequences
            metadata: Additional metadata
            model_preferences: Model selection preferences
            tools: Optional list of tools the LLM can use during sampling
            tool_choice: Optional control over tool usage behavior

        Returns:
            The sampling result from the client

        Raises:
            McpError: If the client doesn't support task-augmented sampling or tools
            ValueError: If tool_use or tool_result message structure is invalid
        """
        fields = self._sampling_fields(
            messages,
            max_tokens,
            system_prompt,
            include_context,
            temperature,
            stop_sequences,
            metadata,
            model_preferences,
            tools,
            tool_choice,
        )
        return await self._ask(
            self._client.tasks.CreateMessageAsTask,
            lambda rid: pb.CreateMessageAsTaskRequest(request_id=rid, ttl_ms=ttl, **fields),
            CreateMessageResult,
        )


__all__ = ["RemoteTaskContext"]
