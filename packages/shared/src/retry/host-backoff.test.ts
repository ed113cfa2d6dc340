import { afterEach, describe, expect, it, vi } from 'vitest';
import { MeshmirrorError, RegistryError } from '../errors.ts';
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

  it('unwinds the backoff of an outage while the host answers, so a later hiccup costs a short pause', () => {
    const clock = manualClock();
    const backoff = new HostBackoff(policy, { now: clock.now, random: () => 0 });
    // Down for a while: probes at the end of each pause, 1, 2, 4, 8, 16 s.
    for (let i = 0; i < 5; i++) {
      backoff.recordFailure('quay.example', new MeshmirrorError('MM_NETWORK', 'connection refused'));
      clock.advance(backoff.pauseRemaining('quay.example'));
    }
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(32_000);
    clock.advance(32_000);
    // Back: it answers, and one failure at once still finds the host deep in backoff (it may be flapping).
    backoff.recordSuccess('quay.example');
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(32_000);
    clock.advance(32_000);
    backoff.recordSuccess('quay.example');
    // The success and 4 s of answering take five of its six levels: the next hiccup pauses 2 s, not 32 s.
    clock.advance(4_000);
    backoff.recordFailure('quay.example', unavailable());
    expect(backoff.pauseRemaining('quay.example')).toBe(2_000);
    clock.advance(2_000);
    backoff.recordSuccess('quay.example');
    // A minute of answering: back to the first pause.
    clock.advance(60_000);
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
    expect(backoff.failedRequests('quay.example')).toBe(0);
  });

  it('ignores an answer to a request sent before the host started failing', () => {
    const backoff = new HostBackoff(policy);
    const early = backoff.ticket('quay.example');
    backoff.recordFailure('quay.example', refused());
    const probe = backoff.ticket('quay.example');
    // A response that was already on its way when the host went away: the outage goes on.
    backoff.recordSuccess('quay.example', early);
    expect(backoff.isFailing('quay.example')).toBe(true);
    expect(backoff.pauseRemaining('quay.example')).toBeGreaterThan(0);
    // The probe, sent during the outage, is the host answering again.
    backoff.recordSuccess('quay.example', probe);
    expect(backoff.isFailing('quay.example')).toBe(false);
    // A later episode is a new one: the old probe's ticket no longer ends it.
    backoff.recordFailure('quay.example', refused());
    backoff.recordSuccess('quay.example', probe);
    expect(backoff.isFailing('quay.example')).toBe(true);
  });

  it('counts every transient failure per host, in flight together or not, for the reports', () => {
    const backoff = new HostBackoff(policy);
    backoff.recordFailure('quay.example', refused());
    backoff.recordFailure('quay.example', refused());
    backoff.recordSuccess('quay.example');
    backoff.recordFailure('quay.example', refused());
    backoff.recordFailure('other.example', refused());
    expect(backoff.failedRequests('quay.example')).toBe(3);
    expect(backoff.failedRequests('other.example')).toBe(1);
    expect(backoff.failedRequests('never.example')).toBe(0);
  });

  it('makes waitTurn wait out the pause and lets an abort end the wait', async () => {
    const backoff = new HostBackoff({ ...policy, baseDelayMs: 60 });
    backoff.recordFailure('r.example', unavailable());
    const started = performance.now();
    await backoff.waitTurn('r.example');
    expect(performance.now() - started).toBeGreaterThanOrEqual(40);

    backoff.recordFailure('r.example', unavailable(60_000));
    const controller = new AbortController();
    const waiting = backoff.waitTurn('r.example', { signal: controller.signal });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });
});

/** What the transport makes of a refused connection. */
function refused(): MeshmirrorError {
  return new MeshmirrorError('MM_NETWORK', 'GET http://r.example/v2/: connection refused by r.example', { data: { cause: 'ECONNREFUSED' } });
}

