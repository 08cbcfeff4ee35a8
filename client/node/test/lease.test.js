// The Node context names its assignment's lease in its status changes, its questions for the
// client and its outcome, so that the service refuses them once the task is held under
// another lease (a worker declared lost whose tool still runs). The service's side is tested in Python
// (tests/domain/test_domain_dispatch.py, tests/client/test_live_context.py).
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { RemoteTaskContext } from "../src/context.js";
import { toStruct } from "../src/convert.js";

const TASK = {
  task_id: "task-1",
  status: "TASK_STATUS_WORKING",
  status_message: "",
  created_at: "2026-12-07T00:00:00.000Z",
  last_updated_at: "2026-12-07T00:00:00.000Z",
  ttl_ms: "60000",
  poll_interval_ms: "1000",
};

function recordingClient() {
  const calls = [];
  return {
    calls,
    async unary(method, request) {
      calls.push([method, request]);
      return { task: { ...TASK, status: method === "Complete" ? "TASK_STATUS_COMPLETED" : TASK.status } };
    },
    backoff() {
      return { reset() {}, nextDelay: () => null };
    },
    /** A question's stream that answers at once, as the service does once the client answered. */
    stream(method, request) {
      calls.push([method, request]);
      const call = new EventEmitter();
      call.cancel = () => {};
      setImmediate(() => {
        call.emit("data", { task: TASK, event: "result", result: toStruct({ action: "accept", content: {} }) });
        call.emit("status", { code: 0, details: "" });
      });
      return call;
    },
  };
}

test("update, complete and fail carry the assignment's lease", async () => {
  const client = recordingClient();
  const ctx = new RemoteTaskContext({ task: TASK, client, leaseId: "lease-7" });
  await ctx.updateStatus("half way");
  await ctx.complete("done");
  await new RemoteTaskContext({ task: TASK, client, leaseId: "lease-8" }).fail(new Error("broke"));
  assert.deepEqual(
    client.calls.map(([method, request]) => [method, request.task_id, request.lease_id]),
    [
      ["UpdateStatus", "task-1", "lease-7"],
      ["Complete", "task-1", "lease-7"],
      ["Fail", "task-1", "lease-8"],
    ],
  );
});

test("a context made without a lease names none", async () => {
  const client = recordingClient();
  await new RemoteTaskContext({ task: TASK, client }).updateStatus("by id");
  assert.equal(client.calls[0][1].lease_id, "");
});

test("every question for the client carries the assignment's lease", async () => {
  const client = recordingClient();
  const ctx = new RemoteTaskContext({ task: TASK, client, leaseId: "lease-9" });
  const hi = [{ role: "user", content: { type: "text", text: "Hi" } }];
  const schema = { type: "object", properties: { name: { type: "string" } } };
  await ctx.elicit("Who?", schema);
  await ctx.elicitUrl("Sign in", "https://example.test", "e-1");
  await ctx.elicitAsTask("Who?", schema);
  await ctx.createMessage(hi, { maxTokens: 5 });
  await ctx.createMessageAsTask(hi, { maxTokens: 5 });
  assert.deepEqual(
    client.calls.map(([method, request]) => [method, request.lease_id]),
    [
      ["Elicit", "lease-9"],
      ["ElicitUrl", "lease-9"],
      ["ElicitAsTask", "lease-9"],
      ["CreateMessage", "lease-9"],
      ["CreateMessageAsTask", "lease-9"],
    ],
  );
  assert.ok(client.calls.every(([, request]) => request.request_id.length > 0));
});
