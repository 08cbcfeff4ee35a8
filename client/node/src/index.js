// taskservice-client: the Node worker stub of mcp-taskservice.
export { Worker } from "./worker.js";
export { RemoteTaskContext, newRequestId } from "./context.js";
export { ServiceClient } from "./client.js";
export { McpError, TaskCancelledError, TaskServiceError, TaskServiceRejected, TaskServiceUnavailable } from "./errors.js";
export { callToolResult, fromStruct, fromValue, isTerminal, toStruct, toValue } from "./convert.js";
export { PROTO_DIR, contract } from "./proto.js";
