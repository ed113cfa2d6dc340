import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDigester, createLogger, digestOf, DigestMismatchError, digestHex, sha256Digest, silentLogger, type Digest } from '@meshmirror/shared';
import { createBlobStore, type BlobStore } from './blob-store.ts';
import { StoreIndex } from './store-index.ts';

/** Overwrites bytes of a file in place, as a crash or a torn write could. */
async function writeAt(path: string, position: number, bytes: Uint8Array): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, position);
  } finally {
    await handle.close();
  }
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('blob store', () => {
  let dir: string;
  let store: BlobStore;

  async function reopen(commitEveryBytes?: number): Promise<BlobStore> {
    await store.close();
    store = createBlobStore({ dir, logger: silentLogger(), ...(commitEveryBytes ? { commitEveryBytes } : {}) });
    await store.open();
    return store;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-store-'));
    store = createBlobStore({ dir, logger: silentLogger() });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('imports a blob from a stream, resuming after what an interrupted import committed, and refuses wrong bytes', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const digest = sha256Digest(data);
    await reopen(1024 * 1024);
    // The first import dies after 2 MiB have been written (and at least 1 MiB committed).
    const failing = (offset: number) =>
      Promise.resolve(
        Readable.from(
          (async function* () {
            yield data.subarray(offset, offset + 2 * 1024 * 1024);
            throw new Error('source went away');
          })(),
        ),
      );
    await expect(store.importBlob(digest, data.length, failing)).rejects.toThrow('source went away');
    expect(await store.has(digest)).toBe(false);
    const offsets: number[] = [];
    await store.importBlob(digest, data.length, (offset) => {
      offsets.push(offset);
      return Promise.resolve(Readable.from([data.subarray(offset)]));
    });
    expect(offsets).toHaveLength(1);
    expect(offsets[0]).toBeGreaterThanOrEqual(1024 * 1024);
    expect(await readAll((await store.openBlob(digest)) as AsyncIterable<Buffer>)).toEqual(data);
    // Held: a second import reads nothing.
    await store.importBlob(digest, data.length, () => Promise.reject(new Error('must not be opened')));

    const other = randomBytes(4096);
    const wrong = Buffer.from(other);
    wrong[100] = (wrong[100] ?? 0) ^ 0xff;
    await expect(store.importBlob(sha256Digest(other), other.length, () => Promise.resolve(Readable.from([wrong])))).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await store.has(sha256Digest(other))).toBe(false);
  });

  it('stores a small blob and serves it whole and by range', async () => {
    const data = Buffer.from('{"schemaVersion":2,"hello":"world"}');
    const digest = sha256Digest(data);
    expect(await store.has(digest)).toBe(false);
    await store.putBlob(digest, data);
    expect(await store.has(digest)).toBe(true);
    expect(await store.blobSize(digest)).toBe(data.length);
    expect(await text(await store.openBlob(digest))).toBe(data.toString());
    expect(await text(await store.openBlob(digest, { start: 2, end: 14 }))).toBe(data.subarray(2, 15).toString());
    expect(await text(await store.openBlob(digest, { start: 20 }))).toBe(data.subarray(20).toString());
    await expect(store.openBlob(digest, { start: 0, end: data.length })).rejects.toMatchObject({ code: 'MM_USAGE' });
    expect((await stat(join(dir, 'blobs', 'sha256', digestHex(digest)))).size).toBe(data.length);
  });

  it('stores and serves the empty blob', async () => {
    const empty = new Uint8Array(0);
    const digest = sha256Digest(empty);
    await store.putBlob(digest, empty);
    expect(await store.blobSize(digest)).toBe(0);
    expect((await readAll(await store.openBlob(digest))).length).toBe(0);
  });

  it('refuses a small blob whose bytes do not match its digest', async () => {
    const digest = sha256Digest('the real content');
    await expect(store.putBlob(digest, Buffer.from('other content'))).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await store.has(digest)).toBe(false);
    await expect(store.openBlob(digest)).rejects.toMatchObject({ code: 'MM_NOT_FOUND' });
  });

  it('resumes a piece from its committed offset and discards the unflushed tail', async () => {
    await reopen(1024 * 1024);
    const blob = randomBytes(300_000);
    const digest = sha256Digest(blob);
    const task = { digest, blobSize: blob.length, offset: 0, length: blob.length };

    const first = await store.openPiece(task);
    expect(first.committed).toBe(0);
    await first.write(blob.subarray(0, 100_000));
    await first.write(blob.subarray(100_000, 150_000));
    await first.commit();
    // Written to the file but never committed: lost in a crash, so a reopen must not trust it.
    await first.write(blob.subarray(150_000, 220_000));
    expect(first.committed).toBe(150_000);
    expect(first.written).toBe(220_000);
    await first.close();

    const partial = join(dir, 'partial', digestHex(digest));
    expect((await stat(partial)).size).toBe(220_000);
    // What a crash can leave past the committed offset: bytes that were never synced, here garbage.
    await writeAt(partial, 150_000, randomBytes(70_000));
    await reopen(1024 * 1024);
    expect(await store.holdings([{ digest, size: blob.length }])).toEqual([{ digest, held: false, pieces: [{ offset: 0, length: blob.length, committed: 150_000 }] }]);

    const resumed = await store.openPiece(task);
    expect(resumed.committed).toBe(150_000);
    expect(resumed.written).toBe(150_000);
    await resumed.write(blob.subarray(150_000));
    const { sha256 } = await resumed.finish();
    expect(sha256).toBe(digest);
    expect(await store.has(digest)).toBe(false);

    await store.completeBlob(digest, blob.length);
    expect(await store.has(digest)).toBe(true);
    expect((await readAll(await store.openBlob(digest))).equals(blob)).toBe(true);
    expect(await readdir(join(dir, 'partial'))).toEqual([]);
    expect(await store.holdings([{ digest, size: blob.length }])).toEqual([{ digest, held: true, pieces: [] }]);
  });

  it('commits on its own every commitEveryBytes, in the background, and journals it before it closes', async () => {
    await reopen(64 * 1024);
    const blob = randomBytes(200_000);
    const digest = sha256Digest(blob);
    const writer = await store.openPiece({ digest, blobSize: blob.length, offset: 0, length: blob.length });
    for (let at = 0; at < 150_000; at += 10_000) await writer.write(blob.subarray(at, at + 10_000));
    // 150,000 bytes written; a commit starts at the first write that crosses 64 KiB (70,000) and the
    // writes go on meanwhile, so later ones may or may not have started by the last write.
    await writer.close();
    await reopen();
    const [holding] = await store.holdings([{ digest, size: blob.length }]);
    const committed = holding?.pieces[0]?.committed ?? 0;
    expect(committed).toBeGreaterThanOrEqual(70_000);
    expect(committed).toBeLessThanOrEqual(150_000);
    expect(committed % 10_000).toBe(0);
    // The journalled bytes are the piece's: it resumes from there and finishes with the right hash.
    const resumed = await store.openPiece({ digest, blobSize: blob.length, offset: 0, length: blob.length });
    expect(resumed.committed).toBe(committed);
    await resumed.write(blob.subarray(committed));
    expect(await resumed.finish()).toEqual({ sha256: digest });
  });

  it('restart discards the piece bytes', async () => {
    const blob = randomBytes(50_000);
    const digest = sha256Digest(blob);
    const writer = await store.openPiece({ digest, blobSize: blob.length, offset: 0, length: blob.length });
    await writer.write(randomBytes(30_000));
    await writer.commit();
    await writer.restart();
    expect(writer.committed).toBe(0);
    expect(writer.written).toBe(0);
    await writer.write(blob);
    expect((await writer.finish()).sha256).toBe(digest);
    await store.completeBlob(digest, blob.length);
    expect(await store.has(digest)).toBe(true);
  });

  it('assembles a blob from pieces written in any order and verifies it', async () => {
    const blob = randomBytes(1_000_003);
    const digest = sha256Digest(blob);
    const pieces = [
      { offset: 600_000, length: 400_003 },
      { offset: 0, length: 300_000 },
      { offset: 300_000, length: 300_000 },
    ];
    for (const p of pieces) {
      const writer = await store.openPiece({ digest, blobSize: blob.length, ...p });
      await writer.write(blob.subarray(p.offset, p.offset + p.length));
      const { sha256 } = await writer.finish();
      expect(sha256).toBe(sha256Digest(blob.subarray(p.offset, p.offset + p.length)));
    }
    await store.completeBlob(digest, blob.length);
    expect(await store.has(digest)).toBe(true);
    expect((await readAll(await store.openBlob(digest, { start: 299_990, end: 300_009 }))).equals(blob.subarray(299_990, 300_010))).toBe(true);
    expect(await store.hashHeldRange(digest, 300_000, 300_000)).toBe(sha256Digest(blob.subarray(300_000, 600_000)));
    expect(await readdir(join(dir, 'partial'))).toEqual([]);
  });

  it('tells where a held blob lies on disk, and nothing for a blob it does not hold', async () => {
    const data = Buffer.from('held blob');
    const digest = sha256Digest(data);
    expect(await store.blobFile(digest)).toBeUndefined();
    await store.putBlob(digest, data);
    expect(await store.blobFile(digest)).toEqual({ path: join(dir, 'blobs', 'sha256', digestHex(digest)), offset: 0, size: data.length });
  });

  it('refuses to complete a blob with a missing piece', async () => {
    const blob = randomBytes(2_000);
    const digest = sha256Digest(blob);
    const writer = await store.openPiece({ digest, blobSize: 2_000, offset: 0, length: 1_000 });
    await writer.write(blob.subarray(0, 1_000));
    await writer.finish();
    await expect(store.completeBlob(digest, 2_000)).rejects.toMatchObject({ code: 'MM_STORE' });
    expect(await store.has(digest)).toBe(false);
  });

  it('never marks a blob held when a single piece has wrong bytes, and forgets the bad data', async () => {
    const digest = sha256Digest('what the manifest promised');
    const wrong = Buffer.from('what the server sent back');
    const writer = await store.openPiece({ digest, blobSize: wrong.length, offset: 0, length: wrong.length });
    await writer.write(wrong);
    await writer.finish();
    await expect(store.completeBlob(digest, wrong.length)).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await store.has(digest)).toBe(false);
    expect(await store.holdings([{ digest, size: wrong.length }])).toEqual([{ digest, held: false, pieces: [] }]);
    expect(await readdir(join(dir, 'partial'))).toEqual([]);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([]);
    await reopen();
    expect(await store.has(digest)).toBe(false);
  });

  it('never marks a blob held when assembled pieces have wrong bytes', async () => {
    const blob = randomBytes(10_000);
    const digest = sha256Digest(blob);
    const corrupted = Buffer.from(blob);
    corrupted[7_777] = (corrupted[7_777] ?? 0) ^ 0xff;
    for (const offset of [0, 5_000]) {
      const writer = await store.openPiece({ digest, blobSize: blob.length, offset, length: 5_000 });
      await writer.write(corrupted.subarray(offset, offset + 5_000));
      await writer.finish();
    }
    await expect(store.completeBlob(digest, blob.length)).rejects.toMatchObject({ code: 'MM_DIGEST_MISMATCH' });
    expect(await store.has(digest)).toBe(false);
    expect(await readdir(join(dir, 'partial'))).toEqual([]);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([]);
  });

  it('reports holdings: held, partial and unknown blobs', async () => {
    const heldData = Buffer.from('held');
    const held = sha256Digest(heldData);
    await store.putBlob(held, heldData);
    const partialBlob = randomBytes(4_000);
    const partial = sha256Digest(partialBlob);
    const a = await store.openPiece({ digest: partial, blobSize: 4_000, offset: 0, length: 2_000 });
    await a.write(partialBlob.subarray(0, 2_000));
    await a.finish();
    const b = await store.openPiece({ digest: partial, blobSize: 4_000, offset: 2_000, length: 2_000 });
    await b.write(partialBlob.subarray(2_000, 2_500));
    await b.commit();
    await b.close();
    const unknown = sha256Digest('never seen');
    expect(
      await store.holdings([
        { digest: held, size: heldData.length },
        { digest: partial, size: 4_000 },
        { digest: unknown, size: 10 },
      ]),
    ).toEqual([
      { digest: held, held: true, pieces: [] },
      {
        digest: partial,
        held: false,
        pieces: [
          { offset: 0, length: 2_000, committed: 2_000, sha256: sha256Digest(partialBlob.subarray(0, 2_000)) },
          { offset: 2_000, length: 2_000, committed: 500 },
        ],
      },
      { digest: unknown, held: false, pieces: [] },
    ]);
  });

  it('allows one writer per piece', async () => {
    const digest = sha256Digest('x');
    const task = { digest, blobSize: 1, offset: 0, length: 1 };
    const writer = await store.openPiece(task);
    await expect(store.openPiece(task)).rejects.toMatchObject({ code: 'MM_STORE' });
    await writer.close();
    const again = await store.openPiece(task);
    await again.close();
  });

  it('drops held marks whose file is missing or has the wrong size on startup', async () => {
    const gone = Buffer.from('this file will be deleted');
    const shrunk = Buffer.from('this file will be truncated');
    await store.putBlob(sha256Digest(gone), gone);
    await store.putBlob(sha256Digest(shrunk), shrunk);
    await store.close();
    await unlink(join(dir, 'blobs', 'sha256', digestHex(sha256Digest(gone))));
    await truncate(join(dir, 'blobs', 'sha256', digestHex(sha256Digest(shrunk))), 4);
    await reopen();
    expect(await store.has(sha256Digest(gone))).toBe(false);
    expect(await store.has(sha256Digest(shrunk))).toBe(false);
  });

  it('adopts a verified blob file that lost its held mark and removes one with wrong content', async () => {
    const good = Buffer.from('renamed into place just before a crash');
    const goodDigest = sha256Digest(good);
    const badDigest: Digest = sha256Digest('expected');
    await store.close();
    await writeFile(join(dir, 'blobs', 'sha256', digestHex(goodDigest)), good);
    await writeFile(join(dir, 'blobs', 'sha256', digestHex(badDigest)), 'not expected');
    await reopen();
    expect(await store.has(goodDigest)).toBe(true);
    expect(await store.has(badDigest)).toBe(false);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([digestHex(goodDigest)]);
  });

  it('writes all pieces of a blob into one partial file and completes it by a rename, never a copy', async () => {
    const blob = randomBytes(3 * 100_000 + 17);
    const digest = sha256Digest(blob);
    const pieces = [
      { offset: 200_000, length: 100_017 },
      { offset: 0, length: 100_000 },
      { offset: 100_000, length: 100_000 },
    ];
    // Open together, written interleaved: each writer has its own handle on the shared file.
    const writers = await Promise.all(pieces.map((p) => store.openPiece({ digest, blobSize: blob.length, ...p })));
    for (let at = 0; at < 100_017; at += 10_000) {
      for (const writer of writers) {
        const end = Math.min(writer.length, at + 10_000);
        if (at < end) await writer.write(blob.subarray(writer.offset + at, writer.offset + end));
      }
    }
    for (const writer of writers) await writer.finish();
    const partialInodes = await Promise.all((await readdir(join(dir, 'partial'))).map(async (name) => (await stat(join(dir, 'partial', name))).ino));

    await store.completeBlob(digest, blob.length);
    expect(await store.has(digest)).toBe(true);
    // The held file is the partial file itself, renamed: a copy would be a new inode.
    expect(partialInodes).toEqual([(await stat(join(dir, 'blobs', 'sha256', digestHex(digest)))).ino]);
    expect((await readAll(await store.openBlob(digest))).equals(blob)).toBe(true);
    expect(await readdir(join(dir, 'partial'))).toEqual([]);
    expect(await store.holdings([{ digest, size: blob.length }])).toEqual([{ digest, held: true, pieces: [] }]);
  });

  it('resumes a piece in the middle of a blob from its committed bytes in the shared file', async () => {
    await reopen(1024 * 1024);
    const blob = randomBytes(20_000);
    const digest = sha256Digest(blob);
    const first = await store.openPiece({ digest, blobSize: 20_000, offset: 0, length: 10_000 });
    await first.write(blob.subarray(0, 10_000));
    await first.finish();
    const second = await store.openPiece({ digest, blobSize: 20_000, offset: 10_000, length: 10_000 });
    await second.write(blob.subarray(10_000, 13_000));
    await second.commit();
    await second.write(blob.subarray(13_000, 16_000));
    await second.close();
    await writeAt(join(dir, 'partial', digestHex(digest)), 13_000, randomBytes(3_000));

    await reopen(1024 * 1024);
    const resumed = await store.openPiece({ digest, blobSize: 20_000, offset: 10_000, length: 10_000 });
    expect(resumed.committed).toBe(3_000);
    await resumed.write(blob.subarray(13_000));
    expect((await resumed.finish()).sha256).toBe(sha256Digest(blob.subarray(10_000)));
    await store.completeBlob(digest, blob.length);
    expect((await readAll(await store.openBlob(digest))).equals(blob)).toBe(true);
  });

  it('restart lets a finished piece of a multi-piece blob be written again with other content', async () => {
    const blob = randomBytes(8_000);
    const digest = sha256Digest(blob);
    const second = await store.openPiece({ digest, blobSize: 8_000, offset: 4_000, length: 4_000 });
    await second.write(randomBytes(4_000));
    await second.commit();
    await second.restart();
    await second.write(blob.subarray(4_000));
    await second.finish();
    const first = await store.openPiece({ digest, blobSize: 8_000, offset: 0, length: 4_000 });
    await first.write(blob.subarray(0, 4_000));
    await first.finish();
    await store.completeBlob(digest, blob.length);
    expect((await readAll(await store.openBlob(digest))).equals(blob)).toBe(true);
  });

  it('refuses to complete a blob while one of its pieces is open for writing', async () => {
    const blob = randomBytes(2_000);
    const digest = sha256Digest(blob);
    const writer = await store.openPiece({ digest, blobSize: 2_000, offset: 0, length: 2_000 });
    await writer.write(blob);
    await writer.commit();
    // A second writer of the same bytes (another plan's piece) must not run alongside.
    await expect(store.openPiece({ digest, blobSize: 2_000, offset: 1_000, length: 1_000 })).rejects.toMatchObject({
      code: 'MM_STORE',
    });
    await writer.finish();
    const late = await store.openPiece({ digest, blobSize: 2_000, offset: 0, length: 2_000 });
    await expect(store.completeBlob(digest, 2_000)).rejects.toMatchObject({ code: 'MM_STORE' });
    expect(await store.has(digest)).toBe(false);
    await late.close();
    await store.completeBlob(digest, 2_000);
    expect(await store.has(digest)).toBe(true);
  });

  it('forgets journalled pieces of an older plan that a new piece overlaps', async () => {
    const blob = randomBytes(10_000);
    const digest = sha256Digest(blob);
    const oldFirst = await store.openPiece({ digest, blobSize: 10_000, offset: 0, length: 5_000 });
    await oldFirst.write(blob.subarray(0, 5_000));
    await oldFirst.finish();
    const oldSecond = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    await oldSecond.write(blob.subarray(5_000, 6_000));
    await oldSecond.commit();
    await oldSecond.close();

    const whole = await store.openPiece({ digest, blobSize: 10_000, offset: 0, length: 10_000 });
    expect(whole.committed).toBe(0);
    expect(await store.holdings([{ digest, size: 10_000 }])).toEqual([{ digest, held: false, pieces: [] }]);
    await whole.write(blob.subarray(0, 7_000));
    await whole.commit();
    await whole.close();
    // The old plan comes back: its piece at 5,000 overlaps the whole-blob piece, which is forgotten.
    const again = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    expect(again.committed).toBe(0);
    expect(await store.isComplete(digest, 10_000)).toBe(false);
    await again.write(blob.subarray(5_000));
    await again.finish();
    const head = await store.openPiece({ digest, blobSize: 10_000, offset: 0, length: 5_000 });
    await head.write(blob.subarray(0, 5_000));
    await head.finish();
    await store.completeBlob(digest, 10_000);
    expect((await readAll(await store.openBlob(digest))).equals(blob)).toBe(true);
  });

  it('is not complete while a piece of the blob is open for writing, even when finished pieces cover it', async () => {
    // Two pieces finishing at once: each asks isComplete after its own file is closed. The first
    // to ask must not see the blob complete while the other's writer still holds the file, or
    // completeBlob refuses it and the agent's fetch fails.
    const blob = randomBytes(10_000);
    const digest = sha256Digest(blob);
    const first = await store.openPiece({ digest, blobSize: 10_000, offset: 0, length: 5_000 });
    await first.write(blob.subarray(0, 5_000));
    await first.finish();
    const second = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    await second.write(blob.subarray(5_000));
    await second.finish();
    // A writer on the finished second piece (as one that has journalled its hash and is closing).
    const open = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    expect(await store.isComplete(digest, 10_000)).toBe(false);
    await open.close();
    expect(await store.isComplete(digest, 10_000)).toBe(true);
    await store.completeBlob(digest, 10_000);
    expect((await readAll(await store.openBlob(digest))).equals(blob)).toBe(true);
  });

  it('discards partial pieces left by the previous one-file-per-piece layout on open', async () => {
    const blob = randomBytes(4_000);
    const digest = sha256Digest(blob);
    await store.close();
    const index = new StoreIndex(join(dir, 'index'));
    await index.open();
    const headSha256 = sha256Digest(blob.subarray(0, 2_000));
    await index.putPiece({ digest, blobSize: 4_000, offset: 0, length: 2_000, committed: 2_000, sha256: headSha256 });
    await index.putPiece({ digest, blobSize: 4_000, offset: 2_000, length: 2_000, committed: 700 });
    await index.close();
    await mkdir(join(dir, 'partial'), { recursive: true });
    await writeFile(join(dir, 'partial', `${digestHex(digest)}.0`), blob.subarray(0, 2_000));
    await writeFile(join(dir, 'partial', `${digestHex(digest)}.2000`), blob.subarray(2_000, 2_700));

    const lines: string[] = [];
    const logger = createLogger({ destination: { write: (line: string) => lines.push(line) } });
    store = createBlobStore({ dir, logger });
    await store.open();
    expect(await store.holdings([{ digest, size: 4_000 }])).toEqual([{ digest, held: false, pieces: [] }]);
    expect(await readdir(join(dir, 'partial'))).toEqual([]);
    const notices = lines.map((line) => JSON.parse(line) as { level: number; msg: string; files?: number });
    expect(notices.filter((n) => n.msg.includes('previous store layout'))).toMatchObject([{ level: 30, files: 2 }]);

    const writer = await store.openPiece({ digest, blobSize: 4_000, offset: 0, length: 4_000 });
    await writer.write(blob);
    await writer.finish();
    await store.completeBlob(digest, 4_000);
    expect(await store.has(digest)).toBe(true);
  });

  it('forgets committed bytes a partial file lost behind the journal on startup', async () => {
    await reopen(1024 * 1024);
    const blob = randomBytes(10_000);
    const digest = sha256Digest(blob);
    const first = await store.openPiece({ digest, blobSize: 10_000, offset: 0, length: 5_000 });
    await first.write(blob.subarray(0, 5_000));
    await first.finish();
    const second = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    await second.write(blob.subarray(5_000, 9_000));
    await second.commit();
    await second.close();
    await store.close();
    await truncate(join(dir, 'partial', digestHex(digest)), 6_500);
    await reopen(1024 * 1024);
    expect(await store.holdings([{ digest, size: 10_000 }])).toEqual([
      {
        digest,
        held: false,
        pieces: [
          { offset: 0, length: 5_000, committed: 5_000, sha256: sha256Digest(blob.subarray(0, 5_000)) },
          { offset: 5_000, length: 5_000, committed: 1_500 },
        ],
      },
    ]);
  });
  it('serves ranges of held blobs, of finished pieces and of the committed start of unfinished ones, and nothing else', async () => {
    const blob = randomBytes(10_000);
    const digest = sha256Digest(blob);
    const first = await store.openPiece({ digest, blobSize: 10_000, offset: 0, length: 5_000 });
    await first.write(blob.subarray(0, 5_000));
    await first.finish();
    const second = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    await second.write(blob.subarray(5_000, 9_000));
    await second.commit();
    await second.close();
    const read = async (offset: number, length: number): Promise<Buffer | undefined> => {
      const stream = await store.openStoredRange(digest, offset, length);
      return stream === undefined ? undefined : Buffer.concat(await stream.toArray());
    };
    expect((await read(1_000, 3_000))?.equals(blob.subarray(1_000, 4_000))).toBe(true);
    // The unfinished piece's committed bytes are durable: served (a writer elsewhere may lack just
    // those); not past them, nor a range across both pieces.
    expect((await read(5_000, 4_000))?.equals(blob.subarray(5_000, 9_000))).toBe(true);
    expect(await read(8_000, 1_001)).toBeUndefined();
    expect(await read(4_000, 2_000)).toBeUndefined();
    const rest = await store.openPiece({ digest, blobSize: 10_000, offset: 5_000, length: 5_000 });
    await rest.write(blob.subarray(9_000));
    await rest.finish();
    await store.completeBlob(digest, 10_000);
    expect((await read(4_000, 2_000))?.equals(blob.subarray(4_000, 6_000))).toBe(true);
    expect(await read(9_000, 2_000)).toBeUndefined();
  });

  it('never journals a piece whose bytes differ from the hash another host reported', async () => {
    const blob = randomBytes(4_000);
    const digest = sha256Digest(blob);
    const piece = { digest, blobSize: 4_000, offset: 0, length: 2_000 };
    const wrong = await store.openPiece(piece);
    const bad = Buffer.from(blob.subarray(0, 2_000));
    bad[10] = (bad[10] ?? 0) ^ 0xff;
    await wrong.write(bad);
    await expect(wrong.finish(sha256Digest(blob.subarray(0, 2_000)))).rejects.toMatchObject({ code: 'MM_DIGEST_MISMATCH' });
    expect(await store.holdings([{ digest, size: 4_000 }])).toEqual([{ digest, held: false, pieces: [] }]);
    const right = await store.openPiece(piece);
    expect(right.committed).toBe(0);
    await right.write(blob.subarray(0, 2_000));
    expect(await right.finish(sha256Digest(blob.subarray(0, 2_000)))).toEqual({ sha256: sha256Digest(blob.subarray(0, 2_000)) });
  });

  describe('following a piece while it is written', () => {
    it('streams a range of a piece as its bytes arrive, even when asked before the writer opened', async () => {
      const data = randomBytes(300_000);
      const digest = sha256Digest(data);
      // Asked first: the fetch of the piece and this request leave the coordinator at the same time.
      const opening = store.openLiveRange(digest, 100_000, 150_000, { waitMs: 5_000 });
      const writer = await store.openPiece({ digest, blobSize: data.length, offset: 0, length: data.length });
      const stream = await opening;
      expect(stream).toBeDefined();
      const reading = readAll(stream!);
      for (let at = 0; at < data.length; at += 30_000) await writer.write(data.subarray(at, at + 30_000));
      await writer.finish();
      expect((await reading).equals(data.subarray(100_000, 250_000))).toBe(true);
      expect(digestOf(await store.hashPartialRange(digest, 100_000, 150_000, { into: createDigester() }))).toBe(sha256Digest(data.subarray(100_000, 250_000)));
    });

    it('fails when the writer stops short of the range, or when the piece starts over under the reader', async () => {
      const data = randomBytes(200_000);
      const digest = sha256Digest(data);
      const writer = await store.openPiece({ digest, blobSize: data.length, offset: 0, length: data.length });
      await writer.write(data.subarray(0, 50_000));
      // Failures are collected as they come: nothing awaits them until the writer is done.
      const cut = readAll((await store.openLiveRange(digest, 0, data.length))!).catch((err: unknown) => err);
      await writer.commit();
      await writer.close();
      expect(await cut).toMatchObject({ code: 'MM_NOT_FOUND' });

      const again = await store.openPiece({ digest, blobSize: data.length, offset: 0, length: data.length });
      expect(again.committed).toBe(50_000);
      const restarted = readAll((await store.openLiveRange(digest, 0, data.length))!).catch((err: unknown) => err);
      await again.restart();
      await again.write(data.subarray(0, 100_000));
      expect(await restarted).toMatchObject({ code: 'MM_RANGE_IGNORED' });
      await again.close();
    });

    it('serves a finished piece from the store, and nothing when no writer comes', async () => {
      const data = randomBytes(64_000);
      const digest = sha256Digest(data);
      expect(await store.openLiveRange(digest, 0, data.length, { waitMs: 50 })).toBeUndefined();
      const writer = await store.openPiece({ digest, blobSize: data.length, offset: 0, length: data.length });
      await writer.write(data);
      await writer.finish();
      expect((await readAll((await store.openLiveRange(digest, 1_000, 2_000))!)).equals(data.subarray(1_000, 3_000))).toBe(true);
    });
  });
});
