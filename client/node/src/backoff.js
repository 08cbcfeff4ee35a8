// Waits between attempts while the service is unreachable.

/** How calls and streams retry: waits grow from initialBackoffMs by multiplier up to maxBackoffMs, plus jitter. */
export function retryPolicy(options = {}) {
  const policy = {
    initialBackoffMs: 100,
    maxBackoffMs: 5000,
    multiplier: 2,
    jitter: 0.2,
    giveUpAfterMs: null,
    ...options,
  };
  if (!(policy.initialBackoffMs > 0) || !(policy.maxBackoffMs >= policy.initialBackoffMs)) {
    throw new RangeError("retry: need 0 < initialBackoffMs <= maxBackoffMs");
  }
  if (!(policy.multiplier >= 1)) throw new RangeError("retry: multiplier must be at least 1");
  if (policy.giveUpAfterMs !== null && !(policy.giveUpAfterMs >= 0)) {
    throw new RangeError("retry: giveUpAfterMs must not be negative");
  }
  return Object.freeze(policy);
}

export class Backoff {
  constructor(policy) {
    this.policy = policy;
    this.reset();
    this.attempts = 0;
  }

  reset() {
    this.next = this.policy.initialBackoffMs;
    this.started = Date.now();
  }

  /** Milliseconds to wait before the next attempt, or null when the policy gives up. */
  nextDelay() {
    this.attempts += 1;
    const { giveUpAfterMs, jitter, multiplier, maxBackoffMs } = this.policy;
    const elapsed = Date.now() - this.started;
    if (giveUpAfterMs !== null && elapsed >= giveUpAfterMs) return null;
    let delay = this.next * (1 + Math.random() * jitter);
    this.next = Math.min(this.next * multiplier, maxBackoffMs);
    if (giveUpAfterMs !== null) delay = Math.min(delay, Math.max(giveUpAfterMs - elapsed, 0));
    return delay;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
