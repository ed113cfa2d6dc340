import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { digestHex, sha256Digest, silentLogger, type Digest } from '@meshmirror/shared';
import { createBlobStore, type BlobStore } from './blob-store.ts';
import { StoreIndex, type PieceRecord } from './store-index.ts';
import { selectBlobs, selectPartial, selectUploads } from './store-prune.ts';

const DAY = 24 * 60 * 60 * 1000;
const d = (n: number): Digest => `sha256:${String(n).padStart(64, '0')}`;

describe('prune selection', () => {
  it('removes held blobs last used before the cutoff, keeps the rest, and keeps (to stamp) blobs without a time', () => {
    const held = [
      { digest: d(1), size: 10, usedAt: 100 },
      { digest: d(2), size: 20, usedAt: 200 },
      { digest: d(3), size: 30, usedAt: undefined },
      { digest: d(4), size: 40, usedAt: 199 },
    ];
    const s = selectBlobs(held, 200);
    expect(s.remove.map((b) => b.digest)).toEqual([d(1), d(4)]);
    expect(s.keep.map((b) => b.digest)).toEqual([d(2), d(3)]);
    expect(s.unstamped.map((b) => b.digest)).toEqual([d(3)]);
  });

  it('removes a partial file last written before the cutoff, or one with only empty pieces; otherwise forgets only its empty pieces', () => {
    const piece = (offset: number, committed: number, finished = false): PieceRecord => ({
      digest: d(9),
      blobSize: 300,
      offset,
      length: 100,
      committed,
      ...(finished ? { sha256: d(8) } : {}),
    });
    const pieces = [piece(0, 100, true), piece(100, 0), piece(200, 40)];
    expect(selectPartial(pieces, 50, 100)).toEqual({ removeFile: true, forget: pieces });
    expect(selectPartial(pieces, 100, 100)).toEqual({ removeFile: false, forget: [pieces[1]] });
    expect(selectPartial([piece(0, 0), piece(100, 0)], 500, 100).removeFile).toBe(true);
  });

  it('removes upload sessions saved before the cutoff and keeps (to stamp) those without a time', () => {
    const s = selectUploads(
      [
        ['r/a@x', { url: 'u1', at: 5 }],
        ['r/b@x', { url: 'u2' }],
        ['r/c@x', { url: 'u3', at: 10 }],
      ],
      10,
    );
    expect(s).toEqual({ remove: ['r/a@x'], keep: ['r/b@x', 'r/c@x'], unstamped: [['r/b@x', { url: 'u2' }]] });
  });
});

