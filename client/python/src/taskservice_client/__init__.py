"""Worker stub for mcp-taskservice: run MCP task work in any process.

- `RemoteTaskContext`: the SDK's `ServerTaskContext` surface, backed by the service.
- `Worker`: declares tools and runs the tasks the service assigns to them.
- `GrpcTaskStore`: the SDK's `TaskStore`, backed by the service.
"""

from taskservice_client._channel import RetryPolicy, TLSConfig
from taskservice_client._context import RemoteTaskContext
from taskservice_client._errors import TaskServiceError, TaskServiceRejected, TaskServiceUnavailable
from taskservice_client._store import GrpcTaskStore
from taskservice_client._worker import TaskSupport, ToolFunction, ToolRegistration, Worker

__version__ = "0.1.0"

__all__ = [
    "GrpcTaskStore",
    "RemoteTaskContext",
    "RetryPolicy",
    "TLSConfig",
    "TaskServiceError",
    "TaskServiceRejected",
    "TaskServiceUnavailable",
    "TaskSupport",
    "ToolFunction",
    "ToolRegistration",
    "Worker",
    "__version__",
]
