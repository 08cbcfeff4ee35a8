"""The public surface of the SDK's `ServerTaskContext` as the seeds document it.

Copied from seeds/003 (the `ServerTaskContext` reference page: its source of
`mcp/server/experimental/task_context.py`), signatures only. The installed SDK
(mcp 1.30) spells one parameter differently (`requestedSchema`); the seeds,
the design and the stub use `requested_schema`.
"""

from __future__ import annotations

from typing import Any, Protocol

from mcp.types import (
    CreateMessageResult,
    ElicitRequestedSchema,
    ElicitResult,
    IncludeContext,
    ModelPreferences,
    Result,
    SamplingMessage,
    Task,
    Tool,
    ToolChoice,
)


class SeedServerTaskContext(Protocol):
    @property
    def task_id(self) -> str: ...

    @property
    def task(self) -> Task: ...

    @property
    def is_cancelled(self) -> bool: ...

    def request_cancellation(self) -> None: ...

    async def update_status(self, message: str, *, notify: bool = True) -> None: ...

    async def complete(self, result: Result, *, notify: bool = True) -> None: ...

    async def fail(self, error: str, *, notify: bool = True) -> None: ...

    async def elicit(
        self,
        message: str,
        requested_schema: ElicitRequestedSchema,
    ) -> ElicitResult: ...

    async def elicit_url(
        self,
        message: str,
        url: str,
        elicitation_id: str,
    ) -> ElicitResult: ...

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
    ) -> CreateMessageResult: ...

    async def elicit_as_task(
        self,
        message: str,
        requested_schema: ElicitRequestedSchema,
        *,
        ttl: int = 60000,
    ) -> ElicitResult: ...

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
    ) -> CreateMessageResult: ...
