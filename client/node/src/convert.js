// Conversions between the wire (proto-loader objects) and plain JSON.
//
// MCP payloads travel as google.protobuf.Struct / Value; the worker sees them as
// the plain JSON objects MCP defines. A task travels as the typed `Task`
// message; the worker sees it as MCP's `Task` JSON.

const STATUS_FROM_PROTO = {
  TASK_STATUS_WORKING: "working",
  TASK_STATUS_INPUT_REQUIRED: "input_required",
  TASK_STATUS_COMPLETED: "completed",
  TASK_STATUS_FAILED: "failed",
  TASK_STATUS_CANCELLED: "cancelled",
};

export const TASK_SUPPORT_TO_PROTO = {
  optional: "TASK_SUPPORT_OPTIONAL",
  required: "TASK_SUPPORT_REQUIRED",
  forbidden: "TASK_SUPPORT_FORBIDDEN",
};

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** Whether an MCP task status is terminal (completed, failed, cancelled). */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A JSON value as a google.protobuf.Value (after a JSON round trip: Dates become strings, undefined goes). */
export function toValue(data) {
  return jsonToValue(data === undefined ? null : JSON.parse(JSON.stringify(data)));
}

function jsonToValue(value) {
  if (value === null) return { nullValue: "NULL_VALUE" };
  switch (typeof value) {
    case "number":
      return { numberValue: value };
    case "string":
      return { stringValue: value };
    case "boolean":
      return { boolValue: value };
    default:
      if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
      return { structValue: jsonToStruct(value) };
  }
}

function jsonToStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object)) fields[key] = jsonToValue(value);
  return { fields };
}

/** A JSON object as a google.protobuf.Struct. */
export function toStruct(data) {
  if (!isPlainObject(data)) throw new TypeError(`expected a JSON object, not ${describe(data)}`);
  return jsonToStruct(JSON.parse(JSON.stringify(data)));
}

/** A google.protobuf.Value as JSON. */
export function fromValue(value) {
  if (value == null) return null;
  const kind = value.kind ?? Object.keys(value).find((key) => key.endsWith("Value"));
  switch (kind) {
    case "numberValue":
      return value.numberValue;
    case "stringValue":
      return value.stringValue;
    case "boolValue":
      return value.boolValue;
    case "structValue":
      return fromStruct(value.structValue);
    case "listValue":
      return (value.listValue?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

/** A google.protobuf.Struct as a JSON object ({} when unset). */
export function fromStruct(struct) {
  const object = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) object[key] = fromValue(value);
  return object;
}

/** A google.protobuf.Timestamp as an ISO 8601 string. */
export function timestampToIso(ts) {
  const ms = Number(ts?.seconds ?? 0) * 1000 + Math.floor(Number(ts?.nanos ?? 0) / 1e6);
  return new Date(ms).toISOString();
}

function timestampNanos(ts) {
  return BigInt(ts?.seconds ?? 0) * 1_000_000_000n + BigInt(ts?.nanos ?? 0);
}

/** Whether task message `a` is at least as recent as `b` (by last_updated_at, to the nanosecond). */
export function notOlder(a, b) {
  return timestampNanos(a?.last_updated_at) >= timestampNanos(b?.last_updated_at);
}

/** The wire `Task` as MCP's `Task` JSON. */
export function taskFromProto(message) {
  const status = STATUS_FROM_PROTO[message?.status];
  if (status === undefined) {
    throw new TypeError(`task ${message?.task_id} has no valid status (${message?.status})`);
  }
  const task = {
    taskId: message.task_id,
    status,
    createdAt: timestampToIso(message.created_at),
    lastUpdatedAt: timestampToIso(message.last_updated_at),
    ttl: message.ttl_ms ? Number(message.ttl_ms) : null,
  };
  if (message.status_message) task.statusMessage = message.status_message;
  if (message.poll_interval_ms) task.pollInterval = Number(message.poll_interval_ms);
  return task;
}

const CONTENT_TYPES = new Set(["text", "image", "audio", "resource", "resource_link"]);

/**
 * A tool's return value as an MCP `CallToolResult`: an object with a `content`
 * array is one already; a string becomes text content; a single content block
 * is wrapped; any other object becomes JSON text (and `structuredContent` when
 * the tool declared an output schema); undefined or null is an empty result.
 */
export function callToolResult(value, { structured = false } = {}) {
  if (value === undefined || value === null) return { content: [] };
  if (typeof value === "string") return { content: [{ type: "text", text: value }] };
  if (isPlainObject(value)) {
    if (Array.isArray(value.content)) return value;
    if (typeof value.type === "string" && CONTENT_TYPES.has(value.type)) return { content: [value] };
    const result = { content: [{ type: "text", text: JSON.stringify(value) }] };
    if (structured) result.structuredContent = value;
    return result;
  }
  throw new TypeError(
    `a tool must return a CallToolResult, an object, a string or nothing, not ${describe(value)}`,
  );
}

function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

/** The client's JSON-RPC error from an `McpError` message. */
export function mcpErrorData(error) {
  const data = { code: error?.code ?? 0, message: error?.message ?? "" };
  if (error?.data != null) data.data = fromValue(error.data);
  return data;
}
