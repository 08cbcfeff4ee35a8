// Issue 4, "Must show": the TypeScript SDK's client (@modelcontextprotocol/sdk 1.32)
// drives the main flow against `taskservice serve` with a Python worker:
// task call with status notifications, an elicitation answered by this client's
// elicitation handler, sampling, the result, a cancellation, and a question the task
// stopped waiting for, called off at the client.
//
//   node tests/node/ts_sdk_flow.mjs http://127.0.0.1:8000/mcp
//
// Exits 0 when every check passed, and prints a JSON summary on stdout.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  TaskStatusNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const url = process.argv[2];
if (!url) throw new Error("usage: node ts_sdk_flow.mjs MCP_URL");
const RELATED_TASK = "io.modelcontextprotocol/related-task";
const deadline = setTimeout(() => {
  console.error("ts_sdk_flow: timed out");
  process.exit(2);
}, 60_000);

const elicitations = [];
const samplings = [];
const statuses = [];

const client = new Client(
  { name: "ts-sdk-e2e", version: "1.0.0" },
  { capabilities: { elicitation: { form: {} }, sampling: {} } },
);
const calledOff = [];
client.setRequestHandler(ElicitRequestSchema, async (request, extra) => {
  if (request.params.message === "Still there?") {
    // Hold the question, let the tool stop waiting for it, and see the server call it off:
    // notifications/cancelled aborts this handler (and the SDK then sends no answer).
    let timer;
    const outcome = new Promise((resolve) => {
      extra.signal.addEventListener("abort", () => resolve("aborted"), { once: true });
      timer = setTimeout(() => resolve("not called off"), 20_000);
    });
    await client.callTool({ name: "open_gate", arguments: { gate: "called-off" } });
    calledOff.push({ outcome: await outcome, reason: String(extra.signal.reason ?? "") });
    clearTimeout(timer);
    return { action: "decline" };
  }
  elicitations.push(request.params);
  return { action: "accept", content: { colour: "teal" } };
});
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  samplings.push(request.params);
  return { role: "assistant", content: { type: "text", text: "calm like the sea" }, model: "ts-fake-model" };
});
client.setNotificationHandler(TaskStatusNotificationSchema, (notification) => {
  statuses.push(notification.params);
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
await client.connect(new StreamableHTTPClientTransport(new URL(url)));

// The worker's tools, with their task support (callToolStream then calls them as tasks).
let tools = [];
for (let i = 0; i < 200 && !tools.some((t) => t.name === "wait_forever"); i++) {
  tools = (await client.listTools()).tools;
  if (!tools.some((t) => t.name === "wait_forever")) await sleep(50);
}
const interviewTool = tools.find((t) => t.name === "interview");
assert.equal(interviewTool?.execution?.taskSupport, "required");

// The main flow: task, status notifications, elicitation, sampling, result.
const messages = [];
for await (const message of client.experimental.tasks.callToolStream({
  name: "interview",
  arguments: { topic: "colours" },
})) {
  messages.push(message);
}
assert.equal(messages[0].type, "taskCreated", JSON.stringify(messages[0]));
const taskId = messages[0].task.taskId;
const last = messages.at(-1);
assert.equal(last.type, "result", JSON.stringify(last, null, 1));
assert.deepEqual(last.result.content, [{ type: "text", text: "teal: calm like the sea" }]);
assert.equal(last.result._meta?.[RELATED_TASK]?.taskId, taskId);
assert.equal(elicitations.length, 1);
assert.equal(elicitations[0].message, "What is your favourite colour?");
assert.equal(elicitations[0]._meta?.[RELATED_TASK]?.taskId, taskId);
assert.equal(samplings.length, 1);
assert.equal(samplings[0].maxTokens, 40);
assert.equal(samplings[0]._meta?.[RELATED_TASK]?.taskId, taskId);
const final = await client.experimental.tasks.getTask(taskId);
assert.equal(final.status, "completed");
const seen = statuses.filter((s) => s.taskId === taskId).map((s) => `${s.status}: ${s.statusMessage ?? ""}`);
assert.ok(seen.includes("working: preparing questions about colours"), seen.join(" | "));
assert.ok(seen.some((s) => s.startsWith("input_required")), seen.join(" | "));
assert.ok(seen.includes("working: asking the model"), seen.join(" | "));
assert.ok(seen.some((s) => s.startsWith("completed")), seen.join(" | "));

// Cancel: the task is cancelled at once and the stream ends with an error.
const stream = client.experimental.tasks.callToolStream({ name: "wait_forever", arguments: {} });
const first = (await stream.next()).value;
assert.equal(first.type, "taskCreated");
const cancelId = first.task.taskId;
for (let i = 0; i < 400; i++) {
  if ((await client.experimental.tasks.getTask(cancelId)).statusMessage === "waiting") break;
  await sleep(25);
}
const cancelled = await client.experimental.tasks.cancelTask(cancelId);
assert.equal(cancelled.status, "cancelled");
const rest = [];
for await (const message of stream) rest.push(message);
assert.equal(rest.at(-1).type, "error", JSON.stringify(rest.at(-1)));
assert.match(String(rest.at(-1).error?.message), /cancelled/);
assert.equal((await client.experimental.tasks.getTask(cancelId)).status, "cancelled");

// A question the task stopped waiting for: called off at this client, whose handler is aborted.
const gaveUp = [];
for await (const message of client.experimental.tasks.callToolStream({
  name: "ask_until_gate",
  arguments: { gate: "called-off" },
})) {
  gaveUp.push(message);
}
assert.equal(gaveUp.at(-1).type, "result", JSON.stringify(gaveUp.at(-1), null, 1));
assert.deepEqual(gaveUp.at(-1).result.content, [{ type: "text", text: "stopped waiting" }]);
assert.deepEqual(calledOff, [{ outcome: "aborted", reason: "The task no longer waits for this request." }]);

console.log(
  JSON.stringify({
    taskId,
    cancelledTaskId: cancelId,
    messageTypes: messages.map((m) => m.type),
    statuses: seen,
    elicitations: elicitations.length,
    samplings: samplings.length,
    calledOff,
  }),
);
clearTimeout(deadline);
await client.close();
