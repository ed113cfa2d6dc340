import { describe, expect, it } from 'vitest';
import { createRateLimiter } from './rate-limiter.ts';

describe('createRateLimiter', () => {
  it('lets a burst through at once, then holds readers to the rate', async () => {
    let clock = 0;
    const limiter = createRateLimiter(1000, { burstBytes: 100, now: () => clock });
    const started = performance.now();
    await limiter.take(100); // the burst
    expect(performance.now() - started).toBeLessThan(20);
    // 50 bytes in debt at 1000 B/s is a 50 ms wait.
    const waited = performance.now();
    await limiter.take(50);
    expect(performance.now() - waited).toBeGreaterThanOrEqual(45);
    // Time that passed refills the bucket (to its burst, no more).
    clock += 10_000;
    const refilled = performance.now();
    await limiter.take(50);
    expect(performance.now() - refilled).toBeLessThan(20);
  });

  it('stops waiting when aborted', async () => {
    const limiter = createRateLimiter(1, { burstBytes: 1, now: () => 0 });
    await limiter.take(1);
    const controller = new AbortController();
    const waiting = limiter.take(1_000_000, controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });

  it('refuses a rate of 0', () => {
    expect(() => createRateLimiter(0)).toThrow('above 0');
  });
});
