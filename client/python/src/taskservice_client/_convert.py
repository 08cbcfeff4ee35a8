"""Conversions between the wire (protobuf) and the MCP SDK's pydantic models.

MCP payloads travel as `google.protobuf.Struct`, whose numbers are all doubles;
`struct_to_dict` turns integral doubles back into ints so that models with
strict integer fields (a task's `ttl`, `maxTokens`) validate again.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pydantic
from google.protobuf import struct_pb2, timestamp_pb2
from mcp import types

from taskservice_client._proto.mcptasks.v1 import task_pb2

JsonObject = dict[str, Any]

_MAX_SAFE_INT = 2**53
"""A Struct's numbers are doubles, which hold every integer up to ±2^53 exactly, and not all above."""

STATUS_FROM_PROTO: dict[int, types.TaskStatus] = {
    task_pb2.TASK_STATUS_WORKING: types.TASK_STATUS_WORKING,
    task_pb2.TASK_STATUS_INPUT_REQUIRED: types.TASK_STATUS_INPUT_REQUIRED,
    task_pb2.TASK_STATUS_COMPLETED: types.TASK_STATUS_COMPLETED,
    task_pb2.TASK_STATUS_FAILED: types.TASK_STATUS_FAILED,
    task_pb2.TASK_STATUS_CANCELLED: types.TASK_STATUS_CANCELLED,
}

TERMINAL_STATUSES: frozenset[types.TaskStatus] = frozenset(
    {types.TASK_STATUS_COMPLETED, types.TASK_STATUS_FAILED, types.TASK_STATUS_CANCELLED}
)

TASK_SUPPORT_TO_PROTO: dict[str, int] = {
    "optional": task_pb2.TASK_SUPPORT_OPTIONAL,
    "required": task_pb2.TASK_SUPPORT_REQUIRED,
    "forbidden": task_pb2.TASK_SUPPORT_FORBIDDEN,
}


def is_terminal(status: types.TaskStatus) -> bool:
    return status in TERMINAL_STATUSES


