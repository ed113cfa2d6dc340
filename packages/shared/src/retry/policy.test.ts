import { describe, expect, it } from 'vitest';
import { DigestMismatchError, MeshmirrorError, RegistryError, StallError } from '../errors.ts';
import { RetryClock } from './retry-clock.ts';
import {
  backoffDelay,
  decideRetry,
  DEFAULT_RETRY_POLICY,
  isRetryable,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  retryAfterOf,
  retryPolicyFromSettings,
  sleep,
  type RetryPolicy,
} from './policy.ts';

const noJitter: RetryPolicy = { ...DEFAULT_RETRY_POLICY, jitter: 0 };

function registryError(status: number, extra: { registryCodes?: string[]; retryAfterMs?: number } = {}): RegistryError {
  return new RegistryError(`status ${status}`, { status, url: 'https://r.example/v2/', ...extra });
}

function systemError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

describe('backoffDelay', () => {
  it('doubles from the base delay and stops at the cap', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((attempt) => backoffDelay(noJitter, attempt));
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it('keeps jittered delays between (1 - jitter) of the computed delay and the delay itself', () => {
    const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, jitter: 0.2 };
    expect(backoffDelay(policy, 3, { random: () => 0 })).toBe(4_000);
    expect(backoffDelay(policy, 3, { random: () => 1 })).toBe(3_200);
    expect(backoffDelay(policy, 3, { random: () => 0.5 })).toBe(3_600);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(policy, 10);
      expect(delay).toBeGreaterThanOrEqual(24_000);
      expect(delay).toBeLessThanOrEqual(30_000);
    }
  });

  it('lets Retry-After win over the computed delay, up to a ceiling', () => {
    expect(backoffDelay(noJitter, 1, { retryAfterMs: 7_000 })).toBe(7_000);
    expect(backoffDelay(noJitter, 6, { retryAfterMs: 500 })).toBe(500);
    expect(backoffDelay(noJitter, 1, { retryAfterMs: 0 })).toBe(0);
    expect(backoffDelay(noJitter, 1, { retryAfterMs: 6 * 3_600_000 })).toBe(MAX_RETRY_AFTER_MS);
    // A policy whose own cap is higher keeps it as the ceiling.
    expect(backoffDelay({ ...noJitter, maxDelayMs: 3_600_000 }, 1, { retryAfterMs: 7_200_000 })).toBe(3_600_000);
  });
});

describe('retryPolicyFromSettings', () => {
  it('retries by time without progress unless a retry count is given', () => {
    expect(retryPolicyFromSettings({ retryDelayMs: 0 })).toEqual(DEFAULT_RETRY_POLICY);
    expect(DEFAULT_RETRY_POLICY.retries).toBeUndefined();
    expect(DEFAULT_RETRY_POLICY.noProgressTimeoutMs).toBe(10 * 60_000);
    expect(retryPolicyFromSettings({ retryDelayMs: 0, imageTimeoutMs: 90_000 })).toEqual({ ...DEFAULT_RETRY_POLICY, noProgressTimeoutMs: 90_000 });
  });

  it('treats a retry delay of 0 as exponential backoff from the default base, as oc-mirror does', () => {
    expect(retryPolicyFromSettings({ retryTimes: 10, retryDelayMs: 0 })).toEqual({ ...DEFAULT_RETRY_POLICY, retries: 10 });
  });

  it('turns a positive retry delay into a fixed pause between attempts', () => {
    const policy = retryPolicyFromSettings({ retryTimes: 3, retryDelayMs: 30_000 });
    expect(policy.retries).toBe(3);
    expect([1, 2, 3].map((attempt) => backoffDelay({ ...policy, jitter: 0 }, attempt))).toEqual([30_000, 30_000, 30_000]);
    const long = retryPolicyFromSettings({ retryTimes: 1, retryDelayMs: 120_000 });
    expect(backoffDelay({ ...long, jitter: 0 }, 1)).toBe(120_000);
  });
});

