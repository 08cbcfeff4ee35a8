// README "MCP clients' tokens": the TypeScript SDK's client (@modelcontextprotocol/sdk 1.32)
// sends a principal's token as `requestInit: { headers }` of its transport, creates a task
// and takes its result; a client without the token is refused.
//
//   MCP_TOKEN=... node tests/node/ts_sdk_token.mjs http://127.0.0.1:8000/mcp
//
// Prints a JSON summary on stdout; exits 0 when every check passed.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const url = process.argv[2];
const token = process.env.MCP_TOKEN;
if (!url || !token) throw new Error("usage: MCP_TOKEN=... node ts_sdk_token.mjs MCP_URL");
const deadline = setTimeout(() => {
  console.error("ts_sdk_token: timed out");
  process.exit(2);
}, 60_000);

const client = new Client({ name: "ts-sdk-token", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
const tools = (await client.listTools()).tools.map((tool) => tool.name);
const kinds = [];
let text = "";
const stream = client.experimental.tasks.callToolStream({ name: "hello", arguments: {} }, CallToolResultSchema);
for await (const message of stream) {
  kinds.push(message.type);
  if (message.type === "result") text = message.result.content[0].text;
  if (message.type === "error") throw message.error;
}
const listed = await client.experimental.tasks.listTasks();
await client.close();

let refused = "";
const anonymous = new Client({ name: "ts-sdk-anonymous", version: "1.0.0" });
try {
  await anonymous.connect(new StreamableHTTPClientTransport(new URL(url)));
} catch (error) {
  refused = String(error);
}
assert.ok(refused, "a client without the token connected");
clearTimeout(deadline);
console.log(JSON.stringify({ tools, kinds, text, tasks: listed.tasks.length, refused }));
