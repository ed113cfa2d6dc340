/**
 * A byte-rate ceiling shared by every transfer of one process (`--limit-upstream`): each chunk read
 * takes its bytes from a token bucket; a reader that overdraws it waits until the debt is paid,
 * which stops it reading, so TCP slows the sender. Over any stretch of time the bytes taken stay
 * under `rate × seconds + burst`.
 */
import { sleep } from '@meshmirror/shared';

export interface ByteRateLimiter {
  readonly bytesPerSecond: number;
  /** Takes `bytes`; resolves once they fit under the rate (at once while the bucket has them). */
  take(bytes: number, signal?: AbortSignal): Promise<void>;
}

export function createRateLimiter(bytesPerSecond: number, options: { burstBytes?: number; now?: () => number } = {}): ByteRateLimiter {
  if (!(bytesPerSecond > 0)) throw new RangeError(`a rate limit must be above 0 bytes/s, got ${bytesPerSecond}`);
  const now = options.now ?? (() => performance.now());
  // A tenth of a second of traffic, at least one socket read, so short bursts do not stutter.
  const capacity = options.burstBytes ?? Math.max(64 * 1024, bytesPerSecond / 10);
  let tokens = capacity;
  let last = now();
  return {
    bytesPerSecond,
    async take(bytes, signal) {
      const at = now();
      tokens = Math.min(capacity, tokens + ((at - last) / 1000) * bytesPerSecond);
      last = at;
      tokens -= bytes;
      if (tokens >= 0) return;
      await sleep((-tokens / bytesPerSecond) * 1000, signal);
    },
  };
}

/** One limiter per registry host (`--limit-registry HOST=RATE`); undefined when there are none. */
export function registryLimiters(limits: ReadonlyArray<{ host: string; bytesPerSecond: number }> | undefined): Map<string, ByteRateLimiter> | undefined {
  if (limits === undefined || limits.length === 0) return undefined;
  return new Map(limits.map((l) => [l.host, createRateLimiter(l.bytesPerSecond)]));
}
