// RemoteTaskContext: the context of one task run in a worker, with the task's state held by the service.
import { randomBytes } from "node:crypto";
import { status as grpcStatus } from "@grpc/grpc-js";
import { sleep } from "./backoff.js";
import { follow } from "./client.js";
import {
  callToolResult,
  fromStruct,
  mcpErrorData,
  notOlder,
  taskFromProto,
  toStruct,
} from "./convert.js";
import {
  McpError,
  RETRYABLE,
  TaskCancelledError,
  TaskServiceRejected,
  TaskServiceUnavailable,
  statusName,
  translate,
} from "./errors.js";

/** A request id chosen before the first attempt, so that a retry re-attaches instead of asking again. */
export function newRequestId() {
  return `w-${randomBytes(16).toString("base64url")}`;
}

function messageOf(error) {
  if (error instanceof Error) return error.message || error.name;
  return String(error ?? "");
}

/**
 * The context of one task, run in a worker process: the surface of the Python
 * SDK's `ServerTaskContext`, with MCP payloads as plain JSON objects.
 *
 * Every method is a call to the task service, which stores the change before it
 * answers. `elicit`, `elicitUrl`, `createMessage` and their `*AsTask` variants
 * wait for the client's answer however long it takes; when the service goes
 * away meanwhile they reconnect and re-attach to the same request (the client
 * is never asked twice). When the client cancels the task, `isCancelled`
 * becomes true, `signal` aborts, a pending wait rejects with
 * `TaskCancelledError` and so does every later call.
 *
 * Workers receive one per task from `Worker`; they do not construct it.
 */
export class RemoteTaskContext {
  #client;
  #message;
  #task;
  #cancelled = false;
  #stopped = null;
  #abort = new AbortController(); // the public `signal`
  #halt = new AbortController(); // ends the waits and calls: the task is out of our hands
  #onCancel;

  #leaseId;

  /**
   * `leaseId`: the assignment's lease, which the status changes, the questions for the client
   * and the outcome name, so that a worker declared lost cannot change a task, or ask its
   * client, once another worker runs it.
   */
  constructor({ task, client, toolName = "", meta = {}, onCancel = null, leaseId = "" }) {
    this.#client = client;
    this.#leaseId = leaseId;
    this.#message = task;
    this.#task = taskFromProto(task);
    this.#onCancel = onCancel;
    /** The tool this task runs. */
    this.toolName = toolName;
    /** The MCP request `_meta` of the tool call (progress token and the like). */
    this.meta = meta;
  }

  // ----------------------------------------------------------------- state

  /** The task identifier. */
  get taskId() {
    return this.#task.taskId;
  }

  /** The current task state as MCP's `Task` JSON (kept current as the service reports changes). */
  get task() {
    return this.#task;
  }

  /** Whether cancellation has been requested. */
  get isCancelled() {
    return this.#cancelled;
  }

  /** Aborts when the task is cancelled (or the worker lets go of it); hand it to fetch() and the like. */
  get signal() {
    return this.#abort.signal;
  }