describe('decideRetry: retries by time without progress', () => {
  const byTime: RetryPolicy = { noProgressTimeoutMs: 10_000, baseDelayMs: 1_000, maxDelayMs: 4_000, factor: 2, jitter: 0 };

  it('keeps retrying while time is left, however many attempts failed', () => {
    expect(decideRetry(byTime, { failures: 1, sinceProgressMs: 0 })).toEqual({ retry: true, delayMs: 1_000 });
    expect(decideRetry(byTime, { failures: 500, sinceProgressMs: 5_000 })).toEqual({ retry: true, delayMs: 4_000 });
  });

  it('never waits past the moment the time runs out, and gives up at or after it', () => {
    expect(decideRetry(byTime, { failures: 9, sinceProgressMs: 8_500 })).toEqual({ retry: true, delayMs: 1_500 });
    expect(decideRetry(byTime, { failures: 9, sinceProgressMs: 9_999 })).toEqual({ retry: true, delayMs: 1 });
    expect(decideRetry(byTime, { failures: 10, sinceProgressMs: 10_000 })).toEqual({ retry: false, reason: 'no-progress' });
    expect(decideRetry(byTime, { failures: 1, sinceProgressMs: 60_000 })).toEqual({ retry: false, reason: 'no-progress' });
    // A Retry-After longer than the time left is cut to it too: one last try when the time runs out.
    expect(decideRetry(byTime, { failures: 1, sinceProgressMs: 7_000, retryAfterMs: 600_000 })).toEqual({ retry: true, delayMs: 3_000 });
  });

  it('also caps attempts when a retry count is given (oc-mirror --retry-times)', () => {
    const capped: RetryPolicy = { ...byTime, retries: 2 };
    expect(decideRetry(capped, { failures: 2, sinceProgressMs: 100 })).toMatchObject({ retry: true });
    expect(decideRetry(capped, { failures: 3, sinceProgressMs: 100 })).toEqual({ retry: false, reason: 'retries' });
    // Whichever comes first.
    expect(decideRetry(capped, { failures: 1, sinceProgressMs: 10_000 })).toEqual({ retry: false, reason: 'no-progress' });
  });

  it('RetryClock: attempts stop exactly when the time without progress passes; a byte of progress restarts the clock', () => {
    let now = 1_000_000;
    const clock = new RetryClock(byTime, { now: () => now });
    // Fail every second: 10 s without progress is reached at the tenth failure.
    const decisions: boolean[] = [];
    for (let i = 0; i < 10; i++) {
      now += 1_000;
      decisions.push(clock.failure().retry);
    }
    expect(decisions).toEqual([true, true, true, true, true, true, true, true, true, false]);
    expect(clock.deadline()).toBe(1_000_000 + 10_000);

    const fresh = new RetryClock(byTime, { now: () => now });
    now += 9_999;
    expect(fresh.failure()).toEqual({ retry: true, delayMs: 1 });
    // One byte: the count and the clock start again.
    fresh.progress();
    expect(fresh.failures).toBe(0);
    now += 9_999;
    expect(fresh.failure()).toEqual({ retry: true, delayMs: 1 });
    expect(fresh.expired()).toBe(false);
    now += 1;
    expect(fresh.expired()).toBe(true);
    expect(fresh.failure()).toEqual({ retry: false, reason: 'no-progress' });
  });

  it('RetryClock: a request that joins a host failing since earlier counts from then, until its first byte', () => {
    let now = 1_000_000;
    const hostFailingSince = now - 8_000;
    const clock = new RetryClock(byTime, { now: () => now });
    expect(clock.deadline(hostFailingSince)).toBe(hostFailingSince + 10_000);
    now += 2_000;
    expect(clock.failure({ hostFailingSince })).toEqual({ retry: false, reason: 'no-progress' });
    clock.progress();
    expect(clock.deadline(hostFailingSince)).toBe(now + 10_000);
  });
});

