"""Mapping between protobuf messages and domain records. No logic beyond the mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from taskservice_client._convert import MAX_DEPTH, struct_to_dict, unfit, value_to_python
from taskservice_client._proto.mcptasks.v1 import task_pb2

from taskservice.domain.errors import InvalidArgument, PayloadTooLarge
from taskservice.domain.model import ClientRequest, JsonObject, TaskRecord, TaskStatus, TaskSupport, ToolSpec
from taskservice.domain.service import check_text_size

T = TypeVar("T")
E = TypeVar("E")

STATUS_TO_PROTO = {
    TaskStatus.WORKING: task_pb2.TASK_STATUS_WORKING,
    TaskStatus.INPUT_REQUIRED: task_pb2.TASK_STATUS_INPUT_REQUIRED,
    TaskStatus.COMPLETED: task_pb2.TASK_STATUS_COMPLETED,
    TaskStatus.FAILED: task_pb2.TASK_STATUS_FAILED,
    TaskStatus.CANCELLED: task_pb2.TASK_STATUS_CANCELLED,
}

STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}

SUPPORT_TO_PROTO = {
    TaskSupport.OPTIONAL: task_pb2.TASK_SUPPORT_OPTIONAL,
    TaskSupport.REQUIRED: task_pb2.TASK_SUPPORT_REQUIRED,
    TaskSupport.FORBIDDEN: task_pb2.TASK_SUPPORT_FORBIDDEN,
}
SUPPORT_FROM_PROTO = {v: k for k, v in SUPPORT_TO_PROTO.items()} | {
    task_pb2.TASK_SUPPORT_UNSPECIFIED: TaskSupport.OPTIONAL
}


def from_enum(enum: EnumTypeWrapper, mapping: Mapping[Any, E], number: int, field: str) -> E:
    """The domain value of an enum field. proto3 keeps a number its enum does not have (a newer
    peer's, or any int): InvalidArgument naming the field, never a KeyError or a silent default."""
    value = mapping.get(number)
    if value is None:
        names = ", ".join(enum.Name(known) for known in mapping)
        raise InvalidArgument(field, f"{number} is not one of {names}")
    return value


def timestamp(ms: int) -> timestamp_pb2.Timestamp:
    # What Timestamp.FromMilliseconds sets (floor division: nanos stay in [0, 1e9)), without
    # its Python-level checks: two of these go with every Task message.
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def task_message(task: TaskRecord) -> task_pb2.Task:
    return task_pb2.Task(
        task_id=task.task_id,
        status=STATUS_TO_PROTO[task.status],
        status_message=task.status_message,
        created_at=timestamp(task.created_at),
        last_updated_at=timestamp(task.last_updated_at),
        ttl_ms=task.ttl_ms,
        poll_interval_ms=task.poll_interval_ms,
        tool_name=task.tool_name,
    )


def struct(data: JsonObject) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def value(data: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(data, message)
    return message


MAX_PAYLOAD_DEPTH = MAX_DEPTH
"""How deep a JSON payload may nest: objects and arrays within one another, the payload itself
counting as the first level.

protobuf decoders give up past 100 levels of nested messages (upb's and C++'s default,
Java's too), and a Struct costs three of them a level (Struct, map entry, Value; an array
two: ListValue, Value), its leaves two more. The deepest a payload goes out is as a sampling
message or tool inside a question's params, in a PendingRequest inside a response: seven
levels down (response, PendingRequest, params, entry, Value, ListValue, Value). So a payload
of this depth ends at most 7 + 3 * 23 + 2 = 78 levels down, and every message that carries
one decodes with 22 levels to spare."""


class PayloadReader:
    """Reads JSON payloads out of a request, enforcing the per-payload size and depth limits."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def _check_size(self, message: Any, field: str) -> None:
        size = int(message.ByteSize())
        if size > self.max_bytes:
            raise PayloadTooLarge(field, size, self.max_bytes)

    def object(self, request: Any, field: str, *, required: bool = False) -> JsonObject | None:
        """A Struct field as a dict; None when unset (InvalidArgument if required)."""
        if not request.HasField(field):
            if required:
                raise InvalidArgument(field, "is required")
            return None
        message = getattr(request, field)
        self._check_size(message, field)
        return _json(struct_to_dict(message), field)

    def objects(self, request: Any, field: str) -> list[JsonObject]:
        items = getattr(request, field)
        for index, item in enumerate(items):
            self._check_size(item, f"{field}[{index}]")
        return [_json(struct_to_dict(item), f"{field}[{index}]") for index, item in enumerate(items)]

    def value(self, message: struct_pb2.Value, field: str) -> Any:
        self._check_size(message, field)
        return _json(value_to_python(message), field)

    @staticmethod
    def number(request: Any, field: str) -> float | None:
        """An optional double field; None when unset, InvalidArgument for NaN or an infinity."""
        if not request.HasField(field):
            return None
        number: float = _json(getattr(request, field), field)
        return number

    def text(self, value: str, field: str) -> str:
        """A string field that goes out as (part of) a payload, held to the same limit."""
        check_text_size(field, value, self.max_bytes)
        return value

    def together(self, request: Any, field: str) -> None:
        """A repeated field's items (a worker's tools), held to the limit together: they go out
        in one message (ListTools, WatchTools)."""
        size = sum(int(item.ByteSize()) for item in getattr(request, field))
        if size > self.max_bytes:
            raise PayloadTooLarge(field, size, self.max_bytes)

    def params(self, request: Any, params: JsonObject) -> JsonObject:
        """A question's params, built from all of `request`'s fields: they go to the client as one
        payload (PendingRequest.params), so they are held to the limit as a whole too."""
        # Params take at most about twice the bytes of the fields they are made of (a Value around
        # each item, MCP's key names): a question well under the limit needs no Struct to measure.
        if 2 * int(request.ByteSize()) + 1024 > self.max_bytes:
            size = int(struct(params).ByteSize())
            if size > self.max_bytes:
                raise PayloadTooLarge("params", size, self.max_bytes)
        return params


def check_payload(data: Any, field: str) -> None:
    """InvalidArgument naming `field` unless `data` fits every message that carries it: JSON, and
    so MCP and the stores' bodies, has no NaN or infinity (a Struct's numbers are doubles, which
    can be), and it nests at most MAX_PAYLOAD_DEPTH levels (the worker library's one check of
    what a Struct carries, `unfit`)."""
    found = unfit(data, exact=False)  # read off a Struct: its strings are UTF-8, its numbers doubles
    if found is not None:
        raise InvalidArgument(field, found[1])


def _json(data: T, field: str) -> T:
    """`data`, checked by check_payload."""
    check_payload(data, field)
    return data


def request_message(task_id: str, request: ClientRequest) -> task_pb2.PendingRequest:
    return task_pb2.PendingRequest(
        request_id=request.request_id,
        task_id=task_id,
        method=request.method,
        params=struct(request.params),
        sequence=request.sequence,
        created_at=timestamp(request.created_at),
    )


def mcp_error_message(error: JsonObject) -> task_pb2.McpError:
    message = task_pb2.McpError(code=int(error["code"]), message=str(error["message"]))
    if error.get("data") is not None:
        message.data.CopyFrom(value(error["data"]))
    return message


def tool_message(tool: ToolSpec) -> task_pb2.ToolDefinition:
    message = task_pb2.ToolDefinition(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=struct(tool.input_schema),
        task_support=SUPPORT_TO_PROTO[tool.task_support],
        retry_safe=tool.retry_safe,
    )
    if tool.output_schema is not None:
        message.output_schema.CopyFrom(struct(tool.output_schema))
    if tool.annotations is not None:
        message.annotations.CopyFrom(struct(tool.annotations))
    return message
