import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MediaType, REF_NAME_ANNOTATION } from '@meshmirror/shared';
import { SKOPEO_BINARY, skopeoInspectDigest } from '../../../../test/support/skopeo.ts';
import { demoImageSet, releaseLikeImageSet, sampleLayerStream, uniqueLayerBytes, writeSampleLayout, type SampleImage } from './sample-image-set.ts';

// `pnpm test` installs skopeo first (test/support/ensure-tools.ts); `pnpm test:unit` may run without it.
const hasSkopeo = spawnSync(SKOPEO_BINARY, ['--version']).error === undefined;

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-sample-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function readJson(path: string): Promise<any> {
  return JSON.parse(await readFile(path, 'utf8'));
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

describe('sampleLayerStream', () => {
  it('gives the AES-256-CTR keystream of sha256(seed), so bytes never change between versions', async () => {
    const hash = createHash('sha256');
    let chunks = 0;
    for await (const chunk of sampleLayerStream({ seed: 'pinned', size: 1000 })) {
      hash.update(chunk as Buffer);
      chunks += 1;
    }
    expect(chunks).toBe(1);
    expect(hash.digest('hex')).toBe('3fa5241635d00f72058091cfe41c774a3e0e3b95ca26f0a8c6199e54f62f01d0');
  });

  it('streams a large layer in bounded chunks', async () => {
    let total = 0;
    let largest = 0;
    for await (const chunk of sampleLayerStream({ seed: 'big', size: 5 * 1024 * 1024 + 7 })) {
      total += (chunk as Buffer).length;
      largest = Math.max(largest, (chunk as Buffer).length);
    }
    expect(total).toBe(5 * 1024 * 1024 + 7);
    expect(largest).toBeLessThanOrEqual(256 * 1024);
  });
});

describe('writeSampleLayout', () => {
  it.skipIf(!hasSkopeo)('writes a valid OCI layout whose blobs match their names and whose images skopeo reads', async () => {
    const dir = await tempDir();
    const result = await writeSampleLayout(dir, demoImageSet());

    expect(await readJson(join(dir, 'oci-layout'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const blobNames = await readdir(join(dir, 'blobs', 'sha256'));
    expect(blobNames).toHaveLength(result.uniqueBlobs);
    let bytes = 0;
    for (const name of blobNames) {
      const content = await readFile(join(dir, 'blobs', 'sha256', name));
      expect(sha256(content)).toBe(`sha256:${name}`);
      bytes += content.length;
    }
    expect(bytes).toBe(result.uniqueBytes);

    const index = await readJson(join(dir, 'index.json'));
    const names = index.manifests.map((entry: any) => entry.annotations[REF_NAME_ANNOTATION]);
    expect(names).toEqual(demoImageSet().map((image) => image.name));
    expect(index.manifests.map((entry: any) => entry.digest)).toEqual(result.images.map((image) => image.digest));

    // skopeo 1.9.3 reads only OCI-typed index.json entries; the Docker-format image is checked by push tests.
    for (const image of result.images.filter((written) => !written.mediaType.includes('docker'))) {
      expect(await skopeoInspectDigest(`oci:${dir}:${image.name}`)).toBe(image.digest);
    }
  });

  it('shares layers between images and builds an index for several platforms', async () => {
    const dir = await tempDir();
    const result = await writeSampleLayout(dir, demoImageSet());
    const blob = (digest: string): Promise<any> => readJson(join(dir, 'blobs', 'sha256', digest.slice(7)));
    const byName = new Map(result.images.map((image) => [image.name, image]));

    const app = await blob(byName.get('sample/app:1.0')!.digest);
    const base = await blob(byName.get('sample/base:1.0')!.digest);
    expect(app.mediaType).toBe(MediaType.OciManifest);
    expect(app.layers[0]).toEqual(base.layers[0]);
    const config = await blob(app.config.digest);
    expect(config.rootfs.diff_ids).toEqual(app.layers.map((layer: any) => layer.digest));
    expect(config.architecture).toBe('amd64');
    expect(config.os).toBe('linux');

    const multiarch = byName.get('sample/multiarch:1.0')!;
    expect(multiarch.mediaType).toBe(MediaType.OciIndex);
    const index = await blob(multiarch.digest);
    expect(index.manifests.map((m: any) => m.platform)).toEqual([
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux', variant: 'v8' },
    ]);

    const legacy = byName.get('sample/legacy:1.0')!;
    expect(legacy.mediaType).toBe(MediaType.DockerManifest);
    const legacyManifest = await blob(legacy.digest);
    expect(legacyManifest.config.mediaType).toBe(MediaType.DockerConfig);
    expect(legacyManifest.layers.every((layer: any) => layer.mediaType === MediaType.DockerLayerGzip)).toBe(true);
  });

  it('gives the same digests for the same input and writes a Docker manifest list for several platforms', async () => {
    const images: SampleImage[] = [
      {
        name: 'sample/list:1',
        format: 'docker',
        platforms: [
          { architecture: 'amd64', layers: [{ seed: 'a', size: 100 }] },
          { architecture: 'arm64', layers: [{ seed: 'b', size: 100 }] },
        ],
      },
    ];
    const first = await writeSampleLayout(await tempDir(), images);
    const second = await writeSampleLayout(await tempDir(), images);
    expect(second.images).toEqual(first.images);
    expect(first.images[0]?.mediaType).toBe(MediaType.DockerManifestList);
  });

  it('keeps other names in index.json and replaces the entry of a name written again', async () => {
    const dir = await tempDir();
    const layer = { seed: 'x', size: 10 };
    await writeSampleLayout(dir, [
      { name: 'one/a:1', platforms: [{ architecture: 'amd64', layers: [layer] }] },
      { name: 'one/b:1', platforms: [{ architecture: 'amd64', layers: [layer] }] },
    ]);
    const again = await writeSampleLayout(dir, [{ name: 'one/b:1', platforms: [{ architecture: 'arm64', layers: [layer] }] }]);
    const index = await readJson(join(dir, 'index.json'));
    expect(index.manifests.map((entry: any) => entry.annotations[REF_NAME_ANNOTATION])).toEqual(['one/a:1', 'one/b:1']);
    expect(index.manifests[1].digest).toBe(again.images[0]?.digest);
  });

  it('refuses names without a tag', async () => {
    await expect(writeSampleLayout(await tempDir(), [{ name: 'no-tag', platforms: [{ architecture: 'amd64', layers: [] }] }])).rejects.toMatchObject({
      code: 'MM_USAGE',
    });
  });

  it('stops when aborted and leaves no temporary files', async () => {
    const dir = await tempDir();
    const controller = new AbortController();
    const pending = writeSampleLayout(dir, [{ name: 'big/one:1', platforms: [{ architecture: 'amd64', layers: [{ seed: 'big', size: 512 * 1024 * 1024 }] }] }], {
      signal: controller.signal,
    });
    // Abort mid-layer: once the temporary file of the layer exists.
    const blobs = join(dir, 'blobs', 'sha256');
    const deadline = Date.now() + 10_000;
    while ((await readdir(blobs).catch(() => [])).length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect((await readdir(blobs))[0]).toMatch(/^\.tmp-/);
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(await readdir(blobs)).toEqual([]);
  });
});

describe('releaseLikeImageSet', () => {
  it('has at least totalBytes of unique layers, one large layer, shared layers and multi-arch indexes', () => {
    const totalBytes = 200 * 1024 * 1024;
    const images = releaseLikeImageSet({ totalBytes });
    expect(uniqueLayerBytes(images)).toBeGreaterThanOrEqual(totalBytes);
    expect(uniqueLayerBytes(images)).toBeLessThan(totalBytes * 1.01);

    const layers = images.flatMap((image) => image.platforms.flatMap((platform) => platform.layers));
    const largest = Math.max(...layers.map((layer) => layer.size));
    expect(largest).toBeGreaterThanOrEqual(totalBytes * 0.18);

    const uses = new Map<string, number>();
    for (const layer of layers) uses.set(layer.seed, (uses.get(layer.seed) ?? 0) + 1);
    const baseUses = Math.max(...uses.values());
    expect(baseUses).toBe(images.filter((image) => image.platforms.some((p) => p.architecture === 'amd64')).length);
    expect([...uses.values()].filter((count) => count > 1).length).toBeGreaterThanOrEqual(4);
    expect(images.filter((image) => image.platforms.length > 1).length).toBeGreaterThanOrEqual(2);
    expect(images.some((image) => image.format === 'docker')).toBe(true);
  });

  it('writes a layout whose unique bytes cover the requested total', async () => {
    const totalBytes = 3 * 1024 * 1024;
    const result = await writeSampleLayout(await tempDir(), releaseLikeImageSet({ totalBytes }));
    expect(result.uniqueBytes).toBeGreaterThanOrEqual(totalBytes);
    expect(result.images).toHaveLength(releaseLikeImageSet({ totalBytes }).length);
  });
});
