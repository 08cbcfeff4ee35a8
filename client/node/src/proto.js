// The contract (the .proto files shipped in ../proto) loaded with @grpc/proto-loader.
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** Where the package's copy of the contract lives (`mcptasks/v1/*.proto`). */
export const PROTO_DIR = fileURLToPath(new URL("../proto/", import.meta.url));

export const PROTO_FILES = [
  "mcptasks/v1/task.proto",
  "mcptasks/v1/task_service.proto",
  "mcptasks/v1/bridge_service.proto",
];

/**
 * Field names as in the .proto files (snake_case), 64-bit integers as strings,
 * enums as their names, oneofs named by a virtual field, no defaults filled in.
 */
export const LOADER_OPTIONS = Object.freeze({
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  arrays: true,
  objects: false,
  oneofs: true,
});

let loaded = null;

/** The `mcptasks.v1` package: service constructors (TaskService, BridgeService) and message types. */
export function contract() {
  if (loaded === null) {
    const definition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(definition).mcptasks.v1;
  }
  return loaded;
}
