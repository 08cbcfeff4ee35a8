from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from taskservice_client._proto.mcptasks.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class UpdateStatusRequest(_message.Message):
    __slots__ = ("task_id", "status_message", "notify", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status_message: str
    notify: bool
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., status_message: _Optional[str] = ..., notify: bool = ..., lease_id: _Optional[str] = ...) -> None: ...

class UpdateStatusResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("task_id", "result", "notify", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    result: _struct_pb2.Struct
    notify: bool
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., notify: bool = ..., lease_id: _Optional[str] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("task_id", "error", "notify", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    error: str
    notify: bool
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., error: _Optional[str] = ..., notify: bool = ..., lease_id: _Optional[str] = ...) -> None: ...

class FailResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class ReportOutcomesRequest(_message.Message):
    __slots__ = ("report_id", "complete", "fail")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    complete: CompleteRequest
    fail: FailRequest
    def __init__(self, report_id: _Optional[str] = ..., complete: _Optional[_Union[CompleteRequest, _Mapping]] = ..., fail: _Optional[_Union[FailRequest, _Mapping]] = ...) -> None: ...

class ReportOutcomesResponse(_message.Message):
    __slots__ = ("report_id", "complete", "fail", "error")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    complete: CompleteResponse
    fail: FailResponse
    error: OutcomeError
    def __init__(self, report_id: _Optional[str] = ..., complete: _Optional[_Union[CompleteResponse, _Mapping]] = ..., fail: _Optional[_Union[FailResponse, _Mapping]] = ..., error: _Optional[_Union[OutcomeError, _Mapping]] = ...) -> None: ...

class OutcomeError(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class ElicitRequest(_message.Message):
    __slots__ = ("task_id", "message", "requested_schema", "request_id", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    message: str
    requested_schema: _struct_pb2.Struct
    request_id: str
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., message: _Optional[str] = ..., requested_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., request_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class ElicitResponse(_message.Message):
    __slots__ = ("task", "pending", "result", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    pending: _task_pb2.PendingRequest
    result: _struct_pb2.Struct
    error: _task_pb2.McpError
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., pending: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_task_pb2.McpError, _Mapping]] = ...) -> None: ...

class ElicitUrlRequest(_message.Message):
    __slots__ = ("task_id", "message", "url", "elicitation_id", "request_id", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ELICITATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    message: str
    url: str
    elicitation_id: str
    request_id: str
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., message: _Optional[str] = ..., url: _Optional[str] = ..., elicitation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class ElicitUrlResponse(_message.Message):
    __slots__ = ("task", "pending", "result", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    pending: _task_pb2.PendingRequest
    result: _struct_pb2.Struct
    error: _task_pb2.McpError
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., pending: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_task_pb2.McpError, _Mapping]] = ...) -> None: ...

class CreateMessageRequest(_message.Message):
    __slots__ = ("task_id", "messages", "max_tokens", "system_prompt", "include_context", "temperature", "stop_sequences", "metadata", "model_preferences", "tools", "tool_choice", "request_id", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    STOP_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    max_tokens: int
    system_prompt: str
    include_context: str
    temperature: float
    stop_sequences: _containers.RepeatedScalarFieldContainer[str]
    metadata: _struct_pb2.Struct
    model_preferences: _struct_pb2.Struct
    tools: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    tool_choice: _struct_pb2.Struct
    request_id: str
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., system_prompt: _Optional[str] = ..., include_context: _Optional[str] = ..., temperature: _Optional[float] = ..., stop_sequences: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., model_preferences: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., tool_choice: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., request_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class CreateMessageResponse(_message.Message):
    __slots__ = ("task", "pending", "result", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    pending: _task_pb2.PendingRequest
    result: _struct_pb2.Struct
    error: _task_pb2.McpError
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., pending: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_task_pb2.McpError, _Mapping]] = ...) -> None: ...

