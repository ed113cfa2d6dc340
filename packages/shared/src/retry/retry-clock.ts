/**
 * The state behind `decideRetry` for one transfer: failed attempts in a row and the time of the
 * last byte of progress. A transfer that keeps moving never runs out; one that stops gives up once
 * the policy's time without progress has passed (or its count cap, when it has one).
 */
import { decideRetry, type RetryDecision, type RetryPolicy } from './policy.ts';

export interface RetryClockOptions {
  now?: () => number;
  random?: () => number;
}

export class RetryClock {
  readonly #policy: RetryPolicy;
  readonly #now: () => number;
  readonly #random: (() => number) | undefined;
  readonly #startedAt: number;
  #lastProgressAt: number | undefined;
  #failures = 0;

  constructor(policy: RetryPolicy, options: RetryClockOptions = {}) {
    this.#policy = policy;
    this.#now = options.now ?? Date.now;
    this.#random = options.random;
    this.#startedAt = this.#now();
  }

  /** Failed attempts since the last progress. */
  get failures(): number {
    return this.#failures;
  }

  /** A byte of progress: the count of failures starts again, and so does the time without progress. */
  progress(): void {
    this.#failures = 0;
    this.#lastProgressAt = this.#now();
  }

  /**
   * Since when the transfer has gone without progress. Before its first byte, a host that has been
   * failing since earlier counts from then: a request that joins an outage ten minutes old does not
   * wait ten minutes more, so a registry that is gone costs one wait per run, not one per image.
   */
  #clockStart(hostFailingSince: number | undefined): number {
    if (this.#lastProgressAt !== undefined) return this.#lastProgressAt;
    return hostFailingSince === undefined ? this.#startedAt : Math.min(this.#startedAt, hostFailingSince);
  }

  /** Epoch ms at which the time without progress runs out (undefined: the policy sets no time). */
  deadline(hostFailingSince?: number): number | undefined {
    const limit = this.#policy.noProgressTimeoutMs;
    return limit === undefined ? undefined : this.#clockStart(hostFailingSince) + limit;
  }

  /** True when the time without progress has run out already. */
  expired(hostFailingSince?: number): boolean {
    const deadline = this.deadline(hostFailingSince);
    return deadline !== undefined && this.#now() >= deadline;
  }

  /** Notes a failed attempt that may be retried and says whether and when to try again. */
  failure(options: { retryAfterMs?: number | undefined; hostFailingSince?: number | undefined } = {}): RetryDecision {
    this.#failures += 1;
    return decideRetry(this.#policy, {
      failures: this.#failures,
      sinceProgressMs: this.#now() - this.#clockStart(options.hostFailingSince),
      retryAfterMs: options.retryAfterMs,
      ...(this.#random === undefined ? {} : { random: this.#random }),
    });
  }
}
