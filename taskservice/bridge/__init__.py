"""The MCP bridge: MCP clients on one side, the task service on the other."""

from taskservice.bridge.server import McpBridge
from taskservice.bridge.transports import HttpBridgeServer, serve_stdio

__all__ = ["HttpBridgeServer", "McpBridge", "serve_stdio"]