describe('BlobStore.prune', () => {
  let dir: string;
  let store: BlobStore;
  const now = Date.now();
  const longAgo = now - 40 * DAY;

  async function reopen(clock: () => number): Promise<BlobStore> {
    await store.close();
    store = createBlobStore({ dir, logger: silentLogger(), now: clock });
    await store.open();
    return store;
  }

  async function put(bytes: Buffer): Promise<Digest> {
    const digest = sha256Digest(bytes);
    await store.putBlob(digest, bytes);
    return digest;
  }

  const heldFiles = async (): Promise<string[]> => (await readdir(join(dir, 'blobs', 'sha256'))).sort();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-prune-'));
    store = createBlobStore({ dir, logger: silentLogger(), now: () => longAgo });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('notes a blob used when it is written and when it is read, so only what nobody used within the cutoff goes', async () => {
    const unused = await put(randomBytes(1000));
    const readLater = await put(randomBytes(2000));
    const askedLater = await put(randomBytes(3000));
    await reopen(() => now);
    const fresh = await put(randomBytes(4000));
    (await store.openBlob(readLater)).destroy();
    expect(await store.has(askedLater)).toBe(true);

    const dry = await store.prune({ usedBefore: now - 30 * DAY, dryRun: true });
    expect(dry.blobs).toEqual({ removed: { count: 1, bytes: 1000 }, kept: { count: 3, bytes: 9000 }, unstamped: 0 });
    expect(await heldFiles()).toHaveLength(4);

    const report = await store.prune({ usedBefore: now - 30 * DAY });
    expect(report).toEqual(dry);
    expect(await heldFiles()).toEqual([readLater, askedLater, fresh].map(digestHex).sort());
    expect(await store.has(unused)).toBe(false);
    expect(await store.has(readLater)).toBe(true);
  });

  it('a blob held before use was noted counts as used by the first prune, which stamps it; a repaired blob gets no time', async () => {
    const old = await put(randomBytes(500));
    await store.close();
    // As an older meshmirror left it: held, with no note of use.
    const index = new StoreIndex(join(dir, 'index'));
    await index.open();
    await index.deleteUsedTimes([old]);
    await index.close();
    // A blob file that lost its held mark (a crash between the rename and the mark) is adopted on open.
    const adopted = randomBytes(700);
    await writeFile(join(dir, 'blobs', 'sha256', digestHex(sha256Digest(adopted))), adopted);
    store = createBlobStore({ dir, logger: silentLogger(), now: () => now });
    await store.open();

    const first = await store.prune({ usedBefore: now - DAY });
    expect(first.blobs).toEqual({ removed: { count: 0, bytes: 0 }, kept: { count: 2, bytes: 1200 }, unstamped: 2 });
    // A day later by the store's clock, both were last used when the first prune stamped them.
    const second = await store.prune({ usedBefore: now + 1 });
    expect(second.blobs).toEqual({ removed: { count: 2, bytes: 1200 }, kept: { count: 0, bytes: 0 }, unstamped: 0 });
    expect(await heldFiles()).toEqual([]);
  });

  it('removes partial files not written within the cutoff and pieces with no committed byte, and stale upload sessions', async () => {
    const stale = randomBytes(8000);
    const staleDigest = sha256Digest(stale);
    const writer = await store.openPiece({ digest: staleDigest, blobSize: 8000, offset: 0, length: 4000 });
    await writer.write(stale.subarray(0, 4000));
    await writer.finish();
    await writer.close();
    await utimes(join(dir, 'partial', digestHex(staleDigest)), new Date(longAgo), new Date(longAgo));
    await store.uploadJournal('registry.example').saveSession('team/app', staleDigest, 'https://registry.example/upload/1');
    await reopen(() => now);

    const live = randomBytes(8000);
    const liveDigest = sha256Digest(live);
    const head = await store.openPiece({ digest: liveDigest, blobSize: 8000, offset: 0, length: 4000 });
    await head.write(live.subarray(0, 4000));
    await head.finish();
    await head.close();
    // Opened and never written: a piece that holds nothing.
    await (await store.openPiece({ digest: liveDigest, blobSize: 8000, offset: 4000, length: 4000 })).close();
    const emptyDigest = sha256Digest(randomBytes(100));
    await (await store.openPiece({ digest: emptyDigest, blobSize: 100, offset: 0, length: 100 })).close();
    await store.uploadJournal('registry.example').saveSession('team/app', liveDigest, 'https://registry.example/upload/2');

    const report = await store.prune({ usedBefore: now - 30 * DAY });
    expect(report.partial.removed.count).toBe(2);
    expect(report.partial.removed.bytes).toBeGreaterThanOrEqual(4000);
    expect(report.partial.kept.count).toBe(1);
    expect(report.partial.emptyPieces).toBe(2);
    expect(report.uploads).toEqual({ removed: 1, kept: 1, unstamped: 0 });
    expect(await readdir(join(dir, 'partial'))).toEqual([digestHex(liveDigest)]);
    const [holding] = await store.holdings([{ digest: liveDigest, size: 8000 }]);
    expect(holding?.pieces).toEqual([{ offset: 0, length: 4000, committed: 4000, sha256: sha256Digest(live.subarray(0, 4000)) }]);
    expect(await store.holdings([{ digest: staleDigest, size: 8000 }])).toEqual([{ digest: staleDigest, held: false, pieces: [] }]);
    expect(await store.uploadJournal('registry.example').session('team/app', staleDigest)).toBeUndefined();
    expect(await store.uploadJournal('registry.example').session('team/app', liveDigest)).toBe('https://registry.example/upload/2');
  });
});
