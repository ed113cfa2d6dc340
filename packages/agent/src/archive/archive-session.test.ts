import { execFile, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestMismatchError, digestHex, MeshmirrorError, type ArchiveProgress, type BlobReader, type Digest, type BlobRef } from '@meshmirror/shared';
import { openOciLayout } from '../layout/oci-layout-reader.ts';
import { writeTestLayout, type TestLayout } from '../layout/test-layout-fixture.ts';
import { openArchive } from './archive-reader.ts';
import { startArchive } from './archive-session.ts';
import { CHUNK_MANIFEST_VERSION } from './chunk-manifest.ts';
import { writeArchive } from './archive-writer.ts';
import { testRunDescription } from './test-run-fixture.ts';

const execFileAsync = promisify(execFile);
// `pnpm test` installs skopeo first (test/support/ensure-tools.ts); `pnpm test:unit` may run without it.
const hasSkopeo = spawnSync('skopeo', ['--version']).error === undefined;
const KiB = 1024;

let work: string;
let layoutDir: string;
let layout: TestLayout;
let source: BlobReader;
let bigLayer: BlobRef;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-archive-session-'));
  layoutDir = join(work, 'layout');
  // Sizes around block boundaries and an empty layer, so padding and manifest growth are exercised.
  const edgeSizes = [0, 1, 511, 512, 513, 1023, 1024, 1025];
  const randomSizes = Array.from({ length: 24 }, () => 1 + Math.floor(Math.random() * 14 * KiB));
  layout = await writeTestLayout(layoutDir, [
    { name: 'sample/edges:1.0', platforms: [{ architecture: 'amd64', layerSizes: edgeSizes }] },
    {
      name: 'registry.example.com/team/multi:2.0',
      platforms: [
        { architecture: 'amd64', layerSizes: randomSizes.slice(0, 12) },
        { architecture: 'arm64', layerSizes: randomSizes.slice(12) },
      ],
    },
    { name: 'sample/big:1.0', platforms: [{ architecture: 'amd64', layerSizes: [100 * KiB] }] },
  ]);
  const big = layout.blobs.find((blob) => blob.size === 100 * KiB);
  if (big === undefined) throw new Error('fixture has no big layer');
  bigLayer = big;
  source = await openOciLayout(layoutDir);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

