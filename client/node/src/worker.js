// Worker: declares tools to the service, takes assignments and runs them with a RemoteTaskContext.
import { hostname } from "node:os";
import { status as grpcStatus } from "@grpc/grpc-js";
import { sleep } from "./backoff.js";
import { follow, ServiceClient, UNARY_RETRYABLE } from "./client.js";
import { RemoteTaskContext } from "./context.js";
import { callToolResult, fromStruct, isTerminal, TASK_SUPPORT_TO_PROTO, toStruct } from "./convert.js";
import { RETRYABLE, TaskServiceError, TaskServiceRejected, TaskServiceUnavailable, translate } from "./errors.js";

const SHUTTING_DOWN = "the worker is shutting down";

/** The codes of a Complete refused for its result (over the service's size limit, say): the
 * worker then fails the task with the service's reason. */
const RESULT_REFUSED = new Set(["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]);

// The longest status message the service keeps (UTF-8). The message a tool's error fails its task
// with is cut to it: the service refuses a longer one, and the task would not fail.
const FAILURE_MESSAGE_BYTES = 4096;

/** `text` cut to FAILURE_MESSAGE_BYTES of UTF-8 (at a character's end), "..." marking the cut. */
function failureMessage(text) {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= FAILURE_MESSAGE_BYTES) return text;
  let end = FAILURE_MESSAGE_BYTES - 3;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // not inside a character
  return `${bytes.subarray(0, end).toString("utf8")}...`;
}
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function defaultLogger() {
  const threshold = LEVELS[(process.env.TASKSERVICE_LOG_LEVEL ?? "warn").toLowerCase()] ?? LEVELS.warn;
  const at = (level) =>
    LEVELS[level] >= threshold
      ? (...args) => console.error(`taskservice-client ${level}:`, ...args)
      : () => {};
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** One assignment this worker holds. */
class Running {
  constructor(assignment, tool) {
    this.taskId = assignment.task.task_id;
    this.leaseId = assignment.lease_id;
    this.assignment = assignment;
    this.tool = tool;
    this.acked = false;
    this.ctx = null;
    this.stopReason = null;
    this.stopped = new Promise((resolve) => {
      this.#resolveStopped = resolve;
    });
  }

  #resolveStopped;

  /** Stop the tool's work: the task was cancelled, is handed back, or is no longer ours. */
  stop(reason) {
    if (this.stopReason === null) this.stopReason = reason;
    this.ctx?._stop(reason);
    this.#resolveStopped(reason);
  }
}

/**
 * Runs MCP tools as tasks of the task service.
 *
 *     const worker = new Worker("127.0.0.1:50051");
 *     worker.tool({ name: "add", inputSchema: {...} }, async (ctx, args) => ({ sum: args.a + args.b }));
 *     await worker.run();
 *
 * `run()` declares the tools, takes assignments (at most `maxConcurrentTasks`
 * at once), keeps their leases alive, completes each task with its tool's
 * return value or fails it with the thrown error's message, and stops a tool's
 * context when its task is cancelled. When the service goes away it reconnects
 * with backoff; running tools keep running meanwhile. On SIGTERM or SIGINT (or
 * `shutdown()`) it stops taking work, lets running tasks finish for up to
 * `shutdownTimeoutMs` and hands back the rest.
 */
export class Worker {
  #tools = new Map();
  #started = false;
  #workerId = "";
  #registration = null;
  #registering = null;
  #running = new Map();
  #idle = null;
  #stopRequested = false;
  #hurry = false;
  #accepting = false;
  #fatal = null;
  #resolveStop = null;
  #connection = null; // AbortController of the connection loops
  #assignments = null; // AbortController of the assignment stream
  #client = null;

  constructor(target, options = {}) {
    const {
      token,
      tls = false,
      name,
      maxConcurrentTasks = 10,
      shutdownTimeoutMs = 30_000,
      retry,
      rpcTimeoutMs = 30_000,
      channelOptions,
      logger,
    } = options;
    if (!target || typeof target !== "string") throw new TypeError("target must be a gRPC target such as 127.0.0.1:50051");
    if (!Number.isInteger(maxConcurrentTasks) || maxConcurrentTasks < 1) {
      throw new RangeError("maxConcurrentTasks must be at least 1");
    }
    if (!(shutdownTimeoutMs >= 0)) throw new RangeError("shutdownTimeoutMs must not be negative");
    this.target = target;
    this.token = token;
    this.tls = tls;
    this.name = name ?? `${hostname()}:${process.pid}`;
    this.maxConcurrentTasks = maxConcurrentTasks;
    this.shutdownTimeoutMs = shutdownTimeoutMs;
    this.retry = retry;
    this.rpcTimeoutMs = rpcTimeoutMs;
    this.channelOptions = channelOptions;
    this.log = { ...defaultLogger(), ...logger };
  }

  // ------------------------------------------------------------------ tools

  /** The declared tools, by name. */
  get tools() {
    return new Map([...this.#tools].map(([name, tool]) => [name, tool.definition]));
  }

  /** The id the service gave this worker ("" until it registered). */
  get workerId() {
    return this.#workerId;
  }

  /** Task ids of the tasks this worker runs now. */
  get runningTaskIds() {
    return [...this.#running.keys()];
  }

  /**
   * Declare a tool: `handler(ctx, args)` runs each call as a task. The name
   * defaults to the handler's name. The handler returns a `CallToolResult`, an
   * object (JSON text, and `structuredContent` when `outputSchema` is given), a
   * string or nothing; a thrown error fails the task with its message.
   */
  tool(definition, handler) {
    if (typeof definition === "function" && handler === undefined) [definition, handler] = [{}, definition];
    if (typeof handler !== "function") throw new TypeError("worker.tool(definition, handler): handler must be a function");
    const {
      name = handler.name,
      title,
      description,
      inputSchema = { type: "object" },
      outputSchema,
      taskSupport = "optional",
      retrySafe = false,
      annotations,
    } = definition ?? {};
    if (!name || typeof name !== "string") throw new TypeError("a tool needs a name");
    if (!(taskSupport in TASK_SUPPORT_TO_PROTO)) {
      throw new TypeError(`taskSupport must be optional, required or forbidden, not ${JSON.stringify(taskSupport)}`);
    }
    if (inputSchema?.type !== "object") throw new TypeError('inputSchema must be an object schema ({ type: "object", ... })');
    if (outputSchema != null && outputSchema.type !== "object") {
      throw new TypeError('outputSchema must be an object schema ({ type: "object", ... })');
    }
    if (this.#started) throw new Error("declare tools before worker.run()");
    if (this.#tools.has(name)) throw new Error(`tool ${JSON.stringify(name)} is declared twice`);
    const declared = { name, title, description, inputSchema, outputSchema, taskSupport, retrySafe, annotations };
    const proto = {
      name,
      title: title ?? "",
      description: description ?? "",
      input_schema: toStruct(inputSchema),
      task_support: TASK_SUPPORT_TO_PROTO[taskSupport],
      retry_safe: Boolean(retrySafe),
    };
    if (outputSchema != null) proto.output_schema = toStruct(outputSchema);
    if (annotations != null) proto.annotations = toStruct(annotations);
    this.#tools.set(name, { definition: Object.freeze(declared), proto, handler });
    return this;
  }

  // ---------------------------------------------------------------- running

  /**
   * Stop taking work; `run()` ends once running tasks finished or were handed
   * back. Called a second time, hands back the running tasks at once.
   */
  shutdown() {
    if (this.#stopRequested) this.#hurry = true;
    this.#stopRequested = true;
    this.#accepting = false; // an assignment that still arrives is handed back
    this.#resolveStop?.();
    if (this.#hurry) for (const entry of this.#running.values()) entry.stop("handed_back");
  }

  /** Serve the tools until `shutdown()` (or SIGTERM/SIGINT when `handleSignals`). */
  async run({ handleSignals = true } = {}) {
    if (this.#tools.size === 0) throw new Error("the worker declares no tools: use worker.tool() first");
    if (this.#started) throw new Error("worker.run() was called already");
    this.#started = true;
    const stop = new Promise((resolve) => {
      this.#resolveStop = resolve;
    });
    if (this.#stopRequested) this.#resolveStop();
    this.#idle = Promise.resolve();
    this.#accepting = !this.#stopRequested;
    const client = new ServiceClient(this.target, {
      token: this.token,
      tls: this.tls,
      retry: this.retry,
      rpcTimeoutMs: this.rpcTimeoutMs,
      channelOptions: this.channelOptions,
    });
    this.#client = client;
    this.#connection = new AbortController();
    this.#assignments = new AbortController();
    const signals = handleSignals ? this.#installSignalHandlers() : () => {};
    try {
      const loops = [
        this.#guard(() => this.#heartbeats(client)),
        this.#guard(() => this.#followAssignments(client)),
      ];
      await stop;
      this.#accepting = false;
      this.#assignments.abort();
      await this.#drain();
      this.#connection.abort();
      await Promise.all(loops);
      await this.#unregister(client);
    } finally {
      signals();
      client.close();
    }
    if (this.#fatal !== null) throw this.#fatal;
  }

  async #guard(loop) {
    try {
      await loop();
    } catch (error) {
      if (this.#connection.signal.aborted) return;
      this.log.error(`worker ${this.#workerId || this.name} stops: ${error.message}`);
      this.#fatal ??= error;
      this.#hurry = true;
      this.shutdown();
    }
  }

  #installSignalHandlers() {
    const onSignal = (signal) => {
      this.log.info(`${signal}: ${this.#stopRequested ? "handing back running tasks" : "no new work; finishing running tasks"}`);
      this.shutdown();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    return () => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    };
  }

  async #drain() {
    if (this.#running.size) {
      this.log.info(`waiting up to ${this.shutdownTimeoutMs} ms for ${this.#running.size} running task(s)`);
    }
    // A hurry (a second shutdown()) stops every running task, which then resolves `#idle` too.
    if (!this.#hurry && this.#running.size) {
      const timeout = new AbortController(); // so that the timer does not outlive the wait
      await Promise.race([this.#idle, sleep(this.shutdownTimeoutMs, timeout.signal)]);
      timeout.abort();
    }
    for (const entry of this.#running.values()) entry.stop("handed_back");
    while (this.#running.size) await this.#idle;
  }

  async #unregister(client) {
    if (!this.#workerId) return;
    try {
      await client.unary("UnregisterWorker", { worker_id: this.#workerId }, { retry: false, deadlineMs: 5000 });
    } catch (error) {
      this.log.info(`unregister: ${error.message}`);
    }
  }

  // ---------------------------------------------------------- registration

  async #registered(client) {
    if (this.#registration !== null) return this.#registration;
    this.#registering ??= this.#register(client).finally(() => {
      this.#registering = null;
    });
    return this.#registering;
  }

  async #register(client) {
    const response = await client.unary(
      "RegisterWorker",
      {
        worker_id: this.#workerId,
        name: this.name,
        tools: [...this.#tools.values()].map((tool) => tool.proto),
        max_concurrent_tasks: this.maxConcurrentTasks,
      },
      { signal: this.#connection.signal },
    );
    if (this.#workerId && response.worker_id !== this.#workerId) {
      this.log.info(`re-registered as ${response.worker_id} (was ${this.#workerId})`);
    }
    this.#workerId = response.worker_id;
    const leaseMs = Math.max(Number(response.lease_ttl_ms ?? 0), 1);
    const intervalMs = Number(response.heartbeat_interval_ms ?? 0) || leaseMs / 3;
    this.#registration = { workerId: this.#workerId, heartbeatIntervalMs: Math.max(intervalMs, 50), leaseMs };
    this.log.info(`worker ${this.#workerId} serves ${[...this.#tools.keys()].join(", ")}`);
    return this.#registration;
  }

  /** The service forgot this registration (its lease ran out, the store was lost): register again. */
  #lost(registration) {
    if (this.#registration === registration) {
      this.log.warn(`worker ${registration.workerId} is not registered any more; registering again`);
      this.#registration = null;
    }
  }

  // ------------------------------------------------------------ connection

  async #heartbeats(client) {
    const signal = this.#connection.signal;
    const backoff = client.backoff();
    while (!signal.aborted) {
      const registration = await this.#registered(client);
      await sleep(registration.heartbeatIntervalMs, signal);
      if (signal.aborted) return;
      const running = [...this.#running.values()].filter((e) => e.acked).map((e) => e.taskId);
      let response;
      try {
        response = await client.unary(
          "Heartbeat",
          { worker_id: registration.workerId, task_ids: running },
          { retry: false, deadlineMs: Math.max(registration.heartbeatIntervalMs, 1000), signal },
        );
      } catch (error) {
        if (signal.aborted) return;
        if (error.code === grpcStatus.NOT_FOUND) {
          this.#lost(registration);
          continue;
        }
        if (!UNARY_RETRYABLE.has(error.code)) throw error;
        this.log.info(`heartbeat: ${error.message}`);
        const delay = backoff.nextDelay();
        if (delay !== null) await sleep(Math.min(delay, registration.heartbeatIntervalMs), signal);
        continue;
      }
      backoff.reset();
      for (const taskId of response.cancelled_task_ids ?? []) {
        const entry = this.#running.get(taskId);
        if (entry === undefined) continue;
        const status = entry.ctx?.task.status;
        if (status !== undefined && isTerminal(status) && status !== "cancelled") continue; // it finished itself
        entry.stop(status === "cancelled" ? "cancelled" : "lost");
      }
    }
  }

  async #followAssignments(client) {
    const signal = this.#assignments.signal;
    const backoff = client.backoff();
    while (!signal.aborted) {
      const registration = await this.#registered(client);
      if (signal.aborted) return;
      const outcome = await follow(
        client.stream("StreamAssignments", { worker_id: registration.workerId }),
        (response) => {
          backoff.reset();
          this.#accept(client, response.assignment, registration);
        },
        signal,
      );
      if (outcome.aborted) return;
      if (outcome.error) throw outcome.error;
      if (outcome.code === grpcStatus.NOT_FOUND) {
        this.#lost(registration);
        continue;
      }
      const reconnectable = [grpcStatus.OK, grpcStatus.CANCELLED, grpcStatus.INTERNAL, ...RETRYABLE];
      if (!reconnectable.includes(outcome.code)) throw translate(outcome, "StreamAssignments");
      this.log.info(`assignments: ${outcome.details || "stream ended"}; reconnecting`);
      const delay = backoff.nextDelay();
      if (delay === null) throw new TaskServiceUnavailable(grpcStatus.UNAVAILABLE, "gave up reconnecting");
      await sleep(delay, signal);
    }
  }

  #accept(client, assignment, registration) {
    const taskId = assignment.task.task_id;
    const existing = this.#running.get(taskId);
    if (existing !== undefined && existing.leaseId === assignment.lease_id) return; // offered again after a reconnect
    const tool = this.#tools.get(assignment.tool_name);
    if (tool === undefined || !this.#accepting || this.#running.size >= this.maxConcurrentTasks) {
      const why = tool === undefined ? "unknown tool" : "the worker is shutting down or full";
      void this.#release(client, registration.workerId, taskId, assignment.lease_id, why);
      return;
    }
    const entry = new Running(assignment, tool);
    if (this.#running.size === 0) {
      this.#idle = new Promise((resolve) => {
        this.#resolveIdle = resolve;
      });
    }
    this.#running.set(taskId, entry);
    void this.#runTask(client, registration.workerId, entry);
  }

  #resolveIdle = null;

  async #release(client, workerId, taskId, leaseId, why) {
    try {
      await client.unary(
        "ReleaseAssignment",
        { worker_id: workerId, task_id: taskId, lease_id: leaseId, reason: why },
        { signal: AbortSignal.timeout(Math.max(this.shutdownTimeoutMs, 5000)) },
      );
      this.log.info(`task ${taskId} handed back: ${why}`);
    } catch (error) {
      this.log.info(`task ${taskId}: hand-back failed: ${error.message}`);
    }
  }

  // ------------------------------------------------------------ one task

  async #runTask(client, workerId, entry) {
    try {
      await this.#runEntry(client, workerId, entry);
    } catch (error) {
      this.log.error(`task ${entry.taskId}: unexpected error in the worker: ${error?.stack ?? error}`);
    } finally {
      if (this.#running.get(entry.taskId) === entry) this.#running.delete(entry.taskId);
      if (this.#running.size === 0) this.#resolveIdle?.();
    }
  }

  async #runEntry(client, workerId, entry) {
    if (entry.stopReason !== null) {
      await this.#release(client, workerId, entry.taskId, entry.leaseId, SHUTTING_DOWN);
      return;
    }
    let ack;
    try {
      ack = await client.unary("AckAssignment", {
        worker_id: workerId,
        task_id: entry.taskId,
        lease_id: entry.leaseId,
      });
    } catch (error) {
      this.log.info(`task ${entry.taskId}: not started: ${error.message}`);
      return;
    }
    entry.acked = true;
    const ctx = new RemoteTaskContext({
      task: ack.task,
      client,
      toolName: entry.assignment.tool_name,
      meta: fromStruct(entry.assignment.meta),
      onCancel: () => entry.stop("cancelled"),
      leaseId: entry.leaseId,
    });
    entry.ctx = ctx;
    if (entry.stopReason !== null) ctx._stop(entry.stopReason);
    const watching = new AbortController();
    const watch = this.#watch(client, ctx, entry, watching.signal);
    const args = fromStruct(entry.assignment.arguments);
    // A tool that keeps going after its task stopped is not waited for: its
    // context refuses every call, and its outcome is dropped.
    const outcome = await Promise.race([
      (async () => entry.tool.handler(ctx, args))().then(
        (value) => ({ returned: value }),
        (error) => ({ raised: error }),
      ),
      entry.stopped.then(() => null),
    ]);
    watching.abort();
    await watch;
    if (entry.stopReason === "handed_back" && !isTerminal(ctx.task.status)) {
      await this.#release(client, workerId, entry.taskId, entry.leaseId, SHUTTING_DOWN);
      return;
    }
    if (outcome === null || ctx.isCancelled || entry.stopReason !== null) {
      this.log.info(`task ${entry.taskId} stopped (${entry.stopReason ?? "cancelled"})`);
      return;
    }
    await this.#finish(ctx, entry, outcome);
  }

  async #finish(ctx, entry, outcome) {
    if (isTerminal(ctx.task.status)) return; // the tool completed or failed the task itself
    try {
      if ("returned" in outcome) {
        let result;
        try {
          result = callToolResult(outcome.returned, { structured: entry.tool.definition.outputSchema != null });
        } catch (error) {
          await ctx.fail(failureMessage(error.message));
          return;
        }
        try {
          await ctx.complete(result);
        } catch (error) {
          if (!(error instanceof TaskServiceRejected) || !RESULT_REFUSED.has(error.codeName)) throw error;
          // The service refused the result itself (over its size limit, nested too deep): the
          // task fails with why, instead of running on with nobody left to end it.
          this.log.info(`task ${entry.taskId}: result refused: ${error.details}`);
          await ctx.fail(failureMessage(`The task service refused the tool's result: ${error.details}`));
        }
      } else {
        const raised = outcome.raised;
        this.log.info(`task ${entry.taskId} failed: ${raised?.stack ?? raised}`);
        const message = raised instanceof Error ? raised.message || raised.name : String(raised ?? "");
        await ctx.fail(failureMessage(message || "the tool failed"));
      }
    } catch (error) {
      // Cancelled (or lost) meanwhile: the task's state is final already.
      if (!(error instanceof TaskServiceError) && error?.name !== "TaskCancelledError") throw error;
      this.log.info(`task ${entry.taskId}: outcome not stored: ${error.message}`);
    }
  }

  /** Follow the task: keep `ctx.task` current and stop the tool the moment it is cancelled. */
  async #watch(client, ctx, entry, signal) {
    const backoff = client.backoff();
    while (!signal.aborted) {
      let terminal = false;
      const outcome = await follow(
        client.stream("WatchTask", { task_id: ctx.taskId }),
        (response) => {
          backoff.reset();
          terminal = isTerminal(ctx._observe(response.task).status);
          return terminal;
        },
        signal,
      );
      if (terminal || outcome.aborted) return;
      if (outcome.error) {
        this.log.warn(`watch ${ctx.taskId}: ${outcome.error.message}`);
      } else if (outcome.code === grpcStatus.NOT_FOUND) {
        entry.stop("lost"); // expired or deleted: nobody waits for the result
        return;
      } else {
        this.log.debug(`watch ${ctx.taskId}: ${outcome.details}`);
      }
      const delay = backoff.nextDelay();
      await sleep(delay ?? client.retry.maxBackoffMs, signal);
    }
  }
}
