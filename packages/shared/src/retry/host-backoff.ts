/**
 * Backoff state per host (or peer), in the manner of regclient's reghttp: when a host starts failing,
 * every request to it waits, not only the one that failed; successes decay the state again.
 */
import { backoffDelay, isRetryable, retryAfterOf, sleep, type RetryPolicy } from './policy.ts';
import { throwIfAborted } from '../errors.ts';

interface HostState {
  /** How deep into backoff the host is; grows once per failure episode, shrinks per success. */
  level: number;
  /** Epoch ms before which nobody sends this host a request. */
  notBefore: number;
}

export class HostBackoff {
  readonly #policy: RetryPolicy;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #hosts = new Map<string, HostState>();

  constructor(policy: RetryPolicy, options: { now?: () => number; random?: () => number } = {}) {
    this.#policy = policy;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** Resolves when `host` may be called again (at once when it is not backing off). */
  async waitTurn(host: string, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    // The pause can grow while we wait (another request met a Retry-After), so look again after it.
    for (;;) {
      const state = this.#hosts.get(host);
      const waitMs = state === undefined ? 0 : state.notBefore - this.#now();
      if (waitMs <= 0) return;
      await sleep(waitMs, signal);
    }
  }

  /**
   * Notes a failed request to `host`. Only transient failures count (a 404 says nothing about the
   * host's health). Failures that land while the host is already paused belong to the same episode
   * (requests that were in flight together) and do not deepen the backoff; a `Retry-After` always
   * extends the pause to at least its end.
   */
  recordFailure(host: string, err: unknown): void {
    if (!isRetryable(err)) return;
    const now = this.#now();
    const state = this.#hosts.get(host) ?? { level: 0, notBefore: 0 };
    if (now >= state.notBefore) state.level += 1;
    const retryAfterMs = retryAfterOf(err);
    const delay = backoffDelay(this.#policy, state.level, {
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      random: this.#random,
    });
    state.notBefore = Math.max(state.notBefore, now + delay);
    this.#hosts.set(host, state);
  }

  /** Notes a success: the backoff decays by one level; a pause already promised (Retry-After) stays. */
  recordSuccess(host: string): void {
    const state = this.#hosts.get(host);
    if (state === undefined) return;
    state.level = Math.max(0, state.level - 1);
    if (state.level === 0 && state.notBefore <= this.#now()) this.#hosts.delete(host);
  }

  /** Milliseconds until `host` may be called (0 when it may be called now). */
  pauseRemaining(host: string): number {
    const state = this.#hosts.get(host);
    return state === undefined ? 0 : Math.max(0, state.notBefore - this.#now());
  }
}
