// The Node worker of tests/node/test_node_worker_e2e.py: tools that use every
// part of the task context. It appends what it sees to $NODE_WORKER_EVENTS
// (one JSON object a line), so that the test can check the worker's side too.
import { appendFileSync } from "node:fs";
import { Worker } from "../../client/node/src/index.js";

const target = process.env.TASKSERVICE_TARGET;
if (!target) throw new Error("set TASKSERVICE_TARGET");
const eventsFile = process.env.NODE_WORKER_EVENTS;

function record(event) {
  if (eventsFile) appendFileSync(eventsFile, `${JSON.stringify(event)}\n`);
}

const worker = new Worker(target, {
  name: "node-e2e",
  retry: { initialBackoffMs: 50, maxBackoffMs: 500 },
  shutdownTimeoutMs: 2000,
});

worker.tool(
  {
    name: "journey",
    title: "Journey",
    description: "Status, two elicitations and sampling",
    inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    taskSupport: "required",
  },
  async (ctx, args) => {
    await ctx.updateStatus(`planning a trip to ${args.city}`);
    const who = await ctx.elicit("Who is travelling?", {
      type: "object",
      properties: { name: { type: "string" } },
      required: ["name"],
    });
    const nights = await ctx.elicit(`How many nights in ${args.city}?`, {
      type: "object",
      properties: { nights: { type: "integer" } },
      required: ["nights"],
    });
    await ctx.updateStatus("asking the model");
    const sample = await ctx.createMessage(
      [{ role: "user", content: { type: "text", text: `Suggest one sight in ${args.city}.` } }],
      { maxTokens: 60, systemPrompt: "Answer in five words." },
    );
    record({ tool: "journey", taskId: ctx.taskId, who, nights, sample });
    return {
      content: [
        {
          type: "text",
          text: `${who.content.name}: ${nights.content.nights} nights in ${args.city}; see ${sample.content.text}`,
        },
      ],
    };
  },
);

worker.tool(
  { name: "explode", description: "Fails with a thrown error", taskSupport: "required" },
  async (ctx) => {
    await ctx.updateStatus("about to fail");
    throw new Error("the flux capacitor is out of flux");
  },
);

worker.tool(
  { name: "hold", description: "Works until cancelled", taskSupport: "required" },
  async (ctx) => {
    await ctx.updateStatus("holding");
    record({ tool: "hold", taskId: ctx.taskId, event: "started" });
    try {
      await new Promise((resolve, reject) => {
        ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
      });
    } catch (error) {
      record({ tool: "hold", taskId: ctx.taskId, event: "stopped", isCancelled: ctx.isCancelled, error: error.name });
      throw error;
    }
  },
);

await worker.run();
