import { Worker } from "taskservice-client";

const worker = new Worker(process.env.TASKSERVICE_TARGET ?? "127.0.0.1:50051");

worker.tool(
  {
    name: "greet",
    description: "Ask the user's name, then greet them with a line from the client's model",
    inputSchema: { type: "object", properties: { greeting: { type: "string" } } },
    taskSupport: "required",
  },
  async (ctx, args) => {
    await ctx.updateStatus("asking for a name");
    const answer = await ctx.elicit("What is your name?", {
      type: "object",
      properties: { name: { type: "string" } },
      required: ["name"],
    });
    if (answer.action !== "accept") throw new Error(`the user chose ${answer.action}`); // fails the task
    const name = String(answer.content?.name);
    const sample = await ctx.createMessage(
      [{ role: "user", content: { type: "text", text: `Write a one-line welcome for ${name}.` } }],
      { maxTokens: 50 },
    );
    const line = !Array.isArray(sample.content) && sample.content.type === "text" ? sample.content.text : "";
    return { content: [{ type: "text", text: `${args.greeting ?? "Hello"}, ${name}! ${line}` }] };
  },
);

await worker.run(); // serves until SIGTERM or SIGINT, then lets running tasks finish