describe('HostBackoff: a host that is down', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const byTime: RetryPolicy = { noProgressTimeoutMs: 10_000, baseDelayMs: 1_000, maxDelayMs: 4_000, factor: 2, jitter: 0 };

  it('is probed by one caller at a time; the others go when the probe gets an answer', async () => {
    vi.useFakeTimers();
    const backoff = new HostBackoff(byTime);
    backoff.recordFailure('r.example', refused());
    const started = Date.now();
    expect(backoff.troubles()).toEqual([{ host: 'r.example', failingSince: started, nextTryAt: started + 1_000, unreachable: true, code: 'MM_NETWORK' }]);
    const granted: number[] = [];
    for (const i of [0, 1, 2, 3, 4]) void backoff.waitTurn('r.example').then(() => granted.push(i));
    await vi.advanceTimersByTimeAsync(999);
    expect(granted).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(granted).toHaveLength(1);
    // The probe is refused too: the pause doubles, and still only one caller goes after it.
    backoff.recordFailure('r.example', refused());
    await vi.advanceTimersByTimeAsync(1_999);
    expect(granted).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(granted).toHaveLength(2);
    // The host answers: every caller still waiting goes at once.
    backoff.recordSuccess('r.example');
    await vi.advanceTimersByTimeAsync(0);
    expect(granted).toHaveLength(5);
    expect(backoff.troubles()).toEqual([]);
  });

  it('lets callers that queued elsewhere (for a slot) wait without the probe, then take it one at a time', async () => {
    vi.useFakeTimers();
    const backoff = new HostBackoff(byTime);
    backoff.recordFailure('r.example', refused());
    const waited: number[] = [];
    for (const i of [0, 1, 2]) void backoff.waitTurn('r.example', { claim: false }).then(() => waited.push(i));
    await vi.advanceTimersByTimeAsync(1_000);
    // All three saw the pause end; none took the probe by waiting.
    expect(waited).toHaveLength(3);
    // As their requests go out, the first takes the probe and the others must wait for its answer.
    expect([backoff.tryTurn('r.example'), backoff.tryTurn('r.example'), backoff.tryTurn('r.example')]).toEqual([true, false, false]);
    // A host that started failing while a request queued sends it back to wait.
    expect(backoff.tryTurn('other.example')).toBe(true);
    backoff.recordFailure('other.example', refused());
    expect(backoff.tryTurn('other.example')).toBe(false);
  });

  it('lets every caller go after the pause when the host answers with errors (it is up)', async () => {
    vi.useFakeTimers();
    const backoff = new HostBackoff(byTime);
    backoff.recordFailure('r.example', unavailable());
    expect(backoff.troubles()[0]).toMatchObject({ unreachable: false, code: 'MM_REGISTRY' });
    const granted: number[] = [];
    for (const i of [0, 1, 2]) void backoff.waitTurn('r.example').then(() => granted.push(i));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(granted).toHaveLength(3);
  });

  it('gives the caller back false when its own time runs out before its turn', async () => {
    vi.useFakeTimers();
    const backoff = new HostBackoff({ ...byTime, baseDelayMs: 60_000, maxDelayMs: 60_000 });
    backoff.recordFailure('r.example', refused());
    let turn: boolean | undefined;
    void backoff.waitTurn('r.example', { until: Date.now() + 500 }).then((t) => (turn = t));
    await vi.advanceTimersByTimeAsync(499);
    expect(turn).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(turn).toBe(false);
  });

  it('withRetries keeps probing until the time without progress is spent, then throws the last error', async () => {
    vi.useFakeTimers();
    const backoff = new HostBackoff(byTime);
    const attempts: number[] = [];
    const started = Date.now();
    const outcome = withRetries(
      async () => {
        attempts.push(Date.now() - started);
        throw refused();
      },
      { policy: byTime, host: 'r.example', backoff, what: 'GET manifest' },
    ).then(
      () => 'resolved',
      (error: unknown) => ({ error, at: Date.now() - started }),
    );
    await vi.advanceTimersByTimeAsync(20_000);
    // 1 s, 2 s, 4 s (the cap) apart; the next pause would end past 10 s, so it stops at 10 s.
    expect(attempts).toEqual([0, 1_000, 3_000, 7_000]);
    expect(await outcome).toMatchObject({ at: 10_000, error: { code: 'MM_NETWORK' } });
  });

  it('withRetries: a request joining a host that has been down longer than the policy waits fails at once', async () => {
    vi.useFakeTimers();
    const backoff = new HostBackoff(byTime);
    backoff.recordFailure('r.example', refused());
    await vi.advanceTimersByTimeAsync(11_000);
    // The latest probe is refused as well: the host has been down for 11 s, and is paused again.
    backoff.recordFailure('r.example', refused());
    let calls = 0;
    const error = await withRetries(
      async () => {
        calls++;
        return 'answer';
      },
      { policy: byTime, host: 'r.example', backoff, what: 'GET manifest' },
    ).catch((e: unknown) => e);
    expect(calls).toBe(0);
    expect(error).toMatchObject({ code: 'MM_NETWORK', message: expect.stringContaining('r.example has been failing for 11.0s') as unknown });
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
    expect(calls).toBe((fast.retries ?? 0) + 1);
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
