import { cp, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestMismatchError, digestHex, sha256Digest, type Digest } from '@meshmirror/shared';
import { openImageFolder } from './image-folder.ts';
import { openOciLayout } from './oci-layout-reader.ts';
import { writeTestLayout, type TestLayout } from './test-layout-fixture.ts';

let work: string;
let layoutDir: string;
let layout: TestLayout;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-layout-reader-'));
  layoutDir = join(work, 'layout');
  layout = await writeTestLayout(layoutDir, [
    { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layerSizes: [4096, 0] }] },
    {
      name: 'sample/multi:1.0',
      platforms: [
        { architecture: 'amd64', layerSizes: [100] },
        { architecture: 'arm64', layerSizes: [200] },
      ],
    },
  ]);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function blobFile(dir: string, digest: Digest): string {
  return join(dir, 'blobs', 'sha256', digestHex(digest));
}

async function copyLayout(name: string): Promise<string> {
  const dir = join(work, name);
  await cp(layoutDir, dir, { recursive: true });
  return dir;
}

describe('openOciLayout', () => {
  it('lists index.json images and reads blobs whole and in ranges', async () => {
    const reader = await openOciLayout(layoutDir);
    expect((await reader.images()).map((image) => [image.name, image.descriptor.digest])).toEqual(layout.images.map((image) => [image.name, image.descriptor.digest]));
    for (const blob of layout.blobs) {
      const bytes = await readFile(blobFile(layoutDir, blob.digest));
      expect(await reader.blobSize(blob.digest)).toBe(blob.size);
      expect((await readAll(await reader.openBlob(blob.digest))).equals(bytes)).toBe(true);
      if (blob.size > 10) expect((await readAll(await reader.openBlob(blob.digest, { start: 3, end: 9 }))).equals(bytes.subarray(3, 10))).toBe(true);
    }
    expect(await reader.blobSize(sha256Digest('absent'))).toBeUndefined();
    await expect(reader.openBlob(sha256Digest('absent'))).rejects.toMatchObject({ code: 'MM_NOT_FOUND' });
    await expect(reader.openBlob(layout.blobs[0]!.digest, { start: 0, end: 1_000_000 })).rejects.toMatchObject({ code: 'MM_USAGE' });
  });

  it('is what openImageFolder opens for a folder with an oci-layout file', async () => {
    expect((await openImageFolder(layoutDir)).kind).toBe('layout');
    await expect(openImageFolder(work)).rejects.toThrow(/neither an OCI image layout/);
  });

  it('never turns a malformed digest into a path', async () => {
    const reader = await openOciLayout(layoutDir);
    await expect(reader.blobSize('sha256:../../../etc/passwd')).rejects.toMatchObject({ code: 'MM_MANIFEST_INVALID' });
    await expect(reader.openBlob('sha256:../../oci-layout')).rejects.toMatchObject({ code: 'MM_MANIFEST_INVALID' });
  });

  it('refuses a blob file that is a symbolic link', async () => {
    const dir = await copyLayout('symlinked-blob');
    const blob = layout.blobs.find((b) => b.size === 4096)!;
    await rm(blobFile(dir, blob.digest));
    await writeFile(join(work, 'outside'), 'secret outside the layout');
    await symlink(join(work, 'outside'), blobFile(dir, blob.digest));
    const reader = await openOciLayout(dir);
    await expect(reader.blobSize(blob.digest)).rejects.toThrow(/symbolic link/);
    await expect(reader.openBlob(blob.digest)).rejects.toThrow(new RegExp(`blobs/sha256/${digestHex(blob.digest)}.*symbolic link`));
  });

  it('refuses a blobs folder that is a symbolic link', async () => {
    const dir = await copyLayout('symlinked-blobs');
    await rename(join(dir, 'blobs'), join(work, 'blobs-elsewhere'));
    await symlink(join(work, 'blobs-elsewhere'), join(dir, 'blobs'));
    await expect(openOciLayout(dir)).rejects.toMatchObject({ code: 'MM_ARCHIVE_INVALID', message: expect.stringContaining('symbolic link') });
  });

  it('fails a whole read of a blob whose bytes changed, naming the blob file; ranges are left to the consumer', async () => {
    const dir = await copyLayout('corrupt');
    const blob = layout.blobs.find((b) => b.size === 4096)!;
    const bytes = await readFile(blobFile(dir, blob.digest));
    bytes[4000] = (bytes[4000] ?? 0) ^ 0x80;
    await writeFile(blobFile(dir, blob.digest), bytes);
    const reader = await openOciLayout(dir);
    const error = await readAll(await reader.openBlob(blob.digest)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toContain(`blobs/sha256/${digestHex(blob.digest)}`);
    expect((await readAll(await reader.openBlob(blob.digest, { start: 3990, end: 4010 }))).equals(bytes.subarray(3990, 4011))).toBe(true);
  });

  it('refuses a folder without oci-layout or with a broken index.json', async () => {
    const dir = await copyLayout('broken-index');
    await writeFile(join(dir, 'index.json'), '{"schemaVersion": 2, "manifests": [{"digest": "nope"}]}');
    await expect(openOciLayout(dir)).rejects.toMatchObject({ code: 'MM_ARCHIVE_INVALID', message: expect.stringContaining('index.json') });
    await rm(join(dir, 'oci-layout'));
    await expect(openOciLayout(dir)).rejects.toThrow(/oci-layout is missing/);
  });
});
