"""MCP payloads at the service's boundary: validated against `mcp.types`, built as the SDK builds them.

Payloads travel as JSON (protobuf Struct) so every language reads them; this
module is where they meet MCP's own models. A payload that does not fit
raises InvalidArgument naming the field, e.g. `result.content.0.type`.
Client-bound request params are built exactly as the SDK's ServerSession
builds them, related-task `_meta` included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic
from mcp import types
from mcp.server.validation import validate_sampling_tools, validate_tool_use_result_messages
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.capabilities import (
    require_task_augmented_elicitation,
    require_task_augmented_sampling,
)
from mcp.shared.experimental.tasks.helpers import RELATED_TASK_METADATA_KEY
from taskservice_client._convert import dump_model

from taskservice.domain.errors import InvalidArgument
from taskservice.domain.model import JsonObject

ELICIT_METHOD = "elicitation/create"
SAMPLING_METHOD = "sampling/createMessage"
RELATED_TASK_KEY = RELATED_TASK_METADATA_KEY

M = TypeVar("M", bound=pydantic.BaseModel)

# Property types MCP 2025-11-25 allows in an elicitation's requestedSchema.
_PRIMITIVE_TYPES = frozenset({"string", "number", "integer", "boolean"})


def parse(model: type[M], data: Any, field: str, *, names: Mapping[str, str] | None = None) -> M:
    """Validate `data` as an MCP model; the error names the first offending field.

    `names` renames the top-level keys in that path (MCP's camelCase) to the fields
    of the request that carried them, when `data` was built from a request's fields.
    """
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise not_valid(exc, model.__name__, field, names=names) from exc


def not_valid(
    exc: pydantic.ValidationError, model: str, field: str, *, names: Mapping[str, str] | None = None
) -> InvalidArgument:
    """pydantic's first complaint about data for MCP model `model`, naming the field (see parse)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if names and loc:
        loc[0] = names.get(loc[0], loc[0])
    where = ".".join(part for part in (field, *loc) if part) or model
    return InvalidArgument(where, f"{first['msg']} (not a valid MCP {model})")


def call_tool_result(data: JsonObject, field: str = "result") -> JsonObject:
    return dump_model(parse(types.CallToolResult, data, field))


def _check_requested_schema(schema: JsonObject, field: str) -> None:
    if schema.get("type") != "object":
        raise InvalidArgument(f"{field}.type", 'must be "object"')
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidArgument(f"{field}.properties", "must be an object")
    for name, prop in properties.items():
        where = f"{field}.properties.{name}"
        if not isinstance(prop, dict):
            raise InvalidArgument(where, "must be an object")
        kind = prop.get("type")
        if kind == "array":
            items = prop.get("items")
            if not isinstance(items, dict) or not ("enum" in items or "anyOf" in items):
                raise InvalidArgument(f"{where}.items", "a multi-select array needs enum or anyOf items")
        elif kind not in _PRIMITIVE_TYPES:
            raise InvalidArgument(
                f"{where}.type",
                f"must be one of string, number, integer, boolean or an enum array, not {kind!r}",
            )
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise InvalidArgument(f"{field}.required", "must list property names of the schema")


def _with_related_task(params: JsonObject, task_id: str) -> JsonObject:
    meta = params.setdefault("_meta", {})
    meta[RELATED_TASK_KEY] = types.RelatedTaskMetadata(taskId=task_id).model_dump(by_alias=True)
    return params


def _task_field(ttl_ms: int | None) -> types.TaskMetadata | None:
    return None if ttl_ms is None else types.TaskMetadata(ttl=ttl_ms)


def elicit_form_params(
    task_id: str, message: str, requested_schema: JsonObject, *, ttl_ms: int | None = None
) -> JsonObject:
    """`elicitation/create` params (form mode); with `ttl_ms` the client runs it as a task."""
    _check_requested_schema(requested_schema, "requested_schema")
    params = types.ElicitRequestFormParams(
        message=message, requestedSchema=requested_schema, task=_task_field(ttl_ms)
    )
    return _with_related_task(dump_model(params), task_id)


def elicit_url_params(task_id: str, message: str, url: str, elicitation_id: str) -> JsonObject:
    if not url:
        raise InvalidArgument("url", "must not be empty")
    if not elicitation_id:
        raise InvalidArgument("elicitation_id", "must not be empty")
    params = types.ElicitRequestURLParams(message=message, url=url, elicitationId=elicitation_id)
    return _with_related_task(dump_model(params), task_id)


# CreateMessageRequestParams keys -> the CreateMessage request fields they come from, so
# that an error names the field the caller set (`max_tokens`, not `params.maxTokens`).
_SAMPLING_FIELDS = {
    "maxTokens": "max_tokens",
    "systemPrompt": "system_prompt",
    "includeContext": "include_context",
    "stopSequences": "stop_sequences",
    "modelPreferences": "model_preferences",
    "toolChoice": "tool_choice",
}


def create_message_params(
    task_id: str,
    *,
    messages: list[Any],
    max_tokens: int,
    system_prompt: str | None = None,
    include_context: str | None = None,
    temperature: float | None = None,
    stop_sequences: list[str] | None = None,
    metadata: JsonObject | None = None,
    model_preferences: JsonObject | None = None,
    tools: list[Any] | None = None,
    tool_choice: JsonObject | None = None,
    ttl_ms: int | None = None,
) -> JsonObject:
    """`sampling/createMessage` params, checked as the SDK's create_message checks them."""
    if max_tokens <= 0:
        raise InvalidArgument("max_tokens", f"must be positive, got {max_tokens}")
    if not messages:
        raise InvalidArgument("messages", "must not be empty")
    raw: JsonObject = {"messages": messages, "maxTokens": max_tokens}
    optional = {
        "systemPrompt": system_prompt,
        "includeContext": include_context,
        "temperature": temperature,
        "stopSequences": stop_sequences,
        "metadata": metadata,
        "modelPreferences": model_preferences,
        "tools": tools,
        "toolChoice": tool_choice,
    }
    raw.update({k: v for k, v in optional.items() if v is not None})
    params = parse(types.CreateMessageRequestParams, raw, "", names=_SAMPLING_FIELDS)
    try:
        validate_tool_use_result_messages(params.messages)
    except ValueError as exc:
        raise InvalidArgument("messages", str(exc)) from exc
    if ttl_ms is not None:
        params.task = types.TaskMetadata(ttl=ttl_ms)
    return _with_related_task(dump_model(params), task_id)


def client_answer(method: str, params: JsonObject, data: JsonObject, field: str = "result") -> JsonObject:
    """Validate the client's answer to a request of `method`."""
    if method == ELICIT_METHOD:
        return dump_model(parse(types.ElicitResult, data, field))
    if method == SAMPLING_METHOD:
        with_tools = "tools" in params or "toolChoice" in params
        model: type[pydantic.BaseModel] = (
            types.CreateMessageResultWithTools if with_tools else types.CreateMessageResult
        )
        return dump_model(parse(model, data, field))
    raise InvalidArgument("request_id", f"names a request of unknown method {method!r}")


def client_error(code: int, message: str, data: Any = None) -> JsonObject:
    if not message:
        raise InvalidArgument("error.message", "must not be empty")
    return dump_model(types.ErrorData(code=code, message=message, data=data))


def tool_definition(
    name: str,
    input_schema: JsonObject | None,
    output_schema: JsonObject | None,
    field: str,
) -> None:
    """Check a worker's tool declaration the way an MCP client will read it."""
    tool = parse(
        types.Tool,
        {"name": name, "inputSchema": input_schema or {"type": "object"}, "outputSchema": output_schema},
        field,
    )
    if tool.inputSchema.get("type") != "object":
        raise InvalidArgument(f"{field}.input_schema.type", 'must be "object"')
    if output_schema is not None and output_schema.get("type") != "object":
        raise InvalidArgument(f"{field}.output_schema.type", 'must be "object"')


def refused_by_client(method: str, params: JsonObject, capabilities: JsonObject) -> JsonObject | None:
    """The SDK's error for a request the client declared it cannot take; None when it can.

    The same checks, in the same order and with the same messages, as
    `ServerTaskContext` makes before it queues a request.
    """
    caps = types.ClientCapabilities.model_validate(capabilities)
    try:
        if method == ELICIT_METHOD:
            if "task" in params:
                require_task_augmented_elicitation(caps)
            elif caps.elicitation is None:
                raise McpError(
                    types.ErrorData(
                        code=types.INVALID_REQUEST, message="Client does not support elicitation capability"
                    )
                )
        elif method == SAMPLING_METHOD:
            if "task" in params:
                require_task_augmented_sampling(caps)
            elif caps.sampling is None:
                raise McpError(
                    types.ErrorData(
                        code=types.INVALID_REQUEST, message="Client does not support sampling capability"
                    )
                )
            tools = params.get("tools")
            tool_choice = params.get("toolChoice")
            validate_sampling_tools(
                caps,
                None if tools is None else [types.Tool.model_validate(t) for t in tools],
                None if tool_choice is None else types.ToolChoice.model_validate(tool_choice),
            )
    except McpError as exc:
        return dump_model(exc.error)
    return None
