/**
 * Test support: writes a small OCI image layout by hand (random layers, real configs, manifests and
 * indexes) and lists its blobs in archive order. Tests in `packages/agent` use it because the agent
 * must not import the coordinator's sample image set.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, MediaType, REF_NAME_ANNOTATION, sha256Digest, type Descriptor, type Digest, type BlobRef } from '@meshmirror/shared';

export interface TestImage {
  /** Written as `org.opencontainers.image.ref.name`. */
  name: string;
  /** One platform gives an image manifest; several give an index. */
  platforms: Array<{ architecture: string; layerSizes: number[] }>;
}

export interface TestLayout {
  images: Array<{ name: string; descriptor: Descriptor }>;
  /** Every blob once: layers, config, manifest(s), then the index, image by image. */
  blobs: BlobRef[];
}

export async function writeTestLayout(dir: string, images: TestImage[]): Promise<TestLayout> {
  const blobsDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobsDir, { recursive: true });
  const blobs = new Map<Digest, number>();
  const put = async (bytes: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = sha256Digest(bytes);
    if (!blobs.has(digest)) {
      await writeFile(join(blobsDir, digestHex(digest)), bytes);
      blobs.set(digest, bytes.length);
    }
    return { mediaType, digest, size: bytes.length };
  };

  const written: TestLayout['images'] = [];
  for (const image of images) {
    const manifests: Descriptor[] = [];
    for (const platform of image.platforms) {
      const layers: Descriptor[] = [];
      for (const size of platform.layerSizes) layers.push(await put(randomBytes(size), MediaType.OciLayer));
      const config = Buffer.from(
        JSON.stringify({
          architecture: platform.architecture,
          os: 'linux',
          rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
          config: { Labels: { title: image.name } },
        }),
      );
      const configDescriptor = await put(config, MediaType.OciConfig);
      const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDescriptor, layers }));
      const manifestDescriptor = await put(manifest, MediaType.OciManifest);
      manifests.push({ ...manifestDescriptor, platform: { architecture: platform.architecture, os: 'linux' } });
    }
    const [only] = manifests;
    if (manifests.length === 1 && only !== undefined) {
      written.push({ name: image.name, descriptor: { mediaType: only.mediaType, digest: only.digest, size: only.size } });
    } else {
      const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
      written.push({ name: image.name, descriptor: await put(index, MediaType.OciIndex) });
    }
  }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: written.map((image) => ({ ...image.descriptor, annotations: { [REF_NAME_ANNOTATION]: image.name } })),
    }),
  );
  return { images: written, blobs: [...blobs].map(([digest, size]) => ({ digest, size })) };
}
