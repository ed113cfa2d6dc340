import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestMismatchError, digestHex, type ArchiveProgress, type BlobReader, type Digest, type BlobRef } from '@meshmirror/shared';
import { openOciLayout } from '../layout/oci-layout-reader.ts';
import { writeTestLayout, type TestLayout } from '../layout/test-layout-fixture.ts';
import { CHUNK_MANIFEST_VERSION } from './chunk-manifest.ts';
import { openArchive } from './archive-reader.ts';
import { planArchiveChunks, tarEntryBytes, writeArchive } from './archive-writer.ts';
import { testRunDescription } from './test-run-fixture.ts';

const execFileAsync = promisify(execFile);
// `pnpm test` installs skopeo first (test/support/ensure-tools.ts); `pnpm test:unit` may run without it.
const hasSkopeo = spawnSync('skopeo', ['--version']).error === undefined;
const KiB = 1024;
const CHUNK_LIMIT = 64 * KiB;

let work: string;
let layoutDir: string;
let layout: TestLayout;
let bigLayer: Digest;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-archive-writer-'));
  layoutDir = join(work, 'layout');
  layout = await writeTestLayout(layoutDir, [
    { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layerSizes: [30 * KiB, 30 * KiB, 30 * KiB] }] },
    {
      name: 'registry.example.com/team/multi:2.0',
      platforms: [
        { architecture: 'amd64', layerSizes: [30 * KiB, 20 * KiB] },
        { architecture: 'arm64', layerSizes: [30 * KiB] },
      ],
    },
    { name: 'sample/big:1.0', platforms: [{ architecture: 'amd64', layerSizes: [100 * KiB] }] },
  ]);
  const big = layout.blobs.find((blob) => blob.size === 100 * KiB);
  if (big === undefined) throw new Error('fixture has no big layer');
  bigLayer = big.digest;
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function request(dir: string, chunkSizeBytes = CHUNK_LIMIT) {
  return { dir, chunkSizeBytes, images: layout.images, blobs: layout.blobs, metadata: testRunDescription('test-run', layout.images) };
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function chunkFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith('mirror_')).sort();
}