def _plain(value: Any) -> Any:
    """Integral doubles back to ints, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_SAFE_INT:
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        return _plain(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    return [value_to_python(item) for item in value.list_value.values]


def struct_to_dict(struct: struct_pb2.Struct) -> JsonObject:
    # By key, not `.items()`: the map's items view is the ABC's, a Python generator per field.
    fields = struct.fields
    return {key: value_to_python(fields[key]) for key in fields}


def clip_utf8(text: str, limit: int) -> str:
    """`text` as UTF-8 can carry it (a lone surrogate, as in a file name of undecodable bytes,
    written out as `\\udcff`), cut to at most `limit` bytes of UTF-8 (at a character's end), "..." marking
    the cut."""
    if not text.isascii():
        text = _printable(text)
    if len(text) * 4 <= limit:  # a character is at most 4 bytes
        return text
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def _json_safe(data: Any) -> Any:
    """Round-trip through JSON so that tuples, enums of str and the like become plain JSON."""
    return json.loads(json.dumps(data))


class _Unfit(Exception):
    """A value a Struct cannot carry as it is: why, and the path to it (innermost step first)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
        self.steps: list[str] = []


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unfit("holds a lone surrogate (such as \\ud800), which UTF-8 text cannot carry") from None


MAX_DEPTH = 24
"""How deep a JSON payload may nest: objects and arrays within one another, the payload itself
counting as the first level (the task service's limit; see its MAX_PAYLOAD_DEPTH for why)."""


def _check_value(value: Any, depth: int, exact: bool) -> None:
    if isinstance(value, str):
        if exact:
            _check_text(value)
    elif isinstance(value, dict | list | tuple):
        if depth > MAX_DEPTH:
            raise _Unfit(f"nests deeper than {MAX_DEPTH} levels of objects and arrays")
        if isinstance(value, dict):
            for key, item in value.items():
                try:
                    if exact and isinstance(key, str):
                        _check_text(key)
                    _check_value(item, depth + 1, exact)
                except _Unfit as unfit:
                    unfit.steps.append(f".{_printable(str(key))}")
                    raise
        else:
            for index, item in enumerate(value):
                try:
                    _check_value(item, depth + 1, exact)
                except _Unfit as unfit:
                    unfit.steps.append(f"[{index}]")
                    raise
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Unfit("holds NaN or an infinity, which JSON cannot carry")
    elif exact and isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INT:
        shown = str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        raise _Unfit(f"is {shown}, beyond ±2^53: numbers travel as doubles, which would change it")


def _fits(value: Any, depth: int, exact: bool) -> bool:
    """_check_value's verdict, without the path: the walk every payload takes, kept lean (no
    exception handler per item, the usual leaves tested without a call)."""
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        if depth > MAX_DEPTH:
            return False
        if kind is dict:
            if exact and not all(type(key) is not str or key.isascii() or _utf8(key) for key in value):
                return False
            items = value.values()
        else:
            items = value
        for item in items:
            kind = type(item)
            if kind is str:
                if exact and not item.isascii() and not _utf8(item):
                    return False
            elif kind is float:
                if not math.isfinite(item):
                    return False
            elif kind is int:
                if exact and abs(item) > _MAX_SAFE_INT:
                    return False
            elif item is not None and kind is not bool and not _fits(item, depth + 1, exact):
                return False
        return True
    if kind is str:
        return not exact or value.isascii() or _utf8(value)
    if kind is float:
        return math.isfinite(value)
    if kind is int:
        return not exact or abs(value) <= _MAX_SAFE_INT
    # Anything else (a subclass, say): the full walk decides.
    try:
        _check_value(value, depth, exact)
    except _Unfit:
        return False
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unfit(data: Any, *, exact: bool = True) -> tuple[str, str] | None:
    """The first value in `data` that a Struct cannot carry as it is, as (its path below `data`,
    why), or None: NaN or an infinity (JSON has neither), objects and arrays nested deeper than
    MAX_DEPTH (protobuf decodes only so many levels) and, with `exact`, a string with a lone
    surrogate (protobuf strings are UTF-8) or an integer beyond ±2^53 (a double would arrive for
    it, 2^53 + 1 as 2^53). Data read off a Struct has neither of the last two: `exact=False`."""
    if _fits(data, 1, exact):
        return None
    try:  # the slow walk, which names the path, only for data that does not fit
        _check_value(data, 1, exact)
    except _Unfit as found:
        return "".join(reversed(found.steps)), found.why
    return None


def check_exact(data: Any, field: str = "") -> None:
    """Raise ValueError, naming the path (`field` and the keys and indexes below it), for the first
    value in `data` that a Struct cannot carry as it is (see unfit)."""
    found = unfit(data)
    if found is not None:
        path, why = found
        where = (field + path).lstrip(".") or "the value"
        raise ValueError(f"{where} {why}")


def dict_to_struct(data: JsonObject, field: str = "") -> struct_pb2.Struct:
    """`data` as a Struct; ValueError naming the path of a value it cannot carry exactly (check_exact)."""
    check_exact(data, field)  # first: it bounds the depth that json.dumps recurses into
    safe = _json_safe(data)
    struct = struct_pb2.Struct()
    struct.update(safe)
    return struct


def python_to_value(data: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    safe = _json_safe(data)
    if safe is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(safe, bool):
        value.bool_value = safe
    elif isinstance(safe, int | float):
        value.number_value = safe
    elif isinstance(safe, str):
        value.string_value = safe
    elif isinstance(safe, dict):
        value.struct_value.update(safe)
    else:
        value.list_value.extend(safe)
    return value


def dump_model(model: pydantic.BaseModel) -> JsonObject:
    """An MCP model as the JSON it has on the wire (aliases, no nulls)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def model_struct(model: pydantic.BaseModel, field: str = "") -> struct_pb2.Struct:
    return dict_to_struct(dump_model(model), field)


def timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def datetime_to_timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def task_from_proto(message: task_pb2.Task) -> types.Task:
    """The wire `Task` as the SDK's `mcp.types.Task`."""
    status = STATUS_FROM_PROTO.get(message.status)
    if status is None:
        raise ValueError(f"task {message.task_id!r} has no valid status ({message.status})")
    return types.Task(
        taskId=message.task_id,
        status=status,
        statusMessage=message.status_message or None,
        createdAt=timestamp_to_datetime(message.created_at),
        lastUpdatedAt=timestamp_to_datetime(message.last_updated_at),
        ttl=message.ttl_ms or None,
        pollInterval=message.poll_interval_ms or None,
    )


def mcp_error_data(error: task_pb2.McpError) -> types.ErrorData:
    data = value_to_python(error.data) if error.HasField("data") else None
    return types.ErrorData(code=error.code, message=error.message, data=data)


def call_tool_result(value: object, *, structured: bool = False) -> types.CallToolResult:
    """A tool's return value as a `CallToolResult`: models pass, dicts and strings are wrapped.

    A dict becomes JSON text content, and also `structuredContent` when the
    tool declared an output schema (`structured`). None is an empty result.
    """
    if isinstance(value, types.CallToolResult):
        return value
    if value is None:
        return types.CallToolResult(content=[])
    if isinstance(value, str):
        return types.CallToolResult(content=[types.TextContent(type="text", text=value)])
    if isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structuredContent=value if structured else None,
        )
    if isinstance(
        value, types.TextContent | types.ImageContent | types.AudioContent | types.EmbeddedResource
    ):
        return types.CallToolResult(content=[value])
    raise TypeError(f"a tool must return a CallToolResult, a dict, a str or None, not {type(value).__name__}")