describe('isRetryable', () => {
  const cases: Array<[string, unknown, boolean]> = [
    ['429 Too Many Requests', registryError(429), true],
    ['500', registryError(500), true],
    ['502', registryError(502), true],
    ['503', registryError(503), true],
    ['504', registryError(504), true],
    ['408', registryError(408), true],
    ['TOOMANYREQUESTS with an odd status', registryError(400, { registryCodes: ['TOOMANYREQUESTS'] }), true],
    ['401 after a refresh', registryError(401), false],
    ['403 DENIED', registryError(403, { registryCodes: ['DENIED'] }), false],
    ['404 BLOB_UNKNOWN', registryError(404, { registryCodes: ['BLOB_UNKNOWN'] }), false],
    ['501', registryError(501), false],
    ['stall', new StallError('https://r.example/v2/x/blobs/y', 30_000), true],
    ['early EOF', new MeshmirrorError('MM_TRUNCATED', 'connection ended early'), true],
    ['digest mismatch', new DigestMismatchError('sha256:aa', 'sha256:bb', 'blob'), false],
    ['abort', new MeshmirrorError('MM_ABORTED', 'aborted'), false],
    ['bad config', new MeshmirrorError('MM_CONFIG_INVALID', 'bad'), false],
    ['bad auth file', new MeshmirrorError('MM_AUTHFILE_INVALID', 'bad'), false],
    ['untrusted TLS certificate', new MeshmirrorError('MM_TLS', 'self-signed'), false],
    ['ECONNRESET', systemError('ECONNRESET'), true],
    ['EPIPE', systemError('EPIPE'), true],
    ['ECONNREFUSED', systemError('ECONNREFUSED'), true],
    ['ETIMEDOUT', systemError('ETIMEDOUT'), true],
    ['undici socket error', systemError('UND_ERR_SOCKET'), true],
    ['undici connect timeout', systemError('UND_ERR_CONNECT_TIMEOUT'), true],
    ['undici headers timeout', systemError('UND_ERR_HEADERS_TIMEOUT'), true],
    ['undici body timeout', systemError('UND_ERR_BODY_TIMEOUT'), true],
    ['unknown host', systemError('ENOTFOUND'), false],
    ['network error wrapping a reset', new MeshmirrorError('MM_NETWORK', 'x', { cause: systemError('ECONNRESET') }), true],
    ['network error wrapping an unknown host', new MeshmirrorError('MM_NETWORK', 'x', { cause: systemError('ENOTFOUND') }), false],
    ['an error that says it is retryable', new MeshmirrorError('MM_REGISTRY', 'x', { data: { retryable: true } }), true],
    ['a plain TypeError', new TypeError('x is undefined'), false],
    ['a string', 'boom', false],
    ['undefined', undefined, false],
  ];
  it.each(cases)('%s → %s', (_name, error, expected) => {
    expect(isRetryable(error)).toBe(expected);
  });
});

describe('Retry-After', () => {
  it('parses delta seconds and HTTP dates', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(['5'], now)).toBe(5_000);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('is found on a registry error and through causes', () => {
    const limited = registryError(429, { retryAfterMs: 9_000 });
    expect(retryAfterOf(limited)).toBe(9_000);
    expect(retryAfterOf(new MeshmirrorError('MM_NETWORK', 'wrapped', { cause: limited }))).toBe(9_000);
    expect(retryAfterOf(registryError(503))).toBeUndefined();
  });
});

describe('sleep', () => {
  it('rejects with MM_ABORTED as soon as the signal fires', async () => {
    const controller = new AbortController();
    const started = performance.now();
    const sleeping = sleep(60_000, controller.signal);
    controller.abort();
    await expect(sleeping).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('rejects at once for a signal that already fired', async () => {
    await expect(sleep(10, AbortSignal.abort())).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });

  it('resolves after the delay', async () => {
    const started = performance.now();
    await sleep(20);
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
  });
});
