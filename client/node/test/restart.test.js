// The worker survives restarts of the service: it reconnects with backoff,
// re-attaches to a pending elicitation by its request id (the client is asked
// once), and registers again when the service forgot it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "../src/index.js";
import { BridgeDriver, Service, skipWithoutService, waitFor } from "./helpers.js";

const FAST_RETRY = { initialBackoffMs: 50, maxBackoffMs: 300 };

/** Runs `body(worker)` with the worker running against `service`; stops both afterwards. */
async function withWorker(service, declare, body) {
  const worker = new Worker(service.target, { retry: FAST_RETRY, shutdownTimeoutMs: 1000 });
  declare(worker);
  const running = worker.run({ handleSignals: false });
  const bridges = [];
  try {
    await waitFor(() => worker.workerId !== "", { what: "the registration" });
    await body(worker, () => {
      const bridge = new BridgeDriver(service.target);
      bridges.push(bridge);
      return bridge;
    });
  } finally {
    worker.shutdown();
    await running;
    for (const bridge of bridges) bridge.close();
    await service.close();
  }
}

test("a pending elicitation is re-attached after the service restarts", { skip: skipWithoutService, timeout: 60_000 }, async () => {
  // SQLite: the tasks survive the restart. The lease outlasts the restart (the
  // service counts the time it was down against the worker's lease).
  const service = await new Service({ leaseTtlMs: 30_000 }).start();
  const asked = [];
  const declare = (worker) =>
    worker.tool({ name: "confirm", taskSupport: "required" }, async (ctx) => {
      await ctx.updateStatus("asking");
      const answer = await ctx.elicit("Go on?", { type: "object", properties: { ok: { type: "boolean" } } });
      asked.push(answer);
      await ctx.updateStatus("answered");
      return `ok=${answer.content.ok}`;
    });
  await withWorker(service, declare, async (worker, newBridge) => {
    const before = newBridge();
    const task = await before.createTask("confirm");
    await waitFor(async () => (await before.lookup(task.task_id)).task.status === "TASK_STATUS_INPUT_REQUIRED", {
      what: "the elicitation",
    });

    await service.restart();

    const events = await newBridge().run(task.task_id, async () => ({ action: "accept", content: { ok: true } }));
    assert.equal(events.outcome.task.status, "completed");
    assert.deepEqual(events.outcome.result.content, [{ type: "text", text: "ok=true" }]);
    assert.equal(events.requests.length, 1, "the client is asked once");
    assert.equal(asked.length, 1);
  });
});

test("the worker registers again when the service forgot it", { skip: skipWithoutService, timeout: 60_000 }, async () => {
  const service = await new Service({ store: "memory://" }).start(); // everything is lost on restart
  const declare = (worker) => worker.tool({ name: "echo" }, async (ctx, args) => `echo ${args.text}`);
  await withWorker(service, declare, async (worker, newBridge) => {
    const first = worker.workerId;
    await service.restart();
    const bridge = newBridge();
    // CreateTask needs a worker serving the tool: wait until the worker is back.
    let task;
    await waitFor(
      async () => {
        try {
          task = await bridge.createTask("echo", { text: "again" });
          return true;
        } catch (error) {
          if (error.codeName !== "FAILED_PRECONDITION") throw error;
          return false;
        }
      },
      { timeoutMs: 15_000, what: "the worker to register again" },
    );
    const events = await bridge.run(task.task_id);
    assert.equal(events.outcome.task.status, "completed");
    assert.deepEqual(events.outcome.result.content, [{ type: "text", text: "echo again" }]);
    assert.equal(worker.workerId, first, "registered again under its id");
  });
});
