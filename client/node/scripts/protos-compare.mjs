// The package's copy of the contract against the repository's proto/ directory.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_PROTO_DIR = new URL("../proto/", import.meta.url);
export const REPO_PROTO_DIR = new URL("../../../proto/", import.meta.url);

function protoFiles(dir) {
  const root = fileURLToPath(dir);
  const found = [];
  const walk = (rel) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      if (statSync(join(root, path)).isDirectory()) walk(path);
      else if (name.endsWith(".proto")) found.push(path);
    }
  };
  if (existsSync(join(root, "mcptasks"))) walk("mcptasks");
  return found;
}

/** The differences (one line each), or null when there is no repository contract to compare with. */
export function compareProtos() {
  if (!existsSync(fileURLToPath(new URL("mcptasks", REPO_PROTO_DIR)))) return null;
  const ours = protoFiles(PACKAGE_PROTO_DIR);
  const theirs = protoFiles(REPO_PROTO_DIR);
  const differences = [];
  for (const path of theirs) {
    if (!ours.includes(path)) differences.push(`missing: ${path}`);
    else if (
      !readFileSync(new URL(path, PACKAGE_PROTO_DIR)).equals(readFileSync(new URL(path, REPO_PROTO_DIR)))
    ) {
      differences.push(`differs: ${path}`);
    }
  }
  for (const path of ours) if (!theirs.includes(path)) differences.push(`extra: ${path}`);
  return differences;
}
