/**
 * Runs an operation under a retry policy and a host's backoff state. The decision of what to retry
 * is `isRetryable`; the waiting is `backoffDelay` and `HostBackoff`, both cancelled by an abort.
 */
import type { Logger } from 'pino';
import { abortError, describeError, errorCode, throwIfAborted } from '../errors.ts';
import type { HostBackoff } from './host-backoff.ts';
import { backoffDelay, isRetryable, retryAfterOf, sleep, type RetryPolicy } from './policy.ts';

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
 * policy's retries are spent; then the last error is thrown as it was.
 */
export async function withRetries<T>(operation: (attempt: number) => Promise<T>, options: WithRetriesOptions): Promise<T> {
  const { policy, host, backoff, signal } = options;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal);
    await backoff?.waitTurn(host, signal);
    try {
      const result = await operation(attempt);
      backoff?.recordSuccess(host);
      return result;
    } catch (error) {
      if (signal?.aborted === true) throw abortError(signal);
      if (!isRetryable(error)) throw error;
      backoff?.recordFailure(host, error);
      if (attempt > policy.retries) throw error;
      const retryAfterMs = retryAfterOf(error);
      const delayMs = backoffDelay(policy, attempt, {
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        ...(options.random === undefined ? {} : { random: options.random }),
      });
      options.logger?.warn(
        { host, attempt, retries: policy.retries, delayMs, code: errorCode(error), error: describeError(error) },
        `${options.what} failed (attempt ${attempt} of ${policy.retries + 1}); retrying in ${formatDelay(delayMs)}`,
      );
      options.onRetry?.({ attempt, delayMs, error });
      await sleep(delayMs, signal);
    }
  }
}

function formatDelay(ms: number): string {
  return ms < 1_000 ? `${ms}ms` : `${(ms / 1_000).toFixed(1)}s`;
}
