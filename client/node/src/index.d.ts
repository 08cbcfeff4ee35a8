// Type declarations of taskservice-client (the package is plain ESM JavaScript).
import type { ChannelCredentials, ChannelOptions } from "@grpc/grpc-js";

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A JSON object. */
export type JsonObject = { [key: string]: Json };

/** MCP's task status. */
export type TaskStatus = "working" | "input_required" | "completed" | "failed" | "cancelled";

/** MCP's `Task` (2025-11-25), as the worker sees it. */
export interface Task {
  taskId: string;
  status: TaskStatus;
  statusMessage?: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601. */
  lastUpdatedAt: string;
  /** Retention from creation in milliseconds. */
  ttl: number | null;
  pollInterval?: number;
}

/** MCP content blocks (loosely typed: MCP payloads are checked by the service). */
export type ContentBlock =
  | { type: "text"; text: string; annotations?: JsonObject; _meta?: JsonObject }
  | { type: "image"; data: string; mimeType: string; annotations?: JsonObject; _meta?: JsonObject }
  | { type: "audio"; data: string; mimeType: string; annotations?: JsonObject; _meta?: JsonObject }
  | { type: "resource"; resource: JsonObject; annotations?: JsonObject; _meta?: JsonObject }
  | { type: "resource_link"; uri: string; name: string; [key: string]: Json | undefined };

/** MCP's `CallToolResult`. */
export interface CallToolResult {
  content: ContentBlock[];
  structuredContent?: JsonObject;
  isError?: boolean;
  _meta?: JsonObject;
}

/** MCP's `ElicitResult`. */
export interface ElicitResult {
  action: "accept" | "decline" | "cancel";
  content?: { [key: string]: string | number | boolean | string[] };
  _meta?: JsonObject;
}

/** MCP's `SamplingMessage`. */
export interface SamplingMessage {
  role: "user" | "assistant";
  content: JsonObject | JsonObject[];
  _meta?: JsonObject;
}

/** MCP's `CreateMessageResult`. */
export interface CreateMessageResult {
  role: "user" | "assistant";
  content: JsonObject | JsonObject[];
  model: string;
  stopReason?: string;
  _meta?: JsonObject;
}

/** The parameters of `sampling/createMessage` besides the messages. */
export interface CreateMessageOptions {
  maxTokens: number;
  systemPrompt?: string;
  includeContext?: "none" | "thisServer" | "allServers";
  temperature?: number;
  stopSequences?: string[];
  metadata?: JsonObject;
  modelPreferences?: JsonObject;
  /** MCP `Tool`s the model may call. */
  tools?: JsonObject[];
  /** MCP `ToolChoice`. */
  toolChoice?: JsonObject;
}

export interface NotifyOption {
  /** Send `notifications/tasks/status` to the client (default true). */
  notify?: boolean;
}

/** What a tool may return: a CallToolResult, one content block, an object (JSON text), a string or nothing. */
export type ToolReturn = CallToolResult | ContentBlock | JsonObject | string | null | undefined | void;

/**
 * The context of one task, run in a worker process: the surface of the Python
 * SDK's `ServerTaskContext`, with MCP payloads as plain JSON objects. Workers
 * receive one per task from `Worker`; they do not construct it.
 */
export declare class RemoteTaskContext {
  private constructor();
  /** The task identifier. */
  readonly taskId: string;
  /** The current task state (kept current as the service reports changes). */
  readonly task: Task;
  /** Whether cancellation has been requested (by the client, or with requestCancellation()). */
  readonly isCancelled: boolean;
  /** Aborts when the task is cancelled or the worker lets go of it. */
  readonly signal: AbortSignal;
  /** The tool this task runs. */
  readonly toolName: string;
  /** The MCP request `_meta` of the tool call (progress token and the like). */
  readonly meta: JsonObject;
  /** Set `isCancelled` (and abort `signal`); the task is not completed afterwards. */
  requestCancellation(): void;
  /** Set the task's status message. */
  updateStatus(message: string, options?: NotifyOption): Promise<void>;
  /** Store the result and mark the task completed. */
  complete(result: ToolReturn, options?: NotifyOption): Promise<void>;
  /** Mark the task failed with an error message. */
  fail(error: string | Error, options?: NotifyOption): Promise<void>;
  /** Form-mode elicitation; the task is `input_required` until the client answers. */
  elicit(message: string, requestedSchema: JsonObject): Promise<ElicitResult>;
  /** URL-mode elicitation. */
  elicitUrl(message: string, url: string, elicitationId: string): Promise<ElicitResult>;
  /** Elicitation the client runs as a task of its own. */
  elicitAsTask(message: string, requestedSchema: JsonObject, options?: { ttlMs?: number }): Promise<ElicitResult>;
  /** Sampling: the client's model answers `messages`. */
  createMessage(messages: SamplingMessage[], options: CreateMessageOptions): Promise<CreateMessageResult>;
  /** Sampling the client runs as a task of its own. */
  createMessageAsTask(
    messages: SamplingMessage[],
    options: CreateMessageOptions & { ttlMs?: number },
  ): Promise<CreateMessageResult>;
}

/** A tool's declaration, as MCP's `Tool` describes it. */
export interface ToolDefinition {
  /** Defaults to the handler function's name. */
  name?: string;
  title?: string;
  description?: string;
  /** JSON Schema of the arguments (an object schema); `{ type: "object" }` by default. */
  inputSchema?: JsonObject & { type: "object" };
  /** JSON Schema of the structured output; a returned object becomes `structuredContent` too. */
  outputSchema?: JsonObject & { type: "object" };
  /** MCP's `execution.taskSupport` (default "optional"). */
  taskSupport?: "optional" | "required" | "forbidden";
  /** Running the tool twice is harmless: a task whose worker is lost is dispatched again instead of failing. */
  retrySafe?: boolean;
  /** MCP tool annotations. */
  annotations?: JsonObject;
}

