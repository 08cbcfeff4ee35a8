// Test support: a real `taskservice serve` (the gRPC service, no MCP bridge) in a
// child process, and a driver that plays the MCP bridge through BridgeService.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { follow, ServiceClient } from "../src/client.js";
import { fromStruct, taskFromProto, toStruct } from "../src/convert.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));

/** The `taskservice` command: $TASKSERVICE_BIN, else the repository's .venv. */
export const TASKSERVICE_BIN = process.env.TASKSERVICE_BIN ?? resolve(HERE, "../../../.venv/bin/taskservice");

export function serviceAvailable() {
  return existsSync(TASKSERVICE_BIN);
}

export const skipWithoutService = serviceAvailable()
  ? false
  : `no taskservice command at ${TASKSERVICE_BIN} (set TASKSERVICE_BIN)`;

/**
 * Runs `taskservice serve --no-mcp` until stop(). The port is chosen by the
 * service the first time (it logs it) and kept by restart(), so workers
 * reconnect to the same address; `store` defaults to a SQLite file in a
 * temporary directory, so that tasks survive a restart.
 */
export class Service {
  constructor({ store, leaseTtlMs = 3000, extraArgs = [] } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "taskservice-node-"));
    this.store = store ?? `sqlite:///${join(this.dir, "tasks.db")}`;
    this.leaseTtlMs = leaseTtlMs;
    this.extraArgs = extraArgs;
    this.port = 0;
    this.process = null;
    this.log = "";
  }

  get target() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    const args = [
      "serve",
      "--no-mcp",
      "--store",
      this.store,
      "--grpc-listen",
      `127.0.0.1:${this.port}`,
      "--lease-ttl-ms",
      String(this.leaseTtlMs),
      "--shutdown-grace-ms",
      "500",
      ...this.extraArgs,
    ];
    const child = spawn(TASKSERVICE_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.process = child;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    this.port = await new Promise((resolve, reject) => {
      let buffer = "";
      const timer = setTimeout(() => reject(new Error(`taskservice did not start:\n${this.log}`)), 20_000);
      const onData = (chunk) => {
        buffer += chunk;
        this.log += chunk;
        const match = /gRPC service listening on [^\s]+:(\d+)/.exec(buffer);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      child.stdout.setEncoding("utf8").on("data", onData);
      child.stderr.setEncoding("utf8").on("data", onData);
      exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`taskservice exited (${code}) before it listened:\n${this.log}`));
      });
    });
    return this;
  }

  /** SIGTERM (graceful) and wait for the exit. */
  async stop() {
    if (this.process === null) return;
    const child = this.process;
    this.process = null;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await this.exited;
      clearTimeout(killer);
    }
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** What the MCP bridge does, through BridgeService: create tasks, follow them, answer, cancel. */
export class BridgeDriver {
  constructor(target, owner = "session:test", { token } = {}) {
    this.client = new ServiceClient(target, { token, retry: { initialBackoffMs: 50, maxBackoffMs: 500 } });
    this.owner = owner;
    this.capabilities = { elicitation: { form: {}, url: {} }, sampling: { tools: {} } };
  }

  close() {
    this.client.close();
  }

  call(method, request) {
    return this.client.unary(method, { owner: this.owner, ...request }, { service: this.client.bridge });
  }

  async createTask(toolName, args = {}) {
    const response = await this.call("CreateTask", {
      tool_name: toolName,
      arguments: toStruct(args),
      client_capabilities: toStruct(this.capabilities),
    });
    return response.task;
  }

  cancel(taskId, reason = "") {
    return this.call("CancelTask", { task_id: taskId, reason });
  }

  lookup(taskId) {
    return this.call("LookupTask", { task_id: taskId });
  }

  async answer(taskId, requestId, result) {
    return this.call("AnswerRequest", { task_id: taskId, request_id: requestId, result: toStruct(result) });
  }

  /**
   * Follow a task to its end, answering each request with `answer(request)`
   * (method, params as JSON, request_id). Resolves with what happened:
   * statuses (status + message, in order), requests, and the outcome.
   */
  async run(taskId, answer = async () => null) {
    const seen = { statuses: [], requests: [], outcome: null };
    const pending = [];
    const outcome = await follow(
      this.client.stream("StreamTaskEvents", { owner: this.owner, task_id: taskId }, {
        service: this.client.bridge,
        waitForReady: true,
      }),
      (event) => {
        if (event.event === "task") {
          const task = taskFromProto(event.task);
          seen.statuses.push(task.statusMessage ? `${task.status}: ${task.statusMessage}` : task.status);
        } else if (event.event === "request") {
          const request = {
            requestId: event.request.request_id,
            method: event.request.method,
            params: fromStruct(event.request.params),
            sequence: Number(event.request.sequence),
          };
          seen.requests.push(request);
          pending.push(
            (async () => {
              const result = await answer(request);
              if (result !== null) await this.answer(taskId, request.requestId, result);
            })(),
          );
        } else if (event.event === "outcome") {
          seen.outcome = {
            task: taskFromProto(event.outcome.task),
            result: event.outcome.result ? fromStruct(event.outcome.result) : null,
          };
          return true;
        }
        return false;
      },
    );
    await Promise.all(pending);
    if (seen.outcome === null) throw new Error(`StreamTaskEvents ended without an outcome: ${JSON.stringify(outcome)}`);
    return seen;
  }
}

/** Resolves when `predicate()` is true (polled), rejects after `timeoutMs`. */
export async function waitFor(predicate, { timeoutMs = 10_000, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
