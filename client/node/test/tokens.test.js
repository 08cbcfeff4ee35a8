// The Node worker with the service's worker token (README "Tokens and TLS"): `token`
// reaches a service that wants one, and a wrong token stops `run()` with the service's
// message instead of a retry loop.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TaskServiceError, Worker } from "../src/index.js";
import { BridgeDriver, Service, skipWithoutService, waitFor } from "./helpers.js";

const WORKER_TOKEN = "node-worker-token-1";
const BRIDGE_TOKEN = "node-bridge-token-2";

describe("tokens", { skip: skipWithoutService, timeout: 60_000 }, () => {
  let service;
  let bridge;

  before(async () => {
    service = await new Service({
      store: "memory://",
      extraArgs: ["--worker-token", WORKER_TOKEN, "--bridge-token", BRIDGE_TOKEN],
    }).start();
    bridge = new BridgeDriver(service.target, "session:test", { token: BRIDGE_TOKEN });
  });

  after(async () => {
    bridge?.close();
    await service?.close();
  });

  test("a worker with the worker token runs a task", async () => {
    const worker = new Worker(service.target, { token: WORKER_TOKEN, shutdownTimeoutMs: 1000 });
    worker.tool({ name: "greet", taskSupport: "required" }, async () => "hello with a token");
    const running = worker.run({ handleSignals: false });
    try {
      await waitFor(() => worker.workerId !== "", { what: "the worker to register" });
      const task = await bridge.createTask("greet");
      const events = await bridge.run(task.task_id);
      assert.equal(events.outcome.task.status, "completed");
      assert.deepEqual(events.outcome.result.content, [{ type: "text", text: "hello with a token" }]);
    } finally {
      worker.shutdown();
      await running;
    }
  });

  test("a wrong token stops run() with the service's message", async () => {
    const worker = new Worker(service.target, { token: "a-guess", shutdownTimeoutMs: 1000 });
    worker.tool({ name: "greet" }, async () => "never");
    await assert.rejects(worker.run({ handleSignals: false }), (error) => {
      assert.ok(error instanceof TaskServiceError, String(error));
      assert.match(error.message, /TaskService: the token is not the worker token/);
      return true;
    });
  });

  test("the bridge's token is not a worker's", async () => {
    const worker = new Worker(service.target, { token: BRIDGE_TOKEN, shutdownTimeoutMs: 1000 });
    worker.tool({ name: "greet" }, async () => "never");
    await assert.rejects(worker.run({ handleSignals: false }), /TaskService takes the worker token/);
  });
});