class ElicitAsTaskRequest(_message.Message):
    __slots__ = ("task_id", "message", "requested_schema", "ttl_ms", "request_id", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    message: str
    requested_schema: _struct_pb2.Struct
    ttl_ms: int
    request_id: str
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., message: _Optional[str] = ..., requested_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., ttl_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class ElicitAsTaskResponse(_message.Message):
    __slots__ = ("task", "pending", "result", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    pending: _task_pb2.PendingRequest
    result: _struct_pb2.Struct
    error: _task_pb2.McpError
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., pending: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_task_pb2.McpError, _Mapping]] = ...) -> None: ...

class CreateMessageAsTaskRequest(_message.Message):
    __slots__ = ("task_id", "messages", "max_tokens", "system_prompt", "include_context", "temperature", "stop_sequences", "metadata", "model_preferences", "tools", "tool_choice", "ttl_ms", "request_id", "lease_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    STOP_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    max_tokens: int
    system_prompt: str
    include_context: str
    temperature: float
    stop_sequences: _containers.RepeatedScalarFieldContainer[str]
    metadata: _struct_pb2.Struct
    model_preferences: _struct_pb2.Struct
    tools: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    tool_choice: _struct_pb2.Struct
    ttl_ms: int
    request_id: str
    lease_id: str
    def __init__(self, task_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., system_prompt: _Optional[str] = ..., include_context: _Optional[str] = ..., temperature: _Optional[float] = ..., stop_sequences: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., model_preferences: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., tool_choice: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., ttl_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class CreateMessageAsTaskResponse(_message.Message):
    __slots__ = ("task", "pending", "result", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    pending: _task_pb2.PendingRequest
    result: _struct_pb2.Struct
    error: _task_pb2.McpError
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., pending: _Optional[_Union[_task_pb2.PendingRequest, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_task_pb2.McpError, _Mapping]] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class WatchTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "name", "tools", "max_concurrent_tasks")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_TASKS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    name: str
    tools: _containers.RepeatedCompositeFieldContainer[_task_pb2.ToolDefinition]
    max_concurrent_tasks: int
    def __init__(self, worker_id: _Optional[str] = ..., name: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[_task_pb2.ToolDefinition, _Mapping]]] = ..., max_concurrent_tasks: _Optional[int] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("worker_id", "lease_ttl_ms", "heartbeat_interval_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_ttl_ms: int
    heartbeat_interval_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., lease_ttl_ms: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class StreamAssignmentsRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("lease_id", "task", "tool_name", "arguments", "lease_expires_at", "meta")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    task: _task_pb2.Task
    tool_name: str
    arguments: _struct_pb2.Struct
    lease_expires_at: _timestamp_pb2.Timestamp
    meta: _struct_pb2.Struct
    def __init__(self, lease_id: _Optional[str] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., tool_name: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., lease_expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StreamAssignmentsResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class AckAssignmentRequest(_message.Message):
    __slots__ = ("worker_id", "task_id", "lease_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_id: str
    lease_id: str
    def __init__(self, worker_id: _Optional[str] = ..., task_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class AckAssignmentResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "task_ids")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("lease_expires_at", "cancelled_task_ids")
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    cancelled_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lease_expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseAssignmentRequest(_message.Message):
    __slots__ = ("worker_id", "task_id", "lease_id", "reason")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_id: str
    lease_id: str
    reason: str
    def __init__(self, worker_id: _Optional[str] = ..., task_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseAssignmentResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class UnregisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class UnregisterWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateStoredTaskRequest(_message.Message):
    __slots__ = ("owner", "task_id", "ttl_ms")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    owner: str
    task_id: str
    ttl_ms: int
    def __init__(self, owner: _Optional[str] = ..., task_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class CreateStoredTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class UpdateTaskRequest(_message.Message):
    __slots__ = ("task_id", "status", "status_message", "notify")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: _task_pb2.TaskStatus
    status_message: str
    notify: bool
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_task_pb2.TaskStatus, str]] = ..., status_message: _Optional[str] = ..., notify: bool = ...) -> None: ...

class UpdateTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class DeleteTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class DeleteTaskResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: bool = ...) -> None: ...
