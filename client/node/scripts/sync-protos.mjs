// Copies the contract (../../proto/mcptasks) into this package's proto/ directory,
// which is what the package loads at run time and ships. `--check` only compares
// and fails when the copy differs (test/protos.test.js runs the same comparison).
import { cpSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { compareProtos, PACKAGE_PROTO_DIR, REPO_PROTO_DIR } from "./protos-compare.mjs";

const check = process.argv.includes("--check");
const differences = compareProtos();
if (differences === null) {
  console.error(`no contract at ${REPO_PROTO_DIR}: nothing to sync (outside the repository)`);
  process.exit(check ? 1 : 0);
}
if (check) {
  if (differences.length) {
    console.error(`proto/ is out of date with ${REPO_PROTO_DIR}:\n  ${differences.join("\n  ")}`);
    console.error("run: npm run sync-protos");
    process.exit(1);
  }
  console.log("ok: proto/ matches the repository's contract");
} else {
  rmSync(new URL("mcptasks", PACKAGE_PROTO_DIR), { recursive: true, force: true });
  cpSync(new URL("mcptasks", REPO_PROTO_DIR), new URL("mcptasks", PACKAGE_PROTO_DIR), { recursive: true });
  console.log(`copied ${fileURLToPath(new URL("mcptasks", REPO_PROTO_DIR))} into proto/`);
}
