import { describe, expect, it } from 'vitest';
import { GroupSync } from './group-sync.ts';

/** A sync the test finishes by hand: each call is recorded with its own resolve and reject. */
function manualSyncs(): { calls: Array<{ resolve: () => void; reject: (err: Error) => void }>; syncOnce: () => Promise<void> } {
  const calls: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  return {
    calls,
    syncOnce: () => new Promise<void>((resolve, reject) => void calls.push({ resolve, reject })),
  };
}

/** Lets every settled promise's handlers run. */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('GroupSync', () => {
  it('runs one sync for the callers that arrive while another runs, after it, and never hands a caller a sync that started before it called', async () => {
    const { calls, syncOnce } = manualSyncs();
    const group = new GroupSync(syncOnce);
    const settled: string[] = [];
    const first = group.sync().then(() => settled.push('first'));
    await drain();
    expect(calls).toHaveLength(1);
    // Five callers while the first sync runs: their changes may postdate its start.
    const later = Array.from({ length: 5 }, (_, i) => group.sync().then(() => settled.push(`later-${i}`)));
    await drain();
    expect(calls).toHaveLength(1);
    calls[0]!.resolve();
    await first;
    await drain();
    expect(settled).toEqual(['first']);
    // The shared second sync started only once the first was over.
    expect(calls).toHaveLength(2);
    calls[1]!.resolve();
    await Promise.all(later);
    expect(settled).toEqual(['first', 'later-0', 'later-1', 'later-2', 'later-3', 'later-4']);
    expect(calls).toHaveLength(2);
  });

  it('gives a failed sync to everyone who shared it, and the next caller a sync of its own', async () => {
    const { calls, syncOnce } = manualSyncs();
    const group = new GroupSync(syncOnce);
    const first = group.sync();
    await drain();
    const shared = [group.sync(), group.sync()];
    calls[0]!.resolve();
    await first;
    await drain();
    calls[1]!.reject(new Error('EIO'));
    for (const waiting of shared) await expect(waiting).rejects.toThrow('EIO');
    const next = group.sync();
    await drain();
    expect(calls).toHaveLength(3);
    calls[2]!.resolve();
    await expect(next).resolves.toBeUndefined();
  });

  it('starts at once when no sync is running', async () => {
    const { calls, syncOnce } = manualSyncs();
    const group = new GroupSync(syncOnce);
    const one = group.sync();
    await drain();
    calls[0]!.resolve();
    await one;
    const two = group.sync();
    await drain();
    expect(calls).toHaveLength(2);
    calls[1]!.resolve();
    await two;
  });
});