// run.json without its image list: the layout files must fit beside blobs in chunks of a few KiB.
const final = () => ({ images: layout.images, metadata: testRunDescription('session-test') });

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function folderFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** The chunk manifest as `tar` extracts it from the chunk file. */
async function chunkManifest(file: string, chunk: number): Promise<{ archiveId: string; blobs: Array<{ digest: Digest; size: number; offset: number }> }> {
  const entry = `meshmirror/chunk-${String(chunk).padStart(6, '0')}.json`;
  const { stdout } = await execFileAsync('tar', ['-xOf', file, entry], { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as { archiveId: string; blobs: Array<{ digest: Digest; size: number; offset: number }> };
}

/** What the chunk's file would grow by with one more blob: its tar entry and its line in the manifest. */
function growthWith(manifestLength: number, entry: { digest: Digest; size: number; offset: number }, firstInChunk: boolean): number {
  const padded = (n: number) => Math.ceil(n / 512) * 512;
  const grownManifest = manifestLength + JSON.stringify(entry).length + (firstInChunk ? 0 : 1);
  return 512 + padded(entry.size) + padded(grownManifest) - padded(manifestLength);
}

/** Adds `blobs` from `callers` concurrent callers, each awaiting its previous add; returns the call order. */
async function addConcurrently(session: { add(blob: BlobRef): Promise<void> }, blobs: BlobRef[], callers: number): Promise<Digest[]> {
  const callOrder: Digest[] = [];
  const queues = Array.from({ length: callers }, (_, caller) => blobs.filter((_, i) => i % callers === caller));
  await Promise.all(
    queues.map(async (queue) => {
      for (const blob of queue) {
        callOrder.push(blob.digest);
        await session.add(blob);
      }
    }),
  );
  return callOrder;
}

describe('startArchive', () => {
  it.each([6 * KiB, 16 * KiB, 37 * KiB + 123, 64 * KiB])(
    'fills chunks online up to %i bytes exactly, in call order, with blobs from concurrent callers',
    async (limit) => {
      const dir = join(work, `online-${limit}`);
      const session = await startArchive(source, { dir, chunkSizeBytes: limit });
      // Shuffled, so the big blob and the small ones arrive in no particular order.
      const blobs = [...layout.blobs].sort(() => Math.random() - 0.5);
      const callOrder = await addConcurrently(session, blobs, 4);
      const result = await session.finish(final());

      const written: Digest[] = [];
      for (const [i, chunk] of result.chunks.entries()) {
        const size = (await stat(chunk.file)).size;
        expect(size).toBe(chunk.bytes);
        const manifest = await chunkManifest(chunk.file, i + 1);
        expect(manifest.archiveId).toBe(session.archiveId);
        expect(manifest.blobs).toHaveLength(chunk.blobs);
        written.push(...manifest.blobs.map((blob) => blob.digest));
        const oversized = manifest.blobs.length === 1 && size > limit;
        if (!oversized) expect(size).toBeLessThanOrEqual(limit);
        // First fit: the blob that opened the next chunk would not have fitted into this one.
        const next = i + 1 < result.chunks.length ? (await chunkManifest(result.chunks[i + 1]?.file ?? '', i + 2)).blobs[0] : undefined;
        const lastBlob = manifest.blobs.at(-1);
        if (next !== undefined && !oversized && lastBlob !== undefined) {
          const manifestLength = JSON.stringify({ schemaVersion: CHUNK_MANIFEST_VERSION, chunk: i + 1, archiveId: session.archiveId, blobs: manifest.blobs }).length;
          const entry = { digest: next.digest, size: next.size, offset: lastBlob.offset + Math.ceil(lastBlob.size / 512) * 512 + 512 };
          expect(size + growthWith(manifestLength, entry, false)).toBeGreaterThan(limit);
        }
      }
      expect(written).toEqual(callOrder);
      expect(session.bytesWritten).toBe(layout.blobs.reduce((sum, blob) => sum + blob.size, 0));
      // Alone in a chunk, a blob takes its entry, a manifest entry (header and one block) and the end blocks.
      const oversized = layout.blobs.filter((blob) => 512 + Math.ceil(blob.size / 512) * 512 + 1024 + 1024 > limit);
      const blobWarnings = result.warnings.filter((warning) => warning.startsWith('blob '));
      expect(blobWarnings).toHaveLength(oversized.length);
      for (const blob of oversized) expect(blobWarnings.some((warning) => warning.includes(blob.digest))).toBe(true);

      const archive = await openArchive(dir);
      expect(archive.archiveId).toBe(session.archiveId);
      for (const blob of layout.blobs) expect(archive.locateBlob(blob.digest)?.size).toBe(blob.size);
    },
  );

  it('ends a chunk exactly at the limit when the blobs fill it, and starts the next one at one byte less', async () => {
    // The two largest small layers fill the chunk; the third is smaller, so it fits a chunk alone.
    const [a, b, c] = layout.blobs.filter((blob) => blob.size > 2000 && blob !== bigLayer).sort((x, y) => y.size - x.size);
    if (a === undefined || b === undefined || c === undefined) throw new Error('fixture has too few layers');
    const padded = (n: number) => Math.ceil(n / 512) * 512;
    // A random UUID is always 36 characters, so the manifest's length is known before the session starts.
    const manifest = JSON.stringify({
      chunk: 1,
      archiveId: 'x'.repeat(36),
      blobs: [
        { digest: a.digest, size: a.size, offset: 512 },
        { digest: b.digest, size: b.size, offset: 512 + padded(a.size) + 512 },
      ],
    });
    const exact = 512 + padded(a.size) + 512 + padded(b.size) + 512 + padded(manifest.length) + 1024;

    const fits = await startArchive(source, { dir: join(work, 'exact-fit'), chunkSizeBytes: exact });
    for (const blob of [a, b, c]) await fits.add(blob);
    const fitResult = await fits.finish({ images: [], metadata: testRunDescription('session-test') });
    expect(fitResult.chunks[0]).toMatchObject({ bytes: exact, blobs: 2 });

    const tight = await startArchive(source, { dir: join(work, 'exact-minus-one'), chunkSizeBytes: exact - 1 });
    for (const blob of [a, b, c]) await tight.add(blob);
    const tightResult = await tight.finish({ images: [], metadata: testRunDescription('session-test') });
    expect(tightResult.chunks[0]?.blobs).toBe(1);
    expect(tightResult.chunks.every((chunk) => chunk.bytes <= exact - 1)).toBe(true);
    expect(tightResult.warnings).toEqual([]);
  });

  it('gives a blob larger than the limit a chunk of its own, with a warning naming it', async () => {
    const dir = join(work, 'oversized');
    const limit = 64 * KiB;
    const small = layout.blobs.filter((blob) => blob.size < 20 * KiB);
    const session = await startArchive(source, { dir, chunkSizeBytes: limit });
    for (const blob of small.slice(0, 3)) await session.add(blob);
    await session.add(bigLayer);
    for (const blob of layout.blobs.filter((blob) => blob !== bigLayer)) await session.add(blob);
    const result = await session.finish(final());

    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toContain(bigLayer.digest);
    const holders = [];
    for (const chunk of result.chunks) {
      const listing = (await execFileAsync('tar', ['-tf', chunk.file])).stdout;
      if (listing.includes(digestHex(bigLayer.digest))) holders.push(chunk);
      else expect(chunk.bytes).toBeLessThanOrEqual(limit);
    }
    expect(holders).toHaveLength(1);
    expect(holders[0]).toMatchObject({ blobs: 1 });
    expect(holders[0]?.bytes).toBeGreaterThan(limit);
    expect(result.warnings[0]).toContain(String(holders[0]?.bytes));
  });

  it.skipIf(!hasSkopeo)('finishes into chunks that extract with tar into a layout skopeo reads, and that openArchive serves', async () => {
    const dir = join(work, 'extract');
    const progress: ArchiveProgress[] = [];
    const session = await startArchive(source, { dir, chunkSizeBytes: 32 * KiB, onProgress: (p) => progress.push(p) });
    await addConcurrently(session, layout.blobs, 3);
    const result = await session.finish(final());
    expect(await folderFiles(dir)).toEqual(result.chunks.map((_, i) => `mirror_${String(i + 1).padStart(6, '0')}.tar`));

    const extracted = join(work, 'extracted');
    await mkdir(extracted);
    for (const chunk of result.chunks) await execFileAsync('tar', ['-xf', chunk.file, '-C', extracted]);
    for (const blob of layout.blobs) {
      expect(await sha256File(join(extracted, 'blobs', 'sha256', digestHex(blob.digest)))).toBe(digestHex(blob.digest));
    }
    for (const image of layout.images) {
      const { stdout } = await execFileAsync('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci:${extracted}:${image.name}`], {
        encoding: 'buffer',
      });
      expect(`sha256:${createHash('sha256').update(stdout).digest('hex')}`).toBe(image.descriptor.digest);
    }
    const run = JSON.parse(await readFile(join(extracted, 'meshmirror', 'run.json'), 'utf8')) as Record<string, unknown>;
    expect(run).toMatchObject({ schemaVersion: 1, runId: 'session-test', archive: { archiveId: session.archiveId, chunkCount: result.chunks.length } });

    const archive = await openArchive(dir);
    expect((await archive.images()).map((image) => image.name)).toEqual(layout.images.map((image) => image.name));
    const total = result.chunks.reduce((sum, chunk) => sum + chunk.bytes, 0);
    expect(progress.at(-1)).toEqual({ bytesWritten: total, totalBytes: total });
  });

  it('keeps the previous archive readable while writing, and intact with no .partial after abort', async () => {
    const dir = join(work, 'abort');
    const previous = await writeArchive(source, { dir, chunkSizeBytes: 32 * KiB, ...final(), blobs: layout.blobs });
    const previousFiles = await folderFiles(dir);
    const previousHashes = await Promise.all(previous.chunks.map((chunk) => sha256File(chunk.file)));
    const previousId = (await openArchive(dir)).archiveId;

    // The third blob's stream gives some bytes, then stalls until the session is aborted.
    const stalled = layout.blobs[2];
    if (stalled === undefined) throw new Error('fixture too small');
    const stalling: BlobReader = {
      blobSize: (digest, options) => source.blobSize(digest, options),
      openBlob: async (digest, range) => {
        if (digest !== stalled.digest) return await source.openBlob(digest, range);
        const stream = new PassThrough();
        stream.write(randomBytes(100));
        return stream;
      },
    };
    const session = await startArchive(stalling, { dir, chunkSizeBytes: 8 * KiB });
    const adds = layout.blobs.map((blob) =>
      session.add(blob).then(
        () => 'added',
        (e: unknown) => e,
      ),
    );
    await adds[1];
    // New chunks exist only as .partial files; the old set is still what a reader sees.
    expect((await folderFiles(dir)).filter((name) => name.endsWith('.partial')).length).toBeGreaterThan(0);
    expect((await openArchive(dir)).archiveId).toBe(previousId);

    await session.abort();
    const outcomes = await Promise.all(adds);
    expect(outcomes.slice(0, 2)).toEqual(['added', 'added']);
    for (const outcome of outcomes.slice(2)) expect(outcome).toMatchObject({ code: 'MM_ABORTED' });
    expect(await folderFiles(dir)).toEqual(previousFiles);
    expect(await Promise.all(previous.chunks.map((chunk) => sha256File(chunk.file)))).toEqual(previousHashes);
    expect((await openArchive(dir)).archiveId).toBe(previousId);
    await expect(session.add(layout.blobs[0] ?? bigLayer)).rejects.toMatchObject({ code: 'MM_ABORTED' });
    await expect(session.finish(final())).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });

  it('aborts the whole session when the signal given to startArchive fires', async () => {
    const dir = join(work, 'start-signal');
    const controller = new AbortController();
    const session = await startArchive(source, { dir, chunkSizeBytes: 8 * KiB, signal: controller.signal });
    for (const blob of layout.blobs.slice(0, 6)) await session.add(blob);
    expect((await folderFiles(dir)).length).toBeGreaterThan(0);
    controller.abort();
    await expect(session.add(bigLayer)).rejects.toMatchObject({ code: 'MM_ABORTED' });
    await expect(session.finish(final())).rejects.toMatchObject({ code: 'MM_ABORTED' });
    // Waits for the clean-up the signal started.
    await session.abort();
    expect(await folderFiles(dir)).toEqual([]);
  });

  it('rolls a blob with wrong bytes back to where its entry began and goes on; the blob can be added again', async () => {
    const dir = join(work, 'mismatch');
    const [first, victim, ...rest] = layout.blobs.filter((blob) => blob.size > 1000);
    if (first === undefined || victim === undefined) throw new Error('fixture too small');
    let corruptions = 0;
    // Gives the victim's bytes with one byte changed, the first time only.
    const corruptOnce: BlobReader = {
      blobSize: (digest, options) => source.blobSize(digest, options),
      openBlob: async (digest, range) => {
        if (digest !== victim.digest || corruptions > 0) return await source.openBlob(digest, range);
        corruptions++;
        const bytes = await readFile(join(layoutDir, 'blobs', 'sha256', digestHex(digest)));
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
        return Readable.from([bytes.subarray(0, 700), bytes.subarray(700)]);
      },
    };
    const session = await startArchive(corruptOnce, { dir, chunkSizeBytes: 1024 * KiB });
    await session.add(first);
    const partial = join(dir, 'mirror_000001.tar.partial');
    const sizeBefore = (await stat(partial)).size;
    const error = await session.add(victim).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toContain(victim.digest);
    expect((await stat(partial)).size).toBe(sizeBefore);
    expect(session.bytesWritten).toBe(first.size);

    for (const blob of rest) await session.add(blob);
    await session.add(victim);
    const result = await session.finish({ images: [], metadata: testRunDescription('session-test') });
    const archive = await openArchive(dir);
    for (const blob of [first, victim, ...rest]) {
      const location = archive.locateBlob(blob.digest);
      expect(location?.size).toBe(blob.size);
      const stream = await archive.openBlob(blob.digest);
      const hash = createHash('sha256');
      for await (const data of stream as AsyncIterable<Buffer>) hash.update(data);
      expect(`sha256:${hash.digest('hex')}`).toBe(blob.digest);
    }
    const listing = (await execFileAsync('tar', ['-tf', result.chunks[0]?.file ?? ''])).stdout.split('\n');
    expect(listing.filter((name) => name.includes(digestHex(victim.digest)))).toHaveLength(1);
  });

  it("copies from a reader's local files with read-ahead into the same chunks a stream gives, and still verifies them", async () => {
    const withFiles = (root: string): BlobReader => ({
      blobSize: (digest, options) => source.blobSize(digest, options),
      openBlob: () => Promise.reject(new Error('a reader with local files is not read through streams')),
      blobFile: async (digest, options) => {
        const size = await source.blobSize(digest, options);
        return size === undefined ? undefined : { path: join(root, 'blobs', 'sha256', digestHex(digest)), offset: 0, size };
      },
    });
    const blobs = [...layout.blobs].sort((a, b) => a.digest.localeCompare(b.digest));
    const chunkLayouts = async (name: string, reader: BlobReader): Promise<unknown[]> => {
      const session = await startArchive(reader, { dir: join(work, name), chunkSizeBytes: 64 * KiB });
      for (const blob of blobs) await session.add(blob);
      const result = await session.finish({ images: [], metadata: testRunDescription('session-test') });
      return await Promise.all(result.chunks.map(async (chunk, i) => ({ bytes: chunk.bytes, blobs: (await chunkManifest(chunk.file, i + 1)).blobs })));
    };
    const streamed = await chunkLayouts('via-stream', source);
    expect(streamed.length).toBeGreaterThan(1);
    expect(await chunkLayouts('via-files', withFiles(layoutDir))).toEqual(streamed);
    const archive = await openArchive(join(work, 'via-files'));
    for (const blob of blobs) {
      const hash = createHash('sha256');
      for await (const data of (await archive.openBlob(blob.digest)) as AsyncIterable<Buffer>) hash.update(data);
      expect(`sha256:${hash.digest('hex')}`).toBe(blob.digest);
    }

    // A local file whose bytes changed is caught by the digest check like a stream's.
    const tampered = join(work, 'tampered-layout');
    await execFileAsync('cp', ['-r', layoutDir, tampered]);
    const victim = bigLayer;
    const victimPath = join(tampered, 'blobs', 'sha256', digestHex(victim.digest));
    const bytes = await readFile(victimPath);
    bytes[KiB * 70] = (bytes[KiB * 70] ?? 0) ^ 0xff;
    await writeFile(victimPath, bytes);
    const session = await startArchive(withFiles(tampered), { dir: join(work, 'via-tampered-files'), chunkSizeBytes: 1024 * KiB });
    await expect(session.add(victim)).rejects.toBeInstanceOf(DigestMismatchError);
    await session.abort();
  });

  it('rolls back a blob whose add is aborted by its own signal and keeps the session usable', async () => {
    const dir = join(work, 'add-abort');
    const [first, slow, next] = layout.blobs.filter((blob) => blob.size > 1000);
    if (first === undefined || slow === undefined || next === undefined) throw new Error('fixture too small');
    const controller = new AbortController();
    const stallingOnce: BlobReader = {
      blobSize: (digest, options) => source.blobSize(digest, options),
      openBlob: async (digest, range) => {
        if (digest !== slow.digest || controller.signal.aborted) return await source.openBlob(digest, range);
        const stream = new PassThrough();
        stream.write(randomBytes(600), () => controller.abort());
        return stream;
      },
    };
    const session = await startArchive(stallingOnce, { dir, chunkSizeBytes: 1024 * KiB });
    await session.add(first);
    const sizeBefore = (await stat(join(dir, 'mirror_000001.tar.partial'))).size;
    await expect(session.add(slow, { signal: controller.signal })).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect((await stat(join(dir, 'mirror_000001.tar.partial'))).size).toBe(sizeBefore);
    await session.add(next);
    await session.add(slow);
    const result = await session.finish({ images: [], metadata: testRunDescription('session-test') });
    expect(result.chunks).toMatchObject([{ blobs: 3 }]);
    const archive = await openArchive(dir);
    expect(archive.locateBlob(slow.digest)?.size).toBe(slow.size);
  });

  it('writes a digest added twice (even at once) only once, and refuses it with another size', async () => {
    const dir = join(work, 'twice');
    const [blob] = layout.blobs.filter((b) => b.size > 1000);
    if (blob === undefined) throw new Error('fixture too small');
    const session = await startArchive(source, { dir, chunkSizeBytes: 1024 * KiB });
    await Promise.all([session.add(blob), session.add(blob)]);
    await session.add(blob);
    expect(session.bytesWritten).toBe(blob.size);
    await expect(session.add({ digest: blob.digest, size: blob.size + 1 })).rejects.toMatchObject({ code: 'MM_USAGE' });
    const result = await session.finish({ images: [], metadata: testRunDescription('session-test') });
    expect(result.chunks).toMatchObject([{ blobs: 1 }]);
    const listing = (await execFileAsync('tar', ['-tf', result.chunks[0]?.file ?? ''])).stdout;
    expect(listing.split('\n').filter((name) => name.includes(digestHex(blob.digest)))).toHaveLength(1);
  });

  it('refuses to finish when an image manifest was not added, and finishes once it is', async () => {
    const dir = join(work, 'refuse');
    const image = layout.images[0];
    if (image === undefined) throw new Error('fixture has no images');
    const session = await startArchive(source, { dir, chunkSizeBytes: 1024 * KiB });
    for (const blob of layout.blobs.filter((b) => b.digest !== image.descriptor.digest)) await session.add(blob);
    const error = await session.finish(final()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MeshmirrorError);
    expect(error).toMatchObject({ code: 'MM_USAGE' });
    expect((error as Error).message).toContain(image.descriptor.digest);
    expect((await folderFiles(dir)).every((name) => name.endsWith('.partial'))).toBe(true);

    await session.add({ digest: image.descriptor.digest, size: image.descriptor.size });
    const result = await session.finish(final());
    expect((await (await openArchive(dir)).images()).map((i) => i.name)).toEqual(layout.images.map((i) => i.name));
    expect(result.chunks).toHaveLength(1);
    await expect(session.add(bigLayer)).rejects.toMatchObject({ code: 'MM_USAGE' });
  });
});
