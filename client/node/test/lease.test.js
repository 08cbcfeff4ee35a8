// The Node context names its assignment's lease in its status changes and its outcome, so
// that the service refuses them once the task is held under another lease (a worker declared
// lost whose tool still runs). The service's side is tested in Python
// (tests/domain/test_domain_dispatch.py, tests/client/test_live_context.py).
import assert from "node:assert/strict";
import { test } from "node:test";
import { RemoteTaskContext } from "../src/context.js";

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
