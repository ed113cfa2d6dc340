import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex, hashedBytes, parseManifest, type Digest } from '@meshmirror/shared';
import { flipByte } from '../../../../test/support/flip-byte.ts';
import { openOciLayout } from '../layout/oci-layout-reader.ts';
import { writeTestLayout, type TestLayout } from '../layout/test-layout-fixture.ts';
import { openArchive } from './archive-reader.ts';
import { formatProblem, verifyArchive, VerifyAhead } from './archive-verify.ts';
import { startArchive } from './archive-session.ts';
import { writeArchive } from './archive-writer.ts';
import { testRunDescription } from './test-run-fixture.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
let work: string;
let layoutDir: string;
let layout: TestLayout;
let good: string;
/** The app image's layers, bottom first. */
let appLayers: Digest[];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-archive-verify-'));
  layoutDir = join(work, 'layout');
  layout = await writeTestLayout(layoutDir, [
    { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layerSizes: [40 * KiB, 40 * KiB, 40 * KiB] }] },
    {
      name: 'registry.example.com/team/multi:2.0',
      platforms: [
        { architecture: 'amd64', layerSizes: [30 * KiB, 1] },
        { architecture: 'arm64', layerSizes: [20 * KiB] },
      ],
    },
  ]);
  good = await writeFresh('good', layout.blobs);
  const app = layout.images.find((i) => i.name === 'sample/app:1.0')!;
  const manifest = parseManifest(await readFile(join(layoutDir, 'blobs', 'sha256', digestHex(app.descriptor.digest))), app.descriptor.mediaType, 'app');
  appLayers = manifest.kind === 'image' ? manifest.manifest.layers.map((l) => l.digest) : [];
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function writeFresh(name: string, blobs: TestLayout['blobs']): Promise<string> {
  const dir = join(work, name);
  await writeArchive(await openOciLayout(layoutDir), {
    dir,
    chunkSizeBytes: 64 * KiB,
    images: layout.images,
    blobs,
    metadata: testRunDescription('verify-test', layout.images),
  });
  return dir;
}

/** A layout of one single-platform image with layers of `layerSizes`, written as an archive in `work/<name>`. */
async function writeOneImageArchive(name: string, image: string, layerSizes: number[]): Promise<{ dir: string; layout: TestLayout }> {
  const layoutPath = join(work, `${name}-layout`);
  const layout = await writeTestLayout(layoutPath, [{ name: image, platforms: [{ architecture: 'amd64', layerSizes }] }]);
  const dir = join(work, name);
  await writeArchive(await openOciLayout(layoutPath), {
    dir,
    chunkSizeBytes: 16 * MiB,
    images: layout.images,
    blobs: layout.blobs,
    metadata: testRunDescription(`verify-${name}-test`, layout.images),
  });
  return { dir, layout };
}

async function copyOf(name: string): Promise<string> {
  const dir = join(work, name);
  await cp(good, dir, { recursive: true });
  return dir;
}

