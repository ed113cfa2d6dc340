import { describe, expect, it } from 'vitest';
import { RegistryError } from '../errors.ts';
import { HostBackoff } from './host-backoff.ts';
import type { RetryPolicy } from './policy.ts';
import { withRetries, type RetryAttemptInfo } from './retry-loop.ts';

const policy: RetryPolicy = { retries: 3, baseDelayMs: 1_000, maxDelayMs: 60_000, factor: 2, jitter: 0 };

function unavailable(retryAfterMs?: number): RegistryError {
  return new RegistryError('503 Service Unavailable', {
    status: 503,
    url: 'https://quay.example/v2/',
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

function notFound(): RegistryError {
  return new RegistryError('404', { status: 404, url: 'https://quay.example/v2/' });
}

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let now = start;
  return { now: () => now, advance: (ms) => (now += ms) };
}

describe('HostBackoff', () => {
  it('pauses a failing host, deeper with each failure episode, and decays after successes', () => {
    const clock = manualClock();
    const backoff = new HostBackoff(policy, { now: clock.now, random: () => 0 });
    expect(backoff.pauseRemaining('quay.example')).toBe(0);

    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(1_000);
    // Requests that were in flight together fail together: one episode, no deeper pause.
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(1_000);

    clock.advance(1_000);
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(2_000);

    clock.advance(2_000);
    backoff.recordSuccess('quay.example');
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(2_000);

    clock.advance(2_000);
    backoff.recordSuccess('quay.example');
    backoff.recordSuccess('quay.example');
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(1_000);
  });

  it('keeps every caller away until a Retry-After has passed', () => {
    const clock = manualClock();
    const backoff = new HostBackoff(policy, { now: clock.now, random: () => 0 });
    backoff.recordFailure('quay.example', unavailable(30_000));
    expect(backoff.pauseRemaining('quay.example')).toBe(30_000);
    // A success of a request that was already running does not lift the promised pause.
    backoff.recordSuccess('quay.example');
    expect(backoff.pauseRemaining('quay.example')).toBe(30_000);
    expect(backoff.pauseRemaining('other.example')).toBe(0);
  });

  it('ignores failures that say nothing about the host', () => {
    const backoff = new HostBackoff(policy);
    backoff.recordFailure('quay.example', notFound());
    expect(backoff.pauseRemaining('quay.example')).toBe(0);
  });

  it('makes waitTurn wait out the pause and lets an abort end the wait', async () => {
    const backoff = new HostBackoff({ ...policy, baseDelayMs: 60 });
    backoff.recordFailure('r.example', unavailable());
    const started = performance.now();
    await backoff.waitTurn('r.example');
    expect(performance.now() - started).toBeGreaterThanOrEqual(40);

    backoff.recordFailure('r.example', unavailable(60_000));
    const controller = new AbortController();
    const waiting = backoff.waitTurn('r.example', controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });
});

describe('withRetries', () => {
  const fast: RetryPolicy = { retries: 3, baseDelayMs: 1, maxDelayMs: 5, factor: 2, jitter: 0 };

  it('retries transient failures and returns the first success', async () => {
    const seen: RetryAttemptInfo[] = [];
    let calls = 0;
    const result = await withRetries(
      async (attempt) => {
        calls++;
        if (attempt < 3) throw unavailable();
        return 'manifest';
      },
      { policy: fast, host: 'r.example', what: 'GET manifest', onRetry: (info) => seen.push(info) },
    );
    expect(result).toBe('manifest');
    expect(calls).toBe(3);
    expect(seen.map((s) => [s.attempt, s.delayMs])).toEqual([
      [1, 1],
      [2, 2],
    ]);
  });

  it('gives up at once on an answer that will not change', async () => {
    let calls = 0;
    const failing = withRetries(
      async () => {
        calls++;
        throw notFound();
      },
      { policy: fast, host: 'r.example', what: 'GET manifest' },
    );
    await expect(failing).rejects.toMatchObject({ status: 404 });
    expect(calls).toBe(1);
  });

  it('throws the last error when the retries are spent', async () => {
    let calls = 0;
    const failing = withRetries(
      async () => {
        calls++;
        throw unavailable();
      },
      { policy: fast, host: 'r.example', what: 'GET manifest' },
    );
    await expect(failing).rejects.toMatchObject({ status: 503 });
    expect(calls).toBe(fast.retries + 1);
  });

  it('stops waiting when aborted', async () => {
    const controller = new AbortController();
    const failing = withRetries(
      async () => {
        throw unavailable(60_000);
      },
      { policy: fast, host: 'r.example', what: 'GET manifest', signal: controller.signal, onRetry: () => controller.abort() },
    );
    await expect(failing).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });
});