describe('writeArchive', () => {
  it('splits blobs into chunks within the limit, with the oversized blob alone and a warning', async () => {
    const out = join(work, 'split');
    const progress: ArchiveProgress[] = [];
    const result = await writeArchive(await openOciLayout(layoutDir), request(out), { onProgress: (p) => progress.push(p) });

    expect(result.chunks.length).toBeGreaterThanOrEqual(4);
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toContain(bigLayer);
    for (const chunk of result.chunks) {
      const size = (await stat(chunk.file)).size;
      expect(size).toBe(chunk.bytes);
      const holdsBig = (await execFileAsync('tar', ['-tf', chunk.file])).stdout.includes(digestHex(bigLayer));
      if (holdsBig) {
        expect(chunk.blobs).toBe(1);
        expect(size).toBeGreaterThan(CHUNK_LIMIT);
      } else {
        expect(size).toBeLessThanOrEqual(CHUNK_LIMIT);
      }
    }
    expect(await chunkFiles(out)).toEqual(result.chunks.map((_, i) => `mirror_${String(i + 1).padStart(6, '0')}.tar`));
    expect(result.chunks.reduce((sum, chunk) => sum + chunk.blobs, 0)).toBe(layout.blobs.length);

    const total = result.chunks.reduce((sum, chunk) => sum + chunk.bytes, 0);
    expect(progress.at(-1)).toEqual({ bytesWritten: total, totalBytes: total });
    expect(progress.every((p, i) => i === 0 || p.bytesWritten >= (progress[i - 1]?.bytesWritten ?? 0))).toBe(true);
  });

  it.skipIf(!hasSkopeo)('extracts with tar into an OCI layout that skopeo reads with the same bytes', async () => {
    const out = join(work, 'extract-src');
    const result = await writeArchive(await openOciLayout(layoutDir), request(out));
    const extracted = join(work, 'extracted');
    await mkdir(extracted);
    for (const chunk of result.chunks) await execFileAsync('tar', ['-xf', chunk.file, '-C', extracted]);

    for (const blob of layout.blobs) {
      expect(await sha256File(join(extracted, 'blobs', 'sha256', digestHex(blob.digest)))).toBe(digestHex(blob.digest));
    }
    expect(JSON.parse(await readFile(join(extracted, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    for (const image of layout.images) {
      const { stdout } = await execFileAsync('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci:${extracted}:${image.name}`], {
        encoding: 'buffer',
      });
      expect(`sha256:${createHash('sha256').update(stdout).digest('hex')}`).toBe(image.descriptor.digest);
    }
    const copied = join(work, 'skopeo-copy');
    await execFileAsync('skopeo', [
      '--insecure-policy',
      'copy',
      '--all',
      '--preserve-digests',
      `oci:${extracted}:registry.example.com/team/multi:2.0`,
      `oci:${copied}:multi`,
    ]);
    const copiedIndex = JSON.parse(await readFile(join(copied, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(copiedIndex.manifests[0]?.digest).toBe(layout.images[1]?.descriptor.digest);

    const run = JSON.parse(await readFile(join(extracted, 'meshmirror', 'run.json'), 'utf8')) as Record<string, unknown>;
    expect(run).toMatchObject({ schemaVersion: 1, runId: 'test-run', archive: { chunkCount: result.chunks.length } });
    expect((run['images'] as Array<{ source: string }>).map((image) => image.source)).toEqual(layout.images.map((image) => image.name));
  });

  it('puts each blob at the offset its chunk manifest names', async () => {
    const out = join(work, 'offsets');
    await writeArchive(await openOciLayout(layoutDir), request(out));
    const archive = await openArchive(out);
    for (const blob of layout.blobs) {
      const location = archive.locateBlob(blob.digest);
      expect(location).toBeDefined();
      if (location === undefined) continue;
      const bytes = (await readFile(join(out, location.file))).subarray(location.offset, location.offset + location.size);
      expect(bytes.equals(await readFile(join(layoutDir, 'blobs', 'sha256', digestHex(blob.digest))))).toBe(true);
    }
  });

  it('replaces an earlier, longer archive in the same folder and removes its extra chunks', async () => {
    const out = join(work, 'rewrite');
    const first = await writeArchive(await openOciLayout(layoutDir), request(out));
    await writeFile(join(out, 'mirror_000042.tar.partial'), 'left by a crash');
    const second = await writeArchive(await openOciLayout(layoutDir), request(out, 1024 * KiB));
    expect(second.chunks.length).toBeLessThan(first.chunks.length);
    expect(await chunkFiles(out)).toEqual(['mirror_000001.tar']);
    const archive = await openArchive(out);
    expect(archive.chunks).toHaveLength(1);
    expect((await archive.images()).map((image) => image.name)).toEqual(layout.images.map((image) => image.name));
  });

  it('refuses wrong bytes from the source: DigestMismatchError naming the blob, and no chunk left behind', async () => {
    const out = join(work, 'mismatch');
    const source = await openOciLayout(layoutDir);
    const victim = layout.blobs[0];
    if (victim === undefined) throw new Error('no blobs');
    // A store that returns one byte changed: the archive must not contain it.
    const corrupt: BlobReader = {
      blobSize: (digest, options) => source.blobSize(digest, options),
      openBlob: async (digest, range) => {
        if (digest !== victim.digest) return await source.openBlob(digest, range);
        const bytes = await readFile(join(layoutDir, 'blobs', 'sha256', digestHex(digest)));
        bytes[100] = (bytes[100] ?? 0) ^ 0xff;
        return Readable.from([bytes]);
      },
    };
    const error = await writeArchive(corrupt, request(out)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toContain(victim.digest);
    expect(await chunkFiles(out)).toEqual([]);
  });

  it('fails before writing when the run metadata does not fit run.json, naming the field', async () => {
    const out = join(work, 'bad-metadata');
    const metadata = testRunDescription('test-run', layout.images);
    const short: Digest = 'sha256:short';
    const images = metadata.images.map((image, index) => (index === 1 ? { ...image, digest: short } : image));
    const error = await writeArchive(await openOciLayout(layoutDir), { ...request(out), metadata: { ...metadata, images } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MM_USAGE' });
    expect((error as Error).message).toBe('the run metadata does not fit meshmirror/run.json at images[1].digest: must be a sha256 digest');
    expect(await readdir(out).catch(() => [])).toEqual([]);
  });

  it('fails before writing when a blob is not held', async () => {
    const out = join(work, 'missing');
    const missing: Digest = `sha256:${'0'.repeat(64)}`;
    const error = await writeArchive(await openOciLayout(layoutDir), {
      ...request(out),
      blobs: [...layout.blobs, { digest: missing, size: 10 }],
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MM_NOT_FOUND' });
    expect((error as Error).message).toContain(missing);
    expect(await readdir(out).catch(() => [])).toEqual([]);
  });

  it('stops when aborted in the middle of a chunk, leaving no partial chunk and the previous archive intact', async () => {
    const out = join(work, 'abort');
    const previous = await writeArchive(await openOciLayout(layoutDir), request(out));
    const before = await Promise.all(previous.chunks.map((chunk) => sha256File(chunk.file)));
    const controller = new AbortController();
    const source = await openOciLayout(layoutDir);
    let opened = 0;
    const abortingOnThirdBlob: BlobReader = {
      blobSize: (digest, options) => source.blobSize(digest, options),
      openBlob: async (digest, range) => {
        const stream = await source.openBlob(digest, range);
        if (++opened === 3) controller.abort();
        return stream;
      },
    };
    const error = await writeArchive(abortingOnThirdBlob, request(out), { signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MM_ABORTED' });
    // The first chunk of the new archive was complete, but nothing is renamed before the whole set is.
    expect(await chunkFiles(out)).toEqual(previous.chunks.map((chunk) => basename(chunk.file)));
    expect(await Promise.all(previous.chunks.map((chunk) => sha256File(chunk.file)))).toEqual(before);
    expect((await openArchive(out)).chunks).toHaveLength(previous.chunks.length);
  });
});

describe('planArchiveChunks', () => {
  const blob = (n: number, size: number): BlobRef => ({ digest: `sha256:${n.toString(16).padStart(64, '0')}`, size });
  const extras = () => [{ name: 'index.json', data: Buffer.alloc(700) }];

  it('keeps every chunk within the limit and accounts for headers, padding, manifest and end blocks', () => {
    const blobs = Array.from({ length: 40 }, (_, i) => blob(i + 1, 1000 + i * 37));
    const plan = planArchiveChunks(blobs, 16 * KiB, 'archive-id', extras);
    expect(plan.warnings).toEqual([]);
    for (const chunk of plan.chunks) {
      expect(chunk.totalBytes).toBeLessThanOrEqual(16 * KiB);
      const manifestLength = JSON.stringify({ schemaVersion: CHUNK_MANIFEST_VERSION, chunk: chunk.chunk, archiveId: 'archive-id', blobs: chunk.blobs }).length;
      const expected =
        chunk.blobs.reduce((sum, b) => sum + tarEntryBytes(b.size), 0) +
        chunk.extras.reduce((sum, e) => sum + tarEntryBytes(e.data.length), 0) +
        tarEntryBytes(manifestLength) +
        1024;
      expect(chunk.totalBytes).toBe(expected);
    }
    expect(plan.chunks.flatMap((chunk) => chunk.blobs.map((b) => b.digest))).toEqual(blobs.map((b) => b.digest));
    expect(plan.chunks.at(-1)?.extras).toHaveLength(1);
  });

  it('starts a chunk of its own for the layout files when they do not fit', () => {
    const plan = planArchiveChunks([blob(1, 14 * KiB)], 16 * KiB, 'id', () => [{ name: 'index.json', data: Buffer.alloc(2 * KiB) }]);
    expect(plan.chunks).toHaveLength(2);
    expect(plan.chunks[0]?.extras).toEqual([]);
    expect(plan.chunks[1]?.blobs).toEqual([]);
    expect(plan.chunks[1]?.extras).toHaveLength(1);
  });
});