describe('verifyArchive', () => {
  it('finds nothing wrong with an archive as written, having read every blob', async () => {
    const result = await verifyArchive(good);
    expect(result.problems).toEqual([]);
    expect(result.chunks).toBeGreaterThan(2);
    expect(result.blobs).toBe(layout.blobs.length);
    expect(result.bytes).toBe(layout.blobs.reduce((n, b) => n + b.size, 0));
    expect(result.images).toBe(2);
  });

  it('names the chunk, entry and digest of a blob with a flipped byte, and the image it costs', async () => {
    const dir = await copyOf('flipped');
    const layer = appLayers[1]!;
    const where = (await openArchive(dir)).locateBlob(layer)!;
    await flipByte(join(dir, where.file), where.offset + 100);
    const { problems } = await verifyArchive(dir);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatchObject({ chunk: where.file, entry: where.entry, digest: layer });
    expect(problems[1]).toEqual({ image: 'sample/app:1.0', digest: layer, problem: 'a layer is damaged in the archive' });
    expect(formatProblem(problems[0]!)).toContain(`${where.file} entry ${where.entry} ${layer}: `);
  });

  it('reports a truncated chunk, a missing chunk and a damaged tar header, each by chunk, and goes on to the others', async () => {
    const dir = await copyOf('damaged');
    const reader = await openArchive(dir);
    const [first, second, third] = reader.chunks;
    await truncate(join(dir, first!.file), Math.floor(first!.bytes / 2));
    await rm(join(dir, second!.file));
    await flipByte(join(dir, third!.file), 10); // inside the first entry's name: the header checksum no longer holds
    const { problems } = await verifyArchive(dir);
    const lines = problems.map(formatProblem);
    expect(
      lines.find((l) => l.startsWith(first!.file)),
      lines.join('\n'),
    ).toBeDefined();
    expect(problems).toContainEqual({ chunk: second!.file, problem: 'is missing' });
    expect(
      lines.find((l) => l.startsWith(third!.file) && /checksum|header/i.test(l)),
      lines.join('\n'),
    ).toBeDefined();
    // The blobs those chunks held are nowhere intact now: the images that need them say so.
    expect(problems.some((p) => p.image !== undefined && p.problem.endsWith('is nowhere in the archive'))).toBe(true);
  });

  it('reports an image of run.json whose layer the archive never held', async () => {
    const dir = await writeFresh(
      'incomplete',
      layout.blobs.filter((b) => b.digest !== appLayers[0]),
    );
    const { problems } = await verifyArchive(dir);
    expect(problems).toEqual([{ image: 'sample/app:1.0', digest: appLayers[0], problem: 'a layer is nowhere in the archive' }]);
  });
  it('reports damaged blobs hashed in worker threads and here alike, in the order the archive holds them, counting every byte hashed', async () => {
    // Layers of several MiB are hashed in a worker; the small one after the first is done here, sooner.
    const { dir, layout: big } = await writeOneImageArchive('big', 'sample/big:1.0', [3 * MiB, 40 * KiB, 2 * MiB + 1]);
    const [large, small] = big.blobs;
    const damage = async (digest: Digest, at: number): Promise<{ file: string; entry: string; actual: string }> => {
      const where = (await openArchive(dir)).locateBlob(digest)!;
      await flipByte(join(dir, where.file), where.offset + at);
      const bytes = (await readFile(join(dir, where.file))).subarray(where.offset, where.offset + where.size);
      return { file: where.file, entry: where.entry, actual: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
    };
    const largeDamage = await damage(large!.digest, 2 * MiB + 7);
    const smallDamage = await damage(small!.digest, 100);

    const hashedBefore = hashedBytes();
    const result = await verifyArchive(dir);
    expect(result.problems).toEqual([
      { chunk: largeDamage.file, entry: largeDamage.entry, digest: large!.digest, problem: `the bytes hash to ${largeDamage.actual}` },
      { chunk: smallDamage.file, entry: smallDamage.entry, digest: small!.digest, problem: `the bytes hash to ${smallDamage.actual}` },
      { image: 'sample/big:1.0', digest: large!.digest, problem: 'a layer is damaged in the archive' },
      { image: 'sample/big:1.0', digest: small!.digest, problem: 'a layer is damaged in the archive' },
    ]);
    expect(result.blobs).toBe(big.blobs.length);
    expect(result.bytes).toBe(big.blobs.reduce((n, b) => n + b.size, 0));
    expect(hashedBytes() - hashedBefore).toBeGreaterThanOrEqual(result.bytes);
  });

  it('takes the hashes VerifyAhead took as the entries were written, and reads only the other blobs back', async () => {
    const bigDir = join(work, 'ahead-layout');
    const big = await writeTestLayout(bigDir, [{ name: 'sample/ahead:1.0', platforms: [{ architecture: 'amd64', layerSizes: [3 * MiB, 40 * KiB, 2 * MiB + 1] }] }]);
    const dir = join(work, 'ahead');
    const ahead = new VerifyAhead();
    try {
      const session = await startArchive(await openOciLayout(bigDir), { dir, chunkSizeBytes: 16 * MiB, onBlobWritten: ahead.note });
      for (const blob of big.blobs) await session.add(blob);
      await session.finish({ images: big.images, metadata: testRunDescription('verify-ahead-test', big.images) });
      const large = big.blobs.filter((b) => b.size >= MiB);
      expect(large).toHaveLength(2);
      for (const blob of large) await ahead.lookup('mirror_000001.tar', { ...blob, offset: (await openArchive(dir)).locateBlob(blob.digest)!.offset });

      const hashedBefore = hashedBytes();
      const result = await verifyArchive(dir, { ahead: ahead.lookup });
      expect(result.problems).toEqual([]);
      expect(result.blobs).toBe(big.blobs.length);
      expect(result.bytes).toBe(big.blobs.reduce((n, b) => n + b.size, 0));
      // Only the small blobs were read and hashed again.
      expect(hashedBytes() - hashedBefore).toBe(big.blobs.filter((b) => b.size < MiB).reduce((n, b) => n + b.size, 0));
    } finally {
      await ahead.close();
    }
  });

  it('reports a damaged entry from the hash taken ahead just as from its own read', async () => {
    const { dir, layout: big } = await writeOneImageArchive('ahead-damaged', 'sample/ahead-damaged:1.0', [3 * MiB]);
    const layer = big.blobs.find((b) => b.size === 3 * MiB)!;
    const where = (await openArchive(dir)).locateBlob(layer.digest)!;
    await flipByte(join(dir, where.file), where.offset + MiB);
    const bytes = (await readFile(join(dir, where.file))).subarray(where.offset, where.offset + where.size);
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const ahead = new VerifyAhead();
    try {
      ahead.note({ digest: layer.digest, size: layer.size, chunk: where.file, path: join(dir, where.file), offset: where.offset });
      const result = await verifyArchive(dir, { ahead: ahead.lookup });
      expect(result.problems).toEqual([
        { chunk: where.file, entry: where.entry, digest: layer.digest, problem: `the bytes hash to ${actual}` },
        { image: 'sample/ahead-damaged:1.0', digest: layer.digest, problem: 'a layer is damaged in the archive' },
      ]);
    } finally {
      await ahead.close();
    }
  });
});
