// The one place that makes calls: stubs, call metadata, deadlines and retries.
import * as grpc from "@grpc/grpc-js";
import { Backoff, retryPolicy, sleep } from "./backoff.js";
import { RETRYABLE, translate } from "./errors.js";
import { contract } from "./proto.js";

const DEFAULT_CHANNEL_OPTIONS = {
  // Reconnect quickly after the service restarts (gRPC's own waits grow to 120 s).
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2000,
  // Notice a dead peer during long waits (an elicitation may wait for hours).
  "grpc.keepalive_time_ms": 60_000,
  "grpc.keepalive_timeout_ms": 20_000,
  "grpc.keepalive_permit_without_calls": 0,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.enable_retries": 0,
};

// A unary call may be retried on these too: its deadline passed on a connection
// that died silently (the service restarted), or the service cancelled it while
// shutting down (our own cancellations come from `signal`, which ends the
// retries). Every unary call of the worker protocol may be made twice.
export const UNARY_RETRYABLE = new Set([...RETRYABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED]);

function credentialsFor(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  if (typeof tls.createSecureContext === "function") return tls; // grpc.ChannelCredentials already
  const pem = (value) => (value == null ? null : Buffer.from(value));
  return grpc.credentials.createSsl(pem(tls.rootCerts), pem(tls.privateKey), pem(tls.certChain));
}

/** Stubs of both services over one channel, with the caller's credentials on every call. */
export class ServiceClient {
  constructor(target, { token, tls = false, retry, rpcTimeoutMs = 30_000, channelOptions } = {}) {
    if (!target) throw new TypeError("target must not be empty");
    if (!(rpcTimeoutMs > 0)) throw new RangeError("rpcTimeoutMs must be positive");
    this.target = target;
    this.retry = retryPolicy(retry);
    this.rpcTimeoutMs = rpcTimeoutMs;
    const options = { ...DEFAULT_CHANNEL_OPTIONS, ...channelOptions };
    if (tls && typeof tls === "object" && tls.domain) options["grpc.ssl_target_name_override"] = tls.domain;
    const v1 = contract();
    this.tasks = new v1.TaskService(target, credentialsFor(tls), options);
    this.bridge = new v1.BridgeService(target, null, { channelOverride: this.tasks.getChannel() });
    this.token = token ?? null;
  }

  backoff() {
    return new Backoff(this.retry);
  }

  metadata({ waitForReady = false } = {}) {
    const metadata = new grpc.Metadata({ waitForReady });
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    return metadata;
  }

  close() {
    this.tasks.close();
  }

  /**
   * Make a unary call; while the service is unreachable, again after a backoff
   * (until the retry policy gives up or `signal` aborts).
   */
  async unary(method, request, { retry = true, deadlineMs, signal, service = this.tasks } = {}) {
    const backoff = this.backoff();
    for (;;) {
      try {
        return await this.#call(service, method, request, deadlineMs ?? this.rpcTimeoutMs, signal);
      } catch (error) {
        if (!retry || !UNARY_RETRYABLE.has(error.code) || signal?.aborted) throw translate(error, method);
        const delay = backoff.nextDelay();
        if (delay === null) throw translate(error, method);
        await sleep(delay, signal);
        if (signal?.aborted) throw translate(error, method);
      }
    }
  }

  #call(service, method, request, deadlineMs, signal) {
    return new Promise((resolve, reject) => {
      const call = service[method](
        request,
        this.metadata(),
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          signal?.removeEventListener("abort", cancel);
          if (error) reject(error);
          else resolve(response);
        },
      );
      const cancel = () => call.cancel();
      signal?.addEventListener("abort", cancel, { once: true });
    });
  }

  /** Open a server stream (no deadline: it lasts as long as the wait). */
  stream(method, request, { service = this.tasks, waitForReady = false } = {}) {
    return service[method](request, this.metadata({ waitForReady }));
  }
}

/**
 * Follow a server stream until it ends. `onData` is called for each message and
 * may return true to stop following (the call is cancelled). Resolves with
 * `{ stopped: true }` or with the final status `{ code, details }`; never rejects.
 * Aborting `signal` cancels the call and resolves with `{ aborted: true }`.
 */
export function follow(call, onData, signal) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      resolve(outcome);
    };
    const onAbort = () => {
      finish({ aborted: true });
      call.cancel();
    };
    call.on("data", (message) => {
      if (settled) return;
      let stop = false;
      try {
        stop = onData(message) === true;
      } catch (error) {
        finish({ error });
        call.cancel();
        return;
      }
      if (stop) {
        finish({ stopped: true });
        call.cancel();
      }
    });
    call.on("error", () => {}); // the status event below says everything
    call.on("status", (status) => finish({ code: status.code, details: status.details }));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
  });
}