export type ToolHandler<Args extends JsonObject = JsonObject> = (
  ctx: RemoteTaskContext,
  args: Args,
) => Promise<ToolReturn> | ToolReturn;

/** How calls and streams retry while the service is unreachable. */
export interface RetryOptions {
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  multiplier?: number;
  jitter?: number;
  /** Give up a retried call after this long (default: never: a restart of the service must not lose work). */
  giveUpAfterMs?: number | null;
}

export interface TlsOptions {
  /** PEM roots that verify the service (default: the system's). */
  rootCerts?: string | Buffer;
  /** PEM client key and certificate, for mutual TLS. */
  privateKey?: string | Buffer;
  certChain?: string | Buffer;
  /** The name the service's certificate is checked against. */
  domain?: string;
}

export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface WorkerOptions {
  /** Bearer token sent with every call. */
  token?: string;
  /** TLS: true for the system's roots, options, or ready-made grpc-js credentials. */
  tls?: boolean | TlsOptions | ChannelCredentials;
  /** A label for the service's logs (default host:pid). */
  name?: string;
  /** Tasks run at once (default 10). */
  maxConcurrentTasks?: number;
  /** How long running tasks may finish after shutdown() before they are handed back (default 30000). */
  shutdownTimeoutMs?: number;
  retry?: RetryOptions;
  /** Deadline of unary calls (default 30000). */
  rpcTimeoutMs?: number;
  channelOptions?: ChannelOptions;
  /** Where the worker logs (default: warnings and errors to stderr; TASKSERVICE_LOG_LEVEL=info|debug for more). */
  logger?: Partial<Logger>;
}

/** Runs MCP tools as tasks of the task service. */
export declare class Worker {
  constructor(target: string, options?: WorkerOptions);
  readonly target: string;
  readonly name: string;
  /** The declared tools, by name. */
  readonly tools: ReadonlyMap<string, Readonly<ToolDefinition & { name: string }>>;
  /** The id the service gave this worker ("" until it registered). */
  readonly workerId: string;
  /** The tasks this worker runs now. */
  readonly runningTaskIds: string[];
  /** Declare a tool; `handler(ctx, args)` runs each call as a task. */
  tool<Args extends JsonObject = JsonObject>(definition: ToolDefinition, handler: ToolHandler<Args>): this;
  tool<Args extends JsonObject = JsonObject>(handler: ToolHandler<Args>): this;
  /** Serve the tools until shutdown() (or SIGTERM/SIGINT when `handleSignals`, the default). */
  run(options?: { handleSignals?: boolean }): Promise<void>;
  /** Stop taking work; called twice, hand back running tasks at once. */
  shutdown(): void;
}

/** A call to the task service failed. */
export declare class TaskServiceError extends Error {
  /** The gRPC status code. */
  readonly code: number;
  /** Its name, such as "NOT_FOUND". */
  readonly codeName: string;
  readonly details: string;
  readonly method: string;
}
/** The service refused the call: unknown task, bad argument, or a change the task's state does not allow. */
export declare class TaskServiceRejected extends TaskServiceError {}
/** The service could not be reached within the retry policy. */
export declare class TaskServiceUnavailable extends TaskServiceError {}

/** The MCP client answered with a JSON-RPC error. */
export declare class McpError extends Error {
  constructor(error: { code: number; message: string; data?: Json });
  readonly code: number;
  readonly data?: Json;
}

/** The task stopped while the tool worked on it; every later call on its context throws it too. */
export declare class TaskCancelledError extends Error {
  constructor(taskId: string, reason?: "cancelled" | "lost" | "handed_back");
  readonly taskId: string;
  readonly reason: "cancelled" | "lost" | "handed_back";
}

/** A request id for Elicit and the like, chosen before the first attempt. */
export declare function newRequestId(): string;
/** A tool's return value as a CallToolResult. */
export declare function callToolResult(value: ToolReturn, options?: { structured?: boolean }): CallToolResult;
export declare function isTerminal(status: TaskStatus): boolean;
/** JSON as google.protobuf.Struct / Value (proto-loader objects) and back. */
export declare function toStruct(data: JsonObject): { fields: Record<string, unknown> };
export declare function fromStruct(struct: { fields?: Record<string, unknown> } | null | undefined): JsonObject;
export declare function toValue(data: Json | undefined): Record<string, unknown>;
export declare function fromValue(value: Record<string, unknown> | null | undefined): Json;

/** The directory of the package's .proto files (include path for mcptasks/v1/*.proto). */
export declare const PROTO_DIR: string;
/** The loaded `mcptasks.v1` package (grpc-js service constructors and message types). */
export declare function contract(): Record<string, any>;

/** Stubs of TaskService and BridgeService over one channel, with retries (advanced use). */
export declare class ServiceClient {
  constructor(
    target: string,
    options?: Pick<WorkerOptions, "token" | "tls" | "retry" | "rpcTimeoutMs" | "channelOptions">,
  );
  readonly tasks: any;
  readonly bridge: any;
  unary(
    method: string,
    request: Record<string, unknown>,
    options?: { retry?: boolean; deadlineMs?: number; signal?: AbortSignal; service?: any },
  ): Promise<any>;
  stream(method: string, request: Record<string, unknown>, options?: { service?: any; waitForReady?: boolean }): any;
  close(): void;
}
