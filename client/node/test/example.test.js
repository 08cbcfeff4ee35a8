// The README's Node worker example (examples/worker.mjs, shown verbatim in the
// repository's README.md) runs, serves a task and stops on SIGTERM.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { BridgeDriver, Service, skipWithoutService, waitFor } from "./helpers.js";

const EXAMPLE = fileURLToPath(new URL("../examples/worker.mjs", import.meta.url));
const README = fileURLToPath(new URL("../../../README.md", import.meta.url));

test("README.md shows examples/worker.mjs as it is", { skip: !existsSync(README) && "no README.md" }, () => {
  const readme = readFileSync(README, "utf8");
  const example = readFileSync(EXAMPLE, "utf8");
  assert.ok(
    readme.includes("```js\n" + example + "```\n"),
    "README.md's Node worker section must show client/node/examples/worker.mjs verbatim in a ```js block",
  );
});

test("the example worker serves a task and stops on SIGTERM", { skip: skipWithoutService, timeout: 60_000 }, async () => {
  const service = await new Service({ store: "memory://" }).start();
  const bridge = new BridgeDriver(service.target);
  const child = spawn(process.execPath, [EXAMPLE], {
    env: { ...process.env, TASKSERVICE_TARGET: service.target },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  try {
    await waitFor(async () => (await bridge.call("ListTools", {})).tools.some((t) => t.name === "greet"), {
      what: "the example to register",
    });
    const task = await bridge.createTask("greet", { greeting: "Welcome" });
    const events = await bridge.run(task.task_id, async (request) =>
      request.method === "elicitation/create"
        ? { action: "accept", content: { name: "Grace" } }
        : { role: "assistant", content: { type: "text", text: "Glad you are here." }, model: "m" },
    );
    assert.equal(events.outcome.task.status, "completed");
    assert.deepEqual(events.outcome.result.content, [{ type: "text", text: "Welcome, Grace! Glad you are here." }]);

    const declined = await bridge.createTask("greet", {});
    const failed = await bridge.run(declined.task_id, async () => ({ action: "decline" }));
    assert.equal(failed.outcome.task.status, "failed");
    assert.equal(failed.outcome.task.statusMessage, "the user chose decline");

    child.kill("SIGTERM");
    assert.deepEqual(await exited, { code: 0, signal: null });
  } finally {
    child.kill("SIGKILL");
    bridge.close();
    await service.close();
  }
});
