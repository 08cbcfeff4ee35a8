"""mcp-taskservice: MCP task context as a standalone gRPC service."""

__version__ = "0.1.0"
