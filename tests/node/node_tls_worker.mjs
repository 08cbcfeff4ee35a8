// The Node worker of tests/node/test_node_tls_worker.py: one tool, connected the way the
// README's "Tokens and TLS" says: `new Worker(target, { token, tls: { rootCerts, certChain,
// privateKey } })`. Prints "registered" once the service took its registration.
import { readFileSync } from "node:fs";
import { Worker } from "../../client/node/src/index.js";

const env = process.env;
const worker = new Worker(env.TASKSERVICE_TARGET, {
  name: "node-tls",
  token: env.TASKSERVICE_TOKEN,
  tls: {
    rootCerts: readFileSync(env.TLS_CA),
    certChain: readFileSync(env.TLS_CERT),
    privateKey: readFileSync(env.TLS_KEY),
  },
  shutdownTimeoutMs: 1000,
});
worker.tool({ name: "echo", taskSupport: "required" }, async (ctx, args) => `node over TLS: ${args.text}`);

const running = worker.run();
const timer = setInterval(() => {
  if (worker.workerId) {
    console.log(`registered ${worker.workerId}`);
    clearInterval(timer);
  }
}, 20);
await running;
