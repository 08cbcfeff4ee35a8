// Compiled by `npm test` (tsc --noEmit): the declarations describe the API of issue 5.
import {
  McpError,
  RemoteTaskContext,
  TaskCancelledError,
  Worker,
  type CallToolResult,
  type ElicitResult,
} from "taskservice-client";

const worker = new Worker("127.0.0.1:50051", { maxConcurrentTasks: 2, retry: { maxBackoffMs: 1000 } });

worker.tool(
  {
    name: "analyze",
    description: "Analyze a topic",
    inputSchema: { type: "object", properties: { topic: { type: "string" } }, required: ["topic"] },
    taskSupport: "required",
  },
  async (ctx: RemoteTaskContext, args): Promise<CallToolResult> => {
    const id: string = ctx.taskId;
    const status: string = ctx.task.status;
    await ctx.updateStatus(`step 1 of ${id} (${status})`);
    await ctx.updateStatus("quietly", { notify: false });
    const answer: ElicitResult = await ctx.elicit("Proceed?", {
      type: "object",
      properties: { ok: { type: "boolean" } },
    });
    const sample = await ctx.createMessage([{ role: "user", content: { type: "text", text: String(args.topic) } }], {
      maxTokens: 50,
    });
    await ctx.elicitUrl("Sign in", "https://example.com/login", "login-1");
    if (ctx.isCancelled || ctx.signal.aborted) return { content: [], isError: true };
    return { content: [{ type: "text", text: `${answer.action}: ${sample.model}` }] };
  },
);

worker.tool(async function plain(ctx) {
  await ctx.fail(new Error("no"));
  return "unreached";
});

try {
  await worker.run({ handleSignals: false });
} catch (error) {
  if (error instanceof McpError) console.log(error.code);
  if (error instanceof TaskCancelledError) console.log(error.reason);
}
worker.shutdown();
