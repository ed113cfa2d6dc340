import { afterEach, describe, expect, it, vi } from 'vitest';
import { HostBackoff, MeshmirrorError } from '@meshmirror/shared';
import { createProgressReporter, HostWaits, waitingText } from './progress.ts';

const refused = (): MeshmirrorError => new MeshmirrorError('MM_NETWORK', 'connection refused by quay.example', { data: { cause: 'ECONNREFUSED' } });
const policy = { noProgressTimeoutMs: 600_000, baseDelayMs: 1_000, maxDelayMs: 30_000, factor: 2, jitter: 0 };

describe('the progress line while a host is failing', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('says which host the run waits for, for how long, and when it tries again', () => {
    const now = 1_000_000;
    expect(waitingText([{ host: 'quay.example', failingSince: now - 130_000, nextTryAt: now + 20_000, unreachable: true, code: 'MM_NETWORK' }], now)).toBe(
      'waiting for quay.example: unreachable for 2m10s, next try in 20s',
    );
    expect(waitingText([{ host: 'r.example', failingSince: now - 5_000, nextTryAt: now, unreachable: false, code: 'MM_REGISTRY' }], now)).toBe(
      'waiting for r.example: failing (MM_REGISTRY) for 5s, trying now',
    );
  });

  it('merges its own backoff with what agents report, and forgets a report once its next try is long past', () => {
    let now = 1_000_000;
    const backoff = new HostBackoff(policy, { now: () => now });
    const waits = new HostWaits(
      () => backoff.troubles(),
      () => now,
    );
    backoff.recordFailure('quay.example', refused());
    // A single failure a moment ago is not worth a mention.
    expect(waits.current()).toEqual([]);
    now += 3_000;
    expect(waits.current().map((t) => t.host)).toEqual(['quay.example']);
    waits.noteRetry({
      type: 'retry',
      digest: 'sha256:aa',
      offset: 0,
      attempt: 4,
      delayMs: 8_000,
      code: 'MM_NETWORK',
      message: 'refused',
      host: 'farm.example',
      failingForMs: 60_000,
      unreachable: true,
    });
    expect(waitingText(waits.current(), now)).toBe(
      'waiting for farm.example: unreachable for 1m, next try in 8s; waiting for quay.example: unreachable for 3s, trying now',
    );
    backoff.recordSuccess('quay.example');
    now += 8_000 + 5_001;
    expect(waits.current()).toEqual([]);
  });

  it('prints the waiting clause on the plain progress lines, and keeps printing while nothing moves', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const stream = { isTTY: false, write: (text: string) => lines.push(text) } as unknown as NodeJS.WriteStream;
    const backoff = new HostBackoff(policy);
    const progress = createProgressReporter({ stream, mode: 'lines', lineIntervalMs: 5_000, hostTroubles: () => backoff.troubles() });
    progress.update({ phase: 'fetching', bytesTotal: 1_000, imagesTotal: 8 });
    backoff.recordFailure('quay.example', refused());
    await vi.advanceTimersByTimeAsync(10_000);
    progress.stop();
    const waiting = lines.filter((l) => l.includes('waiting for quay.example: unreachable for'));
    expect(waiting.length).toBeGreaterThanOrEqual(2);
    expect(waiting[0]).toMatch(/; waiting for quay\.example: unreachable for 5s, (next try in \d+s|trying now)\n$/);
  });
});
