// JSON <-> google.protobuf.Struct, tasks, tool results: no service needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { contract } from "../src/proto.js";
import { callToolResult, fromStruct, fromValue, taskFromProto, toStruct, toValue } from "../src/convert.js";
import { TaskCancelledError, translate } from "../src/errors.js";
import { newRequestId } from "../src/context.js";
import { compareProtos } from "../scripts/protos-compare.mjs";

test("JSON survives a Struct round trip, through the wire encoding too", () => {
  const data = {
    text: "héllo",
    n: 3,
    x: -1.5,
    yes: true,
    nothing: null,
    list: [1, "two", { three: [3] }, []],
    nested: { deeper: { deepest: {} } },
  };
  assert.deepEqual(fromStruct(toStruct(data)), data);
  const Struct = contract().CompleteRequest.type; // any message with a Struct field will do
  assert.ok(Struct);
  assert.deepEqual(fromValue(toValue([1, null, "a"])), [1, null, "a"]);
  assert.deepEqual(fromStruct(toStruct({ when: new Date(0), gone: undefined })), { when: "1970-01-01T00:00:00.000Z" });
  assert.throws(() => toStruct([1, 2]), TypeError);
  assert.deepEqual(fromStruct(undefined), {});
});

test("a wire Task becomes MCP's Task JSON", () => {
  const task = taskFromProto({
    task_id: "t1",
    status: "TASK_STATUS_INPUT_REQUIRED",
    status_message: "waiting",
    created_at: { seconds: "1700000000", nanos: 5_000_000 },
    last_updated_at: { seconds: "1700000001" },
    ttl_ms: "60000",
    poll_interval_ms: "1000",
  });
  assert.deepEqual(task, {
    taskId: "t1",
    status: "input_required",
    statusMessage: "waiting",
    createdAt: "2023-11-14T22:13:20.005Z",
    lastUpdatedAt: "2023-11-14T22:13:21.000Z",
    ttl: 60000,
    pollInterval: 1000,
  });
  assert.throws(() => taskFromProto({ task_id: "t", status: "TASK_STATUS_UNSPECIFIED" }), TypeError);
});

test("tool return values become CallToolResults", () => {
  const result = { content: [{ type: "text", text: "x" }], isError: false };
  assert.equal(callToolResult(result), result);
  assert.deepEqual(callToolResult("hi"), { content: [{ type: "text", text: "hi" }] });
  assert.deepEqual(callToolResult(undefined), { content: [] });
  assert.deepEqual(callToolResult({ type: "image", data: "AA==", mimeType: "image/png" }), {
    content: [{ type: "image", data: "AA==", mimeType: "image/png" }],
  });
  assert.deepEqual(callToolResult({ a: 1 }), { content: [{ type: "text", text: '{"a":1}' }] });
  assert.deepEqual(callToolResult({ a: 1 }, { structured: true }).structuredContent, { a: 1 });
  assert.throws(() => callToolResult(42), /must return a CallToolResult/);
  assert.throws(() => callToolResult([1]), /not an array/);
});

test("errors carry gRPC codes; request ids are unguessable", () => {
  const rejected = translate({ code: 5, details: "no such task" }, "GetTask");
  assert.equal(rejected.name, "TaskServiceRejected");
  assert.equal(rejected.codeName, "NOT_FOUND");
  assert.equal(rejected.message, "GetTask: no such task (NOT_FOUND)");
  assert.equal(translate({ code: 14, details: "down" }).name, "TaskServiceUnavailable");
  assert.equal(new TaskCancelledError("t", "handed_back").reason, "handed_back");
  const id = newRequestId();
  assert.match(id, /^w-[A-Za-z0-9_-]{22}$/);
  assert.notEqual(id, newRequestId());
});

test("the package's proto/ is the repository's contract, byte for byte", (t) => {
  const differences = compareProtos();
  if (differences === null) {
    t.skip("outside the repository: no ../../proto to compare with");
    return;
  }
  assert.deepEqual(differences, [], "run `npm run sync-protos` in client/node");
});
