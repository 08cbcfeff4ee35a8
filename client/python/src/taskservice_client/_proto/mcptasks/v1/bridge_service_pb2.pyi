from google.protobuf import struct_pb2 as _struct_pb2
from taskservice_client._proto.mcptasks.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateTaskRequest(_message.Message):
    __slots__ = ("owner", "tool_name", "arguments", "ttl_ms", "meta", "client_capabilities")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    owner: str
    tool_name: str
    arguments: _struct_pb2.Struct
    ttl_ms: int
    meta: _struct_pb2.Struct
    client_capabilities: _struct_pb2.Struct
    def __init__(self, owner: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., ttl_ms: _Optional[int] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., client_capabilities: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class LookupTaskRequest(_message.Message):
    __slots__ = ("owner", "task_id")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class LookupTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("owner", "page_size", "page_token")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    owner: str
    page_size: int
    page_token: str
    def __init__(self, owner: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("owner", "task_id", "reason")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    reason: str
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class GetTaskResultRequest(_message.Message):
    __slots__ = ("owner", "task_id")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class GetTaskResultResponse(_message.Message):
    __slots__ = ("task", "result")
    TASK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    result: _struct_pb2.Struct
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StreamTaskEventsRequest(_message.Message):
    __slots__ = ("owner", "task_id", "skip_changes", "view_id", "delivered_request_ids")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SKIP_CHANGES_FIELD_NUMBER: _ClassVar[int]
    VIEW_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    skip_changes: bool
    view_id: str
    delivered_request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ..., skip_changes: bool = ..., view_id: _Optional[str] = ..., delivered_request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskOutcome(_message.Message):
    __slots__ = ("task", "result")
    TASK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    result: _struct_pb2.Struct
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StreamTaskEventsResponse(_message.Message):
    __slots__ = ("task", "request", "outcome", "withdrawn")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    request: _task_pb2.PendingRequest
    outcome: TaskOutcome
    withdrawn: _task_pb2.PendingRequest
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., request: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ..., outcome: _Optional[_Union[TaskOutcome, _Mapping]] = ..., withdrawn: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ...) -> None: ...

class AnswerRequestRequest(_message.Message):
    __slots__ = ("owner", "task_id", "request_id", "result", "error", "view_id")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VIEW_ID_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    request_id: str
    result: _struct_pb2.Struct
    error: _task_pb2.McpError
    view_id: str
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ..., request_id: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_task_pb2.McpError, _Mapping]] = ..., view_id: _Optional[str] = ...) -> None: ...

class AnswerRequestResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[_task_pb2.ToolDefinition]
    def __init__(self, tools: _Optional[_Iterable[_Union[_task_pb2.ToolDefinition, _Mapping]]] = ...) -> None: ...

class WatchToolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[_task_pb2.ToolDefinition]
    def __init__(self, tools: _Optional[_Iterable[_Union[_task_pb2.ToolDefinition, _Mapping]]] = ...) -> None: ...

class FollowTaskRequest(_message.Message):
    __slots__ = ("owner", "task_id")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class FollowTaskResponse(_message.Message):
    __slots__ = ("task", "notify")
    TASK_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    notify: bool
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., notify: bool = ...) -> None: ...
