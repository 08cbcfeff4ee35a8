"""Worker stub for mcp-taskservice."""
