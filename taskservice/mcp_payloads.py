"""MCP payloads at the service's boundary: validated against `mcp.types`, built as the SDK builds them.

Payloads travel as JSON (protobuf Struct) so every language reads them; this
module is where they meet MCP's own models. A payload that does not fit
raises InvalidArgument naming the field, e.g. `result.content.0.type`; a stored
one that does not (stored before a check existed) raises StoredDataInvalid.
Client-bound request params are built exactly as the SDK's ServerSession
builds them, related-task `_meta` included.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, TypeVar

import jsonschema
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

from taskservice.domain.errors import InvalidArgument, StoredDataInvalid
from taskservice.domain.model import JsonObject

ELICIT_METHOD = "elicitation/create"
SAMPLING_METHOD = "sampling/createMessage"
RELATED_TASK_KEY = RELATED_TASK_METADATA_KEY

M = TypeVar("M", bound=pydantic.BaseModel)

# Property types MCP 2025-11-25 allows in an elicitation's requestedSchema.
_PRIMITIVE_TYPES = frozenset({"string", "number", "integer", "boolean"})


def _first_error(errors: list[Any]) -> tuple[tuple[int | str, ...], str]:
    """Where and what the error to report is: the first one, leaving out the branches of a union
    (MCP's content blocks) that are not the item's: those of another `type`, and those it is
    not even the shape of (a list). So a `resource_link` item without its `name` is told about
    ResourceLink's `name`, not about TextContent's `type`. An item whose `type` no branch has is
    told so, with the types there are."""
    mismatched = [
        error
        for error in errors
        if error["type"] == "literal_error" and len(error["loc"]) >= 2 and error["loc"][-1] == "type"
    ]
    branches = {tuple(error["loc"][:-1]) for error in mismatched}
    unions = {branch[:-1] for branch in branches}

    def elsewhere(loc: tuple[int | str, ...]) -> bool:
        if any(loc[: len(branch)] == branch for branch in branches):
            return True
        return any(len(loc) == len(union) + 1 and loc[: len(union)] == union for union in unions)

    for error in errors:
        loc = tuple(error["loc"])
        if not elsewhere(loc):
            return loc, str(error["msg"])
    if mismatched:
        union = tuple(mismatched[0]["loc"][:-2])
        known = [str(e["ctx"]["expected"]) for e in mismatched if tuple(e["loc"][:-2]) == union]
        return (*union, "type"), f"{mismatched[0]['input']!r} is not a known type (one of {', '.join(known)})"
    return tuple(errors[0]["loc"]), str(errors[0]["msg"])


def not_valid(
    exc: pydantic.ValidationError, model: str, field: str, *, names: Mapping[str, str] | None = None
) -> InvalidArgument:
    """pydantic's first complaint about data for MCP model `model`, naming the field (see parse)."""
    found, message = _first_error(exc.errors())
    loc = [str(part) for part in found]
    if names and loc:
        loc[0] = names.get(loc[0], loc[0])
    where = ".".join(part for part in (field, *loc) if part) or model
    return InvalidArgument(where, f"{message} (not a valid MCP {model})")


def parse(
    model: type[M], data: Any, field: str, *, names: Mapping[str, str] | None = None, strict: bool = False
) -> M:
    """Validate `data` as an MCP model; the error names the first offending field.

    `names` renames the top-level keys in that path (MCP's camelCase) to the fields
    of the request that carried them, when `data` was built from a request's fields.
    `strict`: no coercion (`"yes"` is no boolean), for what a worker declares or returns,
    which the service stores and passes on as it is.
    """
    try:
        return model.model_validate(data, strict=strict)
    except pydantic.ValidationError as exc:
        raise not_valid(exc, model.__name__, field, names=names) from exc


def stored(model: type[M], data: Any, field: str) -> M:
    """A stored payload as an MCP model: StoredDataInvalid (not a pydantic error) naming the
    field when it does not fit, for a payload stored before the service checked it coming in."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        invalid = not_valid(exc, model.__name__, field)
        raise StoredDataInvalid(invalid.field, invalid.description) from exc


def call_tool_result(data: JsonObject, field: str = "result") -> JsonObject:
    return dump_model(parse(types.CallToolResult, data, field, strict=True))


def client_capabilities(data: JsonObject, field: str = "client_capabilities") -> JsonObject:
    """The capabilities an MCP client declared, checked once, as the task stores them."""
    return dump_model(parse(types.ClientCapabilities, data, field))


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


def json_schema_validator(schema: JsonObject) -> type[jsonschema.protocols.Validator]:
    """The validator of a tool's JSON Schema: MCP's default dialect, 2020-12, unless `$schema`
    names another draft jsonschema knows."""
    cls: type[jsonschema.protocols.Validator] = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    return cls


def check_json_schema(schema: JsonObject, field: str) -> None:
    """InvalidArgument naming the spot (`tools[0].input_schema.properties`) when `schema` is no
    JSON Schema: a tool's calls would all fail on it."""
    dialect = schema.get("$schema")
    if dialect is not None and not isinstance(dialect, str):
        raise InvalidArgument(f"{field}.$schema", "must be the URI of a JSON Schema dialect")
    problem = _schema_problem(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    if problem is not None:
        path, message = problem
        raise InvalidArgument(".".join([field, *path]), f"{message} (not a valid JSON Schema)")


@functools.lru_cache(maxsize=1024)
def _schema_problem(canonical: str) -> tuple[tuple[str, ...], str] | None:
    """jsonschema's complaint about a schema (its JSON, keys sorted), or None: checked once per
    schema, since a check costs 0.2 ms to 1 ms and a worker's tools come again with each
    registration (every reconnect) and each bridge's tool list."""
    schema = json.loads(canonical)
    try:
        json_schema_validator(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return tuple(str(part) for part in exc.path), exc.message
    return None


# Tool keys -> the ToolDefinition fields they come from, so that an error names the field the
# worker set (`tools[0].output_schema`, not `tools[0].outputSchema`).
_TOOL_FIELDS = {"inputSchema": "input_schema", "outputSchema": "output_schema", "execution": "task_support"}


def tool_definition(
    field: str,
    *,
    name: str,
    title: str = "",
    description: str = "",
    input_schema: JsonObject | None = None,
    output_schema: JsonObject | None = None,
    annotations: JsonObject | None = None,
    task_support: str = "optional",
) -> types.Tool:
    """The MCP `Tool` a worker's declaration stands for, as the bridge lists it; checked the way
    an MCP client will read it (MCP's models, strictly; JSON Schema for both schemas).
    InvalidArgument names the declaration's field, e.g. `tools[0].annotations.readOnlyHint`."""
    raw: JsonObject = {
        "name": name,
        "inputSchema": input_schema or {"type": "object"},
        "execution": {"taskSupport": task_support},
    }
    optional = {
        "title": title or None,
        "description": description or None,
        "outputSchema": output_schema,
        "annotations": annotations,
    }
    raw.update({k: v for k, v in optional.items() if v is not None})
    tool = parse(types.Tool, raw, field, names=_TOOL_FIELDS, strict=True)
    for key, schema in (("input_schema", tool.inputSchema), ("output_schema", tool.outputSchema)):
        if schema is None:
            continue
        if schema.get("type") != "object":
            raise InvalidArgument(f"{field}.{key}.type", 'must be "object"')
        check_json_schema(schema, f"{field}.{key}")
    return tool


def refused_by_client(method: str, params: JsonObject, capabilities: JsonObject) -> JsonObject | None:
    """The SDK's error for a request the client declared it cannot take; None when it can.

    The same checks, in the same order and with the same messages, as
    `ServerTaskContext` makes before it queues a request.
    """
    caps = stored(types.ClientCapabilities, capabilities, "client_capabilities")
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
                None if tools is None else [stored(types.Tool, t, "params.tools") for t in tools],
                None if tool_choice is None else stored(types.ToolChoice, tool_choice, "params.toolChoice"),
            )
    except McpError as exc:
        return dump_model(exc.error)
    return None
