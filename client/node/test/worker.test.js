// The Node worker against a real `taskservice serve`, driven through BridgeService
// the way the MCP bridge drives it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { McpError, TaskCancelledError, Worker } from "../src/index.js";
import { BridgeDriver, Service, skipWithoutService, waitFor } from "./helpers.js";

const FAST_RETRY = { initialBackoffMs: 50, maxBackoffMs: 300 };

const CONFIRM = {
  type: "object",
  properties: { ok: { type: "boolean" } },
  required: ["ok"],
};

describe("Worker", { skip: skipWithoutService, timeout: 60_000 }, () => {
  let service;
  let bridge;
  let worker;
  let running;
  const seen = new Map(); // task id -> what the tool saw

  before(async () => {
    service = await new Service({ store: "memory://" }).start();
    bridge = new BridgeDriver(service.target);
    worker = new Worker(service.target, { retry: FAST_RETRY, shutdownTimeoutMs: 2000 });

    worker.tool(
      {
        name: "survey",
        description: "status, two elicitations and sampling",
        inputSchema: { type: "object", properties: { topic: { type: "string" } } },
        taskSupport: "required",
      },
      async (ctx, args) => {
        await ctx.updateStatus(`starting on ${args.topic}`);
        const first = await ctx.elicit("Proceed?", CONFIRM);
        const second = await ctx.elicit("Your name?", {
          type: "object",
          properties: { name: { type: "string" } },
        });
        await ctx.updateStatus("sampling");
        const sample = await ctx.createMessage(
          [{ role: "user", content: { type: "text", text: `Say something about ${args.topic}` } }],
          { maxTokens: 50, systemPrompt: "Be brief.", temperature: 0.5 },
        );
        seen.set(ctx.taskId, { first, second, sample, task: ctx.task });
        return {
          content: [
            {
              type: "text",
              text: `${first.content.ok ? "yes" : "no"} / ${second.content.name} / ${sample.content.text}`,
            },
          ],
        };
      },
    );

    worker.tool({ name: "explode", taskSupport: "required" }, async (ctx) => {
      await ctx.updateStatus("about to fail");
      throw new Error("the disk is full");
    });

    worker.tool({ name: "explode_at_length", taskSupport: "required" }, async () => {
      throw new Error("é".repeat(5000)); // longer than the service keeps
    });

    worker.tool({ name: "oversized", taskSupport: "required" }, async () => "x".repeat(1_048_577));

    worker.tool({ name: "structured", outputSchema: { type: "object" } }, async () => ({ answer: 42 }));

    worker.tool({ name: "waiter", taskSupport: "required" }, async (ctx) => {
      const record = { cancelledFlag: false, error: null, signalAborted: false };
      seen.set(ctx.taskId, record);
      ctx.signal.addEventListener("abort", () => {
        record.signalAborted = true;
      });
      try {
        await ctx.elicit("Wait for me", CONFIRM);
      } catch (error) {
        record.error = error;
        record.cancelledFlag = ctx.isCancelled;
        try {
          await ctx.updateStatus("still here?");
        } catch (later) {
          record.later = later;
        }
        throw error;
      }
      return "not cancelled";
    });

    worker.tool({ name: "refuse", taskSupport: "required" }, async (ctx) => {
      try {
        await ctx.elicit("Answered with an error", CONFIRM);
      } catch (error) {
        seen.set(ctx.taskId, { error });
        return `caught ${error.name} ${error.code}: ${error.message}`;
      }
      return "no error";
    });

    running = worker.run({ handleSignals: false });
    await waitFor(() => worker.workerId !== "", { what: "the worker to register" });
  });

  after(async () => {
    worker?.shutdown();
    await running;
    bridge?.close();
    await service?.close();
  });

  test("status, two elicitations and sampling complete the task", async () => {
    const task = await bridge.createTask("survey", { topic: "otters" });
    const events = await bridge.run(task.task_id, async (request) => {
      if (request.method === "sampling/createMessage") {
        assert.equal(request.params.maxTokens, 50);
        assert.equal(request.params.systemPrompt, "Be brief.");
        return { role: "assistant", content: { type: "text", text: "otters hold hands" }, model: "test-model" };
      }
      assert.equal(request.method, "elicitation/create");
      if (request.params.message === "Proceed?") return { action: "accept", content: { ok: true } };
      return { action: "accept", content: { name: "Ada" } };
    });

    assert.equal(events.outcome.task.status, "completed");
    assert.deepEqual(events.outcome.result.content, [{ type: "text", text: "yes / Ada / otters hold hands" }]);
    assert.deepEqual(
      events.requests.map((r) => [r.method, r.params.message ?? null, r.sequence]),
      [
        ["elicitation/create", "Proceed?", 1],
        ["elicitation/create", "Your name?", 2],
        ["sampling/createMessage", null, 3],
      ],
    );
    assert.equal(new Set(events.requests.map((r) => r.requestId)).size, 3);
    assert.ok(events.statuses.includes("working: starting on otters"), events.statuses.join(", "));
    assert.ok(events.statuses.some((s) => s.startsWith("input_required")), events.statuses.join(", "));
    assert.ok(events.statuses.includes("working: sampling"), events.statuses.join(", "));

    const tool = seen.get(task.task_id);
    assert.deepEqual(tool.first, { action: "accept", content: { ok: true } });
    assert.equal(tool.sample.model, "test-model");
    assert.equal(tool.task.taskId, task.task_id);
    assert.equal(tool.task.status, "working");
  });

  test("a thrown error fails the task with its message", async () => {
    const task = await bridge.createTask("explode");
    const events = await bridge.run(task.task_id);
    assert.equal(events.outcome.task.status, "failed");
    assert.equal(events.outcome.task.statusMessage, "the disk is full");
    assert.equal(events.outcome.result, null);
  });

  test("a thrown error's long message is cut to what the service keeps, and the task fails", async () => {
    const task = await bridge.createTask("explode_at_length");
    const events = await bridge.run(task.task_id);
    assert.equal(events.outcome.task.status, "failed");
    assert.equal(events.outcome.task.statusMessage, `${"é".repeat(2046)}...`);
  });

  test("a result the service refuses fails the task with the service's reason", async () => {
    const task = await bridge.createTask("oversized");
    const events = await bridge.run(task.task_id);
    assert.equal(events.outcome.task.status, "failed");
    assert.match(events.outcome.task.statusMessage, /^The task service refused the tool's result: .*over the limit/);
  });

  test("a returned object is JSON text and, with an output schema, structured content", async () => {
    const task = await bridge.createTask("structured");
    const events = await bridge.run(task.task_id);
    assert.equal(events.outcome.task.status, "completed");
    assert.deepEqual(events.outcome.result.structuredContent, { answer: 42 });
    assert.deepEqual(events.outcome.result.content, [{ type: "text", text: '{"answer":42}' }]);
  });

  test("the client's JSON-RPC error reaches the tool as McpError", async () => {
    const task = await bridge.createTask("refuse");
    const events = await bridge.run(task.task_id, async (request) => {
      await bridge.call("AnswerRequest", {
        task_id: task.task_id,
        request_id: request.requestId,
        error: { code: -32600, message: "no thanks" },
      });
      return null;
    });
    assert.equal(events.outcome.task.status, "completed");
    const { error } = seen.get(task.task_id);
    assert.ok(error instanceof McpError);
    assert.equal(error.code, -32600);
    assert.equal(error.message, "no thanks");
  });

  test("cancellation is seen by the worker at once", async () => {
    const task = await bridge.createTask("waiter");
    const result = bridge.run(task.task_id); // never answers
    await waitFor(async () => (await bridge.lookup(task.task_id)).task.status === "TASK_STATUS_INPUT_REQUIRED", {
      what: "the elicitation",
    });
    const cancelledAt = Date.now();
    await bridge.cancel(task.task_id, "the user gave up");
    await waitFor(() => seen.get(task.task_id)?.error != null, { timeoutMs: 2000, what: "the tool to see it" });
    const seenAfter = Date.now() - cancelledAt;
    const record = seen.get(task.task_id);
    assert.ok(record.error instanceof TaskCancelledError, String(record.error));
    assert.equal(record.error.reason, "cancelled");
    assert.equal(record.cancelledFlag, true);
    assert.equal(record.signalAborted, true);
    assert.ok(record.later instanceof TaskCancelledError, "calls after the cancellation throw");
    assert.ok(seenAfter < 1500, `seen after ${seenAfter} ms`);
    const events = await result;
    assert.equal(events.outcome.task.status, "cancelled");
    assert.equal(events.outcome.task.statusMessage, "the user gave up");
    await waitFor(() => !worker.runningTaskIds.includes(task.task_id), { what: "the slot to be free" });
  });
});
