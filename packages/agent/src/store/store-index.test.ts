import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Digest, type Digest } from '@meshmirror/shared';
import { StoreIndex, type PieceRecord } from './store-index.ts';

const blob = (name: string): Digest => sha256Digest(Buffer.from(name));

function piece(digest: Digest, offset: number, committed: number, sha256?: Digest): PieceRecord {
  return { digest, blobSize: 300, offset, length: 100, committed, ...(sha256 === undefined ? {} : { sha256 }) };
}

/**
 * The index keeps what it read of each blob in memory. Every answer here is checked against a
 * second index opened afresh on the same database, which can only have read it from disk.
 */
describe('StoreIndex', () => {
  let dir: string;
  let index: StoreIndex;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-index-'));
    index = new StoreIndex(join(dir, 'index'));
    await index.open();
  });

  afterEach(async () => {
    await index.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  /** What a fresh index reads from disk for `digests` (this one is closed and opened again after). */
  async function fromDisk(digests: Digest[]): Promise<Array<{ held: unknown; pieces: PieceRecord[] }>> {
    await index.close();
    const fresh = new StoreIndex(join(dir, 'index'));
    await fresh.open();
    try {
      return await Promise.all(digests.map(async (d) => ({ held: await fresh.getHeld(d), pieces: await fresh.piecesOf(d) })));
    } finally {
      await fresh.close();
      await index.open();
    }
  }

  async function inMemory(digests: Digest[]): Promise<Array<{ held: unknown; pieces: PieceRecord[] }>> {
    return Promise.all(digests.map(async (d) => ({ held: await index.getHeld(d), pieces: await index.piecesOf(d) })));
  }

  it('answers reads after every kind of write as the database on disk does', async () => {
    const [a, b, c] = [blob('a'), blob('b'), blob('c')];
    // Read first, so each blob is in memory (as not held, no pieces) before it is written.
    expect(await inMemory([a, b, c])).toEqual([
      { held: undefined, pieces: [] },
      { held: undefined, pieces: [] },
      { held: undefined, pieces: [] },
    ]);
    await index.putPiece(piece(a, 200, 0));
    await index.putPiece(piece(a, 0, 50));
    await index.putPiece(piece(a, 100, 100, blob('a1')));
    await index.putPiece(piece(a, 0, 100, blob('a0')));
    await index.putPiece(piece(b, 0, 10));
    await index.putPiece(piece(b, 100, 20));
    await index.deletePiece(b, 0);
    await index.putHeld(c, { size: 7 }, 1);
    expect(await inMemory([a, b, c])).toEqual([
      { held: undefined, pieces: [piece(a, 0, 100, blob('a0')), piece(a, 100, 100, blob('a1')), piece(a, 200, 0)] },
      { held: undefined, pieces: [piece(b, 100, 20)] },
      { held: { size: 7 }, pieces: [] },
    ]);
    expect(await index.getPiece(a, 100)).toEqual(piece(a, 100, 100, blob('a1')));

    await index.markHeld(a, { size: 300 }, await index.piecesOf(a), 2);
    await index.deletePieces([piece(b, 100, 20)]);
    await index.deleteHeldBlobs([c]);
    const expected = [
      { held: { size: 300 }, pieces: [] },
      { held: undefined, pieces: [] },
      { held: undefined, pieces: [] },
    ];
    expect(await inMemory([a, b, c])).toEqual(expected);
    expect(await index.getPiece(a, 0)).toBeUndefined();
    expect(await fromDisk([a, b, c])).toEqual(expected);
    expect(await inMemory([a, b, c])).toEqual(expected);
  });

  it('reads afresh after being closed: another process may have written the database meanwhile', async () => {
    const d = blob('d');
    expect(await index.getHeld(d)).toBeUndefined();
    expect(await index.piecesOf(d)).toEqual([]);
    await index.close();
    const other = new StoreIndex(join(dir, 'index'));
    await other.open();
    await other.putPiece(piece(d, 0, 30));
    await other.putHeld(d, { size: 300 }, 3);
    await other.close();
    await index.open();
    expect(await index.getHeld(d)).toEqual({ size: 300 });
    expect(await index.piecesOf(d)).toEqual([piece(d, 0, 30)]);
  });

  it('answers as the disk does when it keeps fewer blobs in memory than it is asked about', async () => {
    await index.close();
    index = new StoreIndex(join(dir, 'index'), { cachedBlobs: 8 });
    await index.open();
    const many = Array.from({ length: 40 }, (_, i) => blob(`many-${i}`));
    const expected = (i: number): { held: unknown; pieces: PieceRecord[] } => ({
      held: i % 3 === 0 ? { size: 300 } : undefined,
      pieces: i % 3 === 1 ? [piece(many[i]!, 0, i)] : [],
    });
    // Reads and writes interleaved, so blobs leave memory between being read and being written.
    for (const [i, d] of many.entries()) {
      await index.getHeld(d);
      await index.piecesOf(many[(i * 7) % many.length]!);
      if (i % 3 === 0) await index.putHeld(d, { size: 300 }, 5);
      if (i % 3 === 1) await index.putPiece(piece(d, 0, i));
    }
    expect(await inMemory(many)).toEqual(many.map((_, i) => expected(i)));
    expect(await fromDisk(many)).toEqual(many.map((_, i) => expected(i)));
  });
});
