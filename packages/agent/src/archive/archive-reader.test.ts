import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pack as tarPack, type Header } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestMismatchError, digestHex, MeshmirrorError, sha256Digest, type Digest } from '@meshmirror/shared';
import { openOciLayout } from '../layout/oci-layout-reader.ts';
import { writeTestLayout, type TestLayout } from '../layout/test-layout-fixture.ts';
import { openArchive } from './archive-reader.ts';
import { writeArchive } from './archive-writer.ts';
import { testRunDescription } from './test-run-fixture.ts';

const execFileAsync = promisify(execFile);

const KiB = 1024;
let work: string;
let layoutDir: string;
let layout: TestLayout;
let archiveDir: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-archive-reader-'));
  layoutDir = join(work, 'layout');
  layout = await writeTestLayout(layoutDir, [
    { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layerSizes: [30 * KiB, 30 * KiB, 30 * KiB] }] },
    {
      name: 'registry.example.com/team/multi:2.0',
      platforms: [
        { architecture: 'amd64', layerSizes: [30 * KiB, 1] },
        { architecture: 'arm64', layerSizes: [0] },
      ],
    },
  ]);
  archiveDir = await writeFreshArchive('archive');
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function writeFreshArchive(name: string): Promise<string> {
  const dir = join(work, name);
  await writeArchive(await openOciLayout(layoutDir), {
    dir,
    chunkSizeBytes: 64 * KiB,
    images: layout.images,
    blobs: layout.blobs,
    metadata: testRunDescription('reader-test', layout.images),
  });
  return dir;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function sourceBlob(digest: Digest): Promise<Buffer> {
  return readFile(join(layoutDir, 'blobs', 'sha256', digestHex(digest)));
}

interface CraftedEntry {
  name: string;
  data?: Buffer | string;
  type?: Header['type'];
  linkname?: string;
}

/** Writes a tar by hand, for archives our writer would never produce. */
async function writeTar(path: string, entries: CraftedEntry[]): Promise<void> {
  const pack = tarPack();
  const collected = readAll(pack as unknown as Readable);
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const header = { name: entry.name, type: entry.type ?? 'file', ...(entry.linkname === undefined ? {} : { linkname: entry.linkname }) };
      const done = (error?: Error | null): void => (error ? reject(error) : resolve());
      if (header.type === 'file') pack.entry(header, Buffer.from(entry.data ?? ''), done);
      else pack.entry(header, done).end(null);
    });
  }
  pack.finalize();
  await writeFile(path, await collected);
}

/**
 * One crafted chunk that is a complete, single-chunk archive apart from the `extra` entries; `run`
 * replaces fields of its run.json (`undefined` removes one).
 */
