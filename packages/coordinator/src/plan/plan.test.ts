import { describe, expect, it } from 'vitest';
import type { BlobHolding, Digest } from '@meshmirror/shared';
import { digest, planOf } from './plan-fixture.ts';
import { splitIntoPieces } from './plan.ts';

const MiB = 1024 * 1024;

describe('splitIntoPieces', () => {
  it('splits blobs above the piece size into even pieces that cover each blob exactly', () => {
    const split = splitIntoPieces(planOf([100, 1_000, 250]), [], 300);
    const byBlob = new Map<Digest, Array<[number, number]>>();
    for (const t of split.tasks) byBlob.set(t.digest, [...(byBlob.get(t.digest) ?? []), [t.offset, t.length]]);
    const sorted = (d: Digest) => [...(byBlob.get(d) ?? [])].sort((a, b) => a[0] - b[0]);
    expect(sorted(digest(1))).toEqual([[0, 100]]);
    expect(sorted(digest(2))).toEqual([
      [0, 250],
      [250, 250],
      [500, 250],
      [750, 250],
    ]);
    expect(sorted(digest(3))).toEqual([[0, 250]]);
    expect(split).toMatchObject({ heldBytes: 0, resumedBytes: 0, missingBytes: 1_350 });
  });

  it('orders the tasks: those under a MiB first (round trips decide their time), then longest first, so a run ends on its small pieces', () => {
    const split = splitIntoPieces(planOf([10, 5 * MiB, 700, 3 * MiB, 1]), [], 2 * MiB);
    // 5 MiB in three pieces of 1,747,627 / 1,747,627 / 1,747,626 bytes, 3 MiB in two of 1.5 MiB.
    expect(split.tasks.map((t) => t.length)).toEqual([700, 10, 1, 1_747_627, 1_747_627, 1_747_626, 1.5 * MiB, 1.5 * MiB]);
  });

  it('skips held blobs and keeps the boundaries and committed bytes of partial pieces', () => {
    const holdings: BlobHolding[] = [
      { digest: digest(1), held: true, pieces: [] },
      { digest: digest(2), held: false, pieces: [{ offset: 400, length: 300, committed: 120 }] },
    ];
    const split = splitIntoPieces(planOf([100, 1_000]), holdings, 500);
    expect(split.tasks.map((t) => [t.digest, t.offset, t.length]).sort((a, b) => Number(a[1]) - Number(b[1]))).toEqual([
      [digest(2), 0, 400],
      [digest(2), 400, 300],
      [digest(2), 700, 300],
    ]);
    expect(split).toMatchObject({ heldBytes: 100, resumedBytes: 120, missingBytes: 880 });
  });
});
