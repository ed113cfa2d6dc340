/**
 * Runs an operation under a retry policy and a host's backoff state. The decision of what to retry
 * is `isRetryable`, when to give up is `decideRetry` (through `RetryClock`); the waiting is the
 * backoff delay or the host's pause, both cancelled by an abort.
 */
import type { Logger } from 'pino';
import { abortError, describeError, errorCode, MeshmirrorError, throwIfAborted } from '../errors.ts';
import { formatDuration } from '../units.ts';
import type { HostBackoff } from './host-backoff.ts';
import { isRetryable, retryAfterOf, sleep, type RetryPolicy } from './policy.ts';
import { RetryClock } from './retry-clock.ts';

export interface RetryAttemptInfo {
  /** The attempt that failed (1-based). */
  attempt: number;
  /** How long we wait before the next attempt. */
  delayMs: number;
  error: unknown;
}

export interface WithRetriesOptions {
  policy: RetryPolicy;
  /** The host the operation talks to; its backoff state is shared by every request to it. */
  host: string;
  backoff?: HostBackoff;
  signal?: AbortSignal;
  /** Warned on every retry. */
  logger?: Logger;
  /** What the operation is, for log lines ("GET manifest quay.io/foo:1.0"). */
  what: string;
  /** Called before each wait (the fetcher turns this into a `retry` event). */
  onRetry?: (info: RetryAttemptInfo) => void;
  /** For tests: the source of jitter. */
  random?: () => number;
}

/**
 * Calls `operation(attempt)` until it succeeds, fails with an error `isRetryable` rejects, or the
 * policy gives up (its time without progress has passed, or its count cap); then the last error is
 * thrown as it was. While the host is failing, the host's pause is the wait (shared by every request
 * to it); otherwise the attempt's own backoff delay is.
 */
export async function withRetries<T>(operation: (attempt: number) => Promise<T>, options: WithRetriesOptions): Promise<T> {
  const { policy, host, backoff, signal } = options;
  const clock = new RetryClock(policy, options.random === undefined ? {} : { random: options.random });
  // Boxed so that a failure is told apart from none even if what was thrown is `undefined`.
  let lastFailure: { error: unknown } | undefined;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal);
    if (backoff !== undefined) {
      const turn = await backoff.waitTurn(host, { signal, until: clock.deadline(backoff.failingSince(host)) });
      if (!turn && lastFailure !== undefined) throw lastFailure.error;
      if (!turn) throw hostGivenUp(host, backoff, policy);
    }
    const ticket = backoff?.ticket(host);
    try {
      const result = await operation(attempt);
      backoff?.recordSuccess(host, ticket);
      return result;
    } catch (error) {
      if (signal?.aborted === true) throw abortError(signal);
      if (!isRetryable(error)) throw error;
      lastFailure = { error };
      backoff?.recordFailure(host, error);
      const decision = clock.failure({ retryAfterMs: retryAfterOf(error), hostFailingSince: backoff?.failingSince(host) });
      if (!decision.retry) throw error;
      const hostPaused = backoff?.isFailing(host) === true;
      const delayMs = hostPaused ? Math.max(backoff.pauseRemaining(host), 0) : decision.delayMs;
      options.logger?.warn(
        { host, attempt, retries: policy.retries, delayMs, code: errorCode(error), error: describeError(error) },
        `${options.what} failed (${attemptText(attempt, policy)}); retrying in ${formatDelay(delayMs)}`,
      );
      options.onRetry?.({ attempt, delayMs, error });
      if (!hostPaused) await sleep(delayMs, signal);
    }
  }
}

/** "attempt 2 of 6", or "attempt 2" when time, not a count, decides. */
export function attemptText(attempt: number, policy: RetryPolicy): string {
  return policy.retries === undefined ? `attempt ${attempt}` : `attempt ${attempt} of ${policy.retries + 1}`;
}

/** A request that arrives at a host which has been failing for longer than the policy waits. */
export function hostGivenUp(host: string, backoff: HostBackoff, policy: RetryPolicy): MeshmirrorError {
  const since = backoff.failingSince(host);
  const forText = since === undefined ? '' : ` for ${formatDelay(Date.now() - since)}`;
  const limit = policy.noProgressTimeoutMs === undefined ? '' : ` (longer than --image-timeout ${formatDelay(policy.noProgressTimeoutMs)})`;
  return new MeshmirrorError('MM_NETWORK', `${host} has been failing${forText}${limit}; not trying again`, { data: { host, retryable: false } });
}

/** `850ms`, `4.0s`, `2m10s`: a retry delay or a time without progress, as logs and the progress line show it. */
export function formatDelay(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  return formatDuration(Math.round(ms / 1_000) * 1_000);
}