async function writeCraftedArchive(
  name: string,
  extra: CraftedEntry[],
  manifestBlobs?: unknown[],
  run: Record<string, unknown> = {},
  chunkManifest: Record<string, unknown> = {},
): Promise<string> {
  const dir = join(work, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const archiveId = 'crafted';
  const entries: CraftedEntry[] = [
    ...extra,
    { name: 'oci-layout', data: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', data: JSON.stringify({ schemaVersion: 2, manifests: [] }) },
    {
      name: 'meshmirror/run.json',
      data: JSON.stringify({ schemaVersion: 1, ...testRunDescription('crafted'), archive: { archiveId, chunkCount: 1, writtenAt: 'now' }, ...run }),
    },
    { name: 'meshmirror/chunk-000001.json', data: JSON.stringify({ chunk: 1, archiveId, blobs: manifestBlobs ?? [], ...chunkManifest }) },
  ];
  await writeTar(join(dir, 'mirror_000001.tar'), entries);
  return dir;
}

async function openError(dir: string): Promise<MeshmirrorError> {
  const error = await openArchive(dir).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(MeshmirrorError);
  expect(error).toMatchObject({ code: 'MM_ARCHIVE_INVALID' });
  return error as MeshmirrorError;
}

describe('openArchive', () => {
  it('serves every blob, whole and in ranges, with the same bytes as the source', async () => {
    const archive = await openArchive(archiveDir);
    expect(archive.kind).toBe('archive');
    expect(archive.chunks.length).toBeGreaterThan(1);
    expect(await archive.images()).toEqual(
      layout.images.map((image) => ({
        name: image.name,
        descriptor: { ...image.descriptor, annotations: { 'org.opencontainers.image.ref.name': image.name } },
      })),
    );
    expect(await archive.runMetadata()).toEqual({
      schemaVersion: 1,
      ...testRunDescription('reader-test', layout.images),
      archive: { archiveId: archive.archiveId, chunkCount: archive.chunks.length, writtenAt: expect.any(String) },
    });
    for (const blob of layout.blobs) {
      const expected = await sourceBlob(blob.digest);
      expect(await archive.blobSize(blob.digest)).toBe(blob.size);
      expect((await readAll(await archive.openBlob(blob.digest))).equals(expected)).toBe(true);
      if (blob.size > 100) {
        expect((await readAll(await archive.openBlob(blob.digest, { start: 7, end: 99 }))).equals(expected.subarray(7, 100))).toBe(true);
        expect((await readAll(await archive.openBlob(blob.digest, { start: blob.size - 3 }))).equals(expected.subarray(-3))).toBe(true);
      }
    }
    const unknown = sha256Digest('not in the archive');
    expect(await archive.blobSize(unknown)).toBeUndefined();
    await expect(archive.openBlob(unknown)).rejects.toMatchObject({ code: 'MM_NOT_FOUND' });
    await expect(archive.blobSize('sha256:../../etc/passwd')).rejects.toMatchObject({ code: 'MM_MANIFEST_INVALID' });
  });

  it('detects a changed byte in a blob when it is read, naming the chunk and entry', async () => {
    const dir = await writeFreshArchive('tampered-byte');
    const victim = layout.blobs.find((blob) => blob.size === 30 * KiB);
    if (victim === undefined) throw new Error('no 30 KiB blob');
    const before = await openArchive(dir);
    const location = before.locateBlob(victim.digest);
    if (location === undefined) throw new Error('blob not located');
    const handle = await open(join(dir, location.file), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, location.offset + 5000);
    byte[0] = (byte[0] ?? 0) ^ 0x01;
    await handle.write(byte, 0, 1, location.offset + 5000);
    await handle.close();

    const archive = await openArchive(dir);
    const error = await readAll(await archive.openBlob(victim.digest)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toContain(location.file);
    expect((error as Error).message).toContain(`blobs/sha256/${digestHex(victim.digest)}`);
    // Ranges are not checked by the reader (a consumer assembling ranges verifies the whole).
    expect(await readAll(await archive.openBlob(victim.digest, { start: 4990, end: 5010 }))).toHaveLength(21);
  });

  it('refuses an entry with ../ in its name, naming chunk and entry', async () => {
    const error = await openError(await writeCraftedArchive('traversal', [{ name: '../evil', data: 'x' }]));
    expect(error.message).toContain('mirror_000001.tar');
    expect(error.message).toContain('../evil');
  });

  it('refuses a ../ path hidden in a pax header', async () => {
    const error = await openError(await writeCraftedArchive('pax-traversal', [{ name: 'blobs/../../ünïcode', data: 'x' }]));
    expect(error.message).toContain('blobs/../../ünïcode');
  });

  it('refuses an absolute path', async () => {
    const error = await openError(await writeCraftedArchive('absolute', [{ name: '/etc/evil', data: 'x' }]));
    expect(error.message).toContain('/etc/evil');
  });

  it('refuses a symlink entry', async () => {
    const name = `blobs/sha256/${'a'.repeat(64)}`;
    const error = await openError(await writeCraftedArchive('symlink', [{ name, type: 'symlink', linkname: '/etc/passwd' }]));
    expect(error.message).toContain('mirror_000001.tar');
    expect(error.message).toContain(name);
    expect(error.message).toContain('symbolic link');
  });

  it('refuses a hard link entry', async () => {
    const error = await openError(await writeCraftedArchive('hardlink', [{ name: 'index-copy', type: 'link', linkname: 'index.json' }]));
    expect(error.message).toContain('hard link');
  });

  it('refuses a blob entry whose name is not a sha256 digest', async () => {
    const error = await openError(await writeCraftedArchive('bad-name', [{ name: 'blobs/sha256/not-a-digest', data: 'x' }]));
    expect(error.message).toContain('blobs/sha256/not-a-digest');
  });

  it('refuses a chunk manifest offset outside the file', async () => {
    const data = 'hello';
    const digest = sha256Digest(data);
    const entry = { name: `blobs/sha256/${digestHex(digest)}`, data };
    const error = await openError(await writeCraftedArchive('offset-outside', [entry], [{ digest, size: 5, offset: 10_000_000 }]));
    expect(error.message).toContain('meshmirror/chunk-000001.json');
    expect(error.message).toContain('outside the file');
  });

  it('refuses a chunk manifest that names another digest than the entry at its offset', async () => {
    const data = 'hello';
    const entry = { name: `blobs/sha256/${digestHex(sha256Digest(data))}`, data };
    const other = sha256Digest('other');
    // 512: the data of the first entry starts right after its header.
    const error = await openError(await writeCraftedArchive('wrong-digest', [entry], [{ digest: other, size: 5, offset: 512 }]));
    expect(error.message).toContain(other);
    expect(error.message).toContain(entry.name);
  });

  it('reads a run.json written before versions as the current version', async () => {
    const legacyImage = { ...testRunDescription('legacy', layout.images).images[0]!, origin: undefined };
    const archive = await openArchive(await writeCraftedArchive('legacy-run', [], [], { schemaVersion: undefined, images: [legacyImage] }));
    expect(await archive.runMetadata()).toMatchObject({ schemaVersion: 1, images: [{ source: 'sample/app:1.0', origin: 'archive', status: 'archived' }] });
  });

  it('refuses a run.json from a newer meshmirror, naming the chunk and entry and both versions', async () => {
    const error = await openError(await writeCraftedArchive('newer-run', [], [], { schemaVersion: 3, images: { changed: 'shape' } }));
    expect(error.message).toBe(
      'mirror_000001.tar: entry "meshmirror/run.json" was written by a newer meshmirror (run.json version 3; this build reads up to 2); ' +
        'use a meshmirror at least as new as the one that wrote the archive',
    );
    expect(error.data).toEqual({ file: 'mirror_000001.tar', entry: 'meshmirror/run.json' });
  });

  it('refuses a malformed run.json, naming the chunk, the entry and the field', async () => {
    const image = { ...testRunDescription('bad', layout.images).images[0]!, kind: 'sideloaded' };
    const error = await openError(await writeCraftedArchive('bad-run', [], [], { images: [image] }));
    expect(error.message).toMatch(/^mirror_000001\.tar: entry "meshmirror\/run\.json" is not meshmirror run metadata \(run\.json version 1\) at images\[0\]\.kind: /);
  });

  it('writes a versioned chunk manifest, and reads one written before versions', async () => {
    const dir = await writeFreshArchive('versioned-chunks');
    const { stdout } = await execFileAsync('tar', ['-xOf', join(dir, 'mirror_000001.tar'), 'meshmirror/chunk-000001.json']);
    expect(JSON.parse(stdout)).toMatchObject({ schemaVersion: 1, chunk: 1 });
    // The crafted chunk's manifest has no version, as every chunk written before it had.
    const legacy = await openArchive(await writeCraftedArchive('legacy-chunk', []));
    expect(legacy.chunks).toHaveLength(1);
  });

  it('refuses a chunk manifest from a newer meshmirror, naming the chunk, the entry and both versions', async () => {
    const error = await openError(await writeCraftedArchive('newer-chunk', [], [], {}, { schemaVersion: 2, blobs: 'changed shape' }));
    expect(error.message).toBe(
      'mirror_000001.tar: entry "meshmirror/chunk-000001.json" was written by a newer meshmirror (chunk manifest version 2; this build reads up to 1); ' +
        'use a meshmirror at least as new as the one that wrote the archive',
    );
  });

  it('refuses a folder with a chunk missing', async () => {
    const dir = await writeFreshArchive('missing-chunk');
    await rm(join(dir, 'mirror_000002.tar'));
    const error = await openError(dir);
    expect(error.message).toContain('mirror_000002.tar is missing');
  });

  it('refuses a folder whose last chunk is missing', async () => {
    const dir = await writeFreshArchive('missing-last');
    const archive = await openArchive(dir);
    const last = archive.chunks.at(-1);
    if (last === undefined) throw new Error('no chunks');
    await rm(join(dir, last.file));
    const error = await openError(dir);
    expect(error.message).toContain('is a later chunk missing?');
  });

  it('refuses chunks from two different writes mixed in one folder', async () => {
    const first = await writeFreshArchive('mixed-a');
    const second = await writeFreshArchive('mixed-b');
    await copyFile(join(second, 'mirror_000001.tar'), join(first, 'mirror_000001.tar'));
    const error = await openError(first);
    expect(error.message).toContain('mirror_000001.tar');
    expect(error.message).toContain('another archive');
  });
});
