// Errors of the service and of the MCP client, as JavaScript exceptions.
import { status } from "@grpc/grpc-js";

const STATUS_NAMES = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));

/** The name of a gRPC status code (`UNAVAILABLE` for 14). */
export function statusName(code) {
  return STATUS_NAMES[code] ?? `CODE_${code}`;
}

/** A call to the task service failed; `code` is the gRPC status code, `codeName` its name. */
export class TaskServiceError extends Error {
  constructor(code, details, { method = "" } = {}) {
    const where = method ? `${method}: ` : "";
    super(`${where}${details || statusName(code)} (${statusName(code)})`);
    this.name = "TaskServiceError";
    this.code = code;
    this.codeName = statusName(code);
    this.details = details ?? "";
    this.method = method;
  }
}

/** The service refused the call: unknown task, bad argument, or a change the task's state does not allow. */
export class TaskServiceRejected extends TaskServiceError {
  constructor(code, details, options) {
    super(code, details, options);
    this.name = "TaskServiceRejected";
  }
}

/** The service could not be reached within the retry policy. */
export class TaskServiceUnavailable extends TaskServiceError {
  constructor(code, details, options) {
    super(code, details, options);
    this.name = "TaskServiceUnavailable";
  }
}

/** The MCP client answered an elicitation or sampling request with a JSON-RPC error. */
export class McpError extends Error {
  constructor({ code, message, data }) {
    super(message);
    this.name = "McpError";
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}

/**
 * The task stopped while the tool was working on it: the client cancelled it
 * (`reason` "cancelled"), the service no longer knows it or gave it to another
 * worker ("lost"), or the worker is shutting down and handed it back
 * ("handed_back"). Every call on the task's context throws it from then on.
 */
export class TaskCancelledError extends Error {
  constructor(taskId, reason = "cancelled") {
    const why = {
      cancelled: "was cancelled",
      lost: "is no longer held by this worker",
      handed_back: "was handed back: the worker is shutting down",
    }[reason] ?? reason;
    super(`task ${taskId} ${why}`);
    this.name = "TaskCancelledError";
    this.taskId = taskId;
    this.reason = reason;
  }
}

const REJECTED = new Set([
  status.NOT_FOUND,
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.ALREADY_EXISTS,
  status.OUT_OF_RANGE,
  status.RESOURCE_EXHAUSTED,
]);

/** Codes that mean "the service went away; the same call may be made again". */
export const RETRYABLE = new Set([status.UNAVAILABLE]);

/** A grpc-js error (or status) as one of the errors above. */
export function translate(error, method = "") {
  const code = typeof error?.code === "number" ? error.code : status.UNKNOWN;
  const details = error?.details ?? error?.message ?? "";
  if (REJECTED.has(code)) return new TaskServiceRejected(code, details, { method });
  if (RETRYABLE.has(code)) return new TaskServiceUnavailable(code, details, { method });
  return new TaskServiceError(code, details, { method });
}