  /**
   * Request cancellation of this task: sets `isCancelled` (and aborts `signal`).
   * Task work should check it and stop; the task is not completed afterwards.
   */
  requestCancellation() {
    this.#cancelled = true;
    if (!this.#abort.signal.aborted) this.#abort.abort(new TaskCancelledError(this.taskId, "cancelled"));
  }

  /** @internal Take a task state the service reported, unless a newer one is known already. */
  _observe(message) {
    if (message == null) return this.#task;
    const task = taskFromProto(message);
    if (task.taskId === this.taskId && notOlder(message, this.#message)) {
      this.#message = message;
      this.#task = task;
    }
    if (task.status === "cancelled") this._stop("cancelled");
    return task;
  }

  /**
   * @internal The task is out of this worker's hands ("cancelled", "lost" or
   * "handed_back"): flag it, abort the signal and the waits; later calls throw.
   */
  _stop(reason) {
    if (this.#stopped !== null) return;
    this.#stopped = reason;
    if (reason !== "handed_back") this.#cancelled = true;
    const error = new TaskCancelledError(this.taskId, reason);
    if (!this.#abort.signal.aborted) this.#abort.abort(error);
    this.#halt.abort(error);
    if (reason === "cancelled" && this.#onCancel) this.#onCancel();
  }

  #ensureRunning() {
    if (this.#stopped !== null) throw new TaskCancelledError(this.taskId, this.#stopped);
  }

  async #unary(method, request) {
    this.#ensureRunning();
    return this.#client.unary(method, request, { signal: this.#halt.signal }).catch((error) => {
      if (this.#stopped !== null) throw new TaskCancelledError(this.taskId, this.#stopped);
      throw error;
    });
  }

  // --------------------------------------------------------- status changes

  /** Update the task's status message; `notify: false` sends the client no notification. */
  async updateStatus(message, { notify = true } = {}) {
    const response = await this.#unary("UpdateStatus", {
      task_id: this.taskId,
      status_message: String(message),
      notify,
      lease_id: this.#leaseId,
    });
    this._observe(response.task);
  }

  /** Mark the task completed with `result` (an MCP `CallToolResult`, or what a tool may return). */
  async complete(result, { notify = true } = {}) {
    const request = {
      task_id: this.taskId,
      result: toStruct(callToolResult(result)),
      notify,
      lease_id: this.#leaseId,
    };
    try {
      this._observe((await this.#unary("Complete", request)).task);
    } catch (error) {
      await this.#already(error, "completed");
    }
  }

  /** Mark the task failed with an error message (an Error gives its message). */
  async fail(error, { notify = true } = {}) {
    const request = { task_id: this.taskId, error: messageOf(error) || "failed", notify, lease_id: this.#leaseId };
    try {
      this._observe((await this.#unary("Fail", request)).task);
    } catch (rejected) {
      await this.#already(rejected, "failed");
    }
  }

  /** A retried Complete/Fail whose first attempt went through is a success. */
  async #already(error, wanted) {
    if (!(error instanceof TaskServiceRejected) || error.code !== grpcStatus.FAILED_PRECONDITION) throw error;
    const task = await this.#refresh();
    if (task.status !== wanted) throw error;
  }

  async #refresh() {
    const response = await this.#client.unary("GetTask", { task_id: this.taskId });
    return this._observe(response.task);
  }

  // ------------------------------------------------- requests for the client

  /**
   * Ask the client through a server stream (Elicit and the like): the first
   * event is `pending`, the last `result` or `error`. A broken stream is opened
   * again with the same request id, which re-attaches to the stored request.
   */
  async #ask(method, fields) {
    this.#ensureRunning();
    // The lease: once the task is another worker's (or back in the queue), the service
    // withdraws the question and ends the stream with LEASE_NOT_HELD, which rejects here.
    const request = { ...fields, lease_id: this.#leaseId };
    const backoff = this.#client.backoff();
    for (;;) {
      let answer = null;
      const outcome = await follow(
        this.#client.stream(method, request),
        (event) => {
          backoff.reset();
          this._observe(event.task);
          if (event.event === "result") answer = { result: fromStruct(event.result) };
          else if (event.event === "error") answer = { error: mcpErrorData(event.error) };
          return answer !== null;
        },
        this.#halt.signal,
      );
      if (answer?.result) return answer.result;
      if (answer?.error) throw new McpError(answer.error);
      if (outcome.aborted || this.#stopped !== null) {
        throw new TaskCancelledError(this.taskId, this.#stopped ?? "cancelled");
      }
      if (outcome.error) throw outcome.error;
      let reason = "the stream ended before the answer";
      if (outcome.code === grpcStatus.CANCELLED) {
        if (await this.#cancelledOnService()) {
          this._stop("cancelled");
          throw new TaskCancelledError(this.taskId, "cancelled");
        }
        reason = `CANCELLED: ${outcome.details}`;
      } else if (outcome.code !== grpcStatus.OK) {
        if (!RETRYABLE.has(outcome.code)) throw translate(outcome, method);
        reason = `${statusName(outcome.code)}: ${outcome.details}`;
      }
      const delay = backoff.nextDelay();
      if (delay === null) throw new TaskServiceUnavailable(grpcStatus.UNAVAILABLE, reason, { method });
      await sleep(delay, this.#halt.signal);
    }
  }

  /** After a CANCELLED stream: is the task really cancelled (or did the stream just end)? */
  async #cancelledOnService() {
    try {
      const task = await this.#refresh();
      return task.status === "cancelled" || this.#cancelled;
    } catch (error) {
      if (error instanceof TaskServiceRejected) return true; // gone: nothing left to wait for
      throw error;
    }
  }

  /**
   * Form-mode elicitation: ask the user `message`, the answer shaped by
   * `requestedSchema` (a flat object JSON Schema). The task is `input_required`
   * until the client answers. Resolves with the `ElicitResult`
   * (`{ action, content }`); rejects with `McpError` when the client answered
   * with an error (or cannot elicit).
   */
  elicit(message, requestedSchema) {
    return this.#ask("Elicit", {
      task_id: this.taskId,
      message: String(message),
      requested_schema: toStruct(requestedSchema),
      request_id: newRequestId(),
    });
  }

  /** URL-mode elicitation: ask the user to open `url`. Resolves with the `ElicitResult`. */
  elicitUrl(message, url, elicitationId) {
    return this.#ask("ElicitUrl", {
      task_id: this.taskId,
      message: String(message),
      url: String(url),
      elicitation_id: String(elicitationId),
      request_id: newRequestId(),
    });
  }

  /** Elicitation the client runs as a task of its own; resolves with its final `ElicitResult`. */
  elicitAsTask(message, requestedSchema, { ttlMs = 60_000 } = {}) {
    return this.#ask("ElicitAsTask", {
      task_id: this.taskId,
      message: String(message),
      requested_schema: toStruct(requestedSchema),
      ttl_ms: ttlMs,
      request_id: newRequestId(),
    });
  }

  /**
   * Sampling (`sampling/createMessage`): `messages` are MCP `SamplingMessage`s;
   * resolves with the client's `CreateMessageResult`.
   */
  createMessage(messages, options = {}) {
    return this.#ask("CreateMessage", { ...this.#sampling(messages, options), request_id: newRequestId() });
  }

  /** Sampling the client runs as a task of its own; resolves with its final `CreateMessageResult`. */
  createMessageAsTask(messages, options = {}) {
    return this.#ask("CreateMessageAsTask", {
      ...this.#sampling(messages, options),
      ttl_ms: options.ttlMs ?? 60_000,
      request_id: newRequestId(),
    });
  }

  #sampling(messages, options) {
    const {
      maxTokens,
      systemPrompt,
      includeContext,
      temperature,
      stopSequences,
      metadata,
      modelPreferences,
      tools,
      toolChoice,
    } = options;
    if (!Array.isArray(messages)) throw new TypeError("messages must be an array of SamplingMessage");
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new TypeError("maxTokens must be a positive integer");
    const request = { task_id: this.taskId, messages: messages.map((m) => toStruct(m)), max_tokens: maxTokens };
    if (systemPrompt != null) request.system_prompt = systemPrompt;
    if (includeContext != null) request.include_context = includeContext;
    if (temperature != null) request.temperature = temperature;
    if (stopSequences != null) request.stop_sequences = stopSequences;
    if (metadata != null) request.metadata = toStruct(metadata);
    if (modelPreferences != null) request.model_preferences = toStruct(modelPreferences);
    if (tools != null) request.tools = tools.map((t) => toStruct(t));
    if (toolChoice != null) request.tool_choice = toStruct(toolChoice);
    return request;
  }
}
