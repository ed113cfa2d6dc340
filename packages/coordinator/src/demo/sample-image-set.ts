/**
 * Deterministic sample images written as an OCI image layout. The README demo and `pnpm bench`
 * mirror these, so the same inputs must always give the same digests, and layers of any size must
 * be written without holding them in memory.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  createDigester,
  digestHex,
  digestOf,
  MediaType,
  MeshmirrorError,
  REF_NAME_ANNOTATION,
  sha256Digest,
  throwIfAborted,
  type Digest,
  type BlobRef,
} from '@meshmirror/shared';

/** A layer of pseudo-random bytes. The same `seed` and `size` always give identical bytes, so images share layers by repeating them. */
export interface SampleLayer {
  seed: string;
  /** Bytes in the layer. */
  size: number;
}

export interface SamplePlatform {
  architecture: string;
  /** Default `linux`. */
  os?: string;
  variant?: string;
  /** Bottom layer first. */
  layers: SampleLayer[];
}

export interface SampleImage {
  /** `repository:tag`, e.g. `sample/app:1.0`; becomes the image's `org.opencontainers.image.ref.name` in index.json. */
  name: string;
  /** One platform gives a single image manifest; several give an index (manifest list for `docker`). */
  platforms: SamplePlatform[];
  /** Media types to use. Default `oci`. */
  format?: 'oci' | 'docker';
}

export interface WrittenImage {
  name: string;
  /** Digest of the top-level manifest or index, as listed in index.json. */
  digest: Digest;
  mediaType: string;
  size: number;
}

export interface SampleLayoutResult {
  images: WrittenImage[];
  /** Distinct blobs written by this call: layers, configs, manifests and indexes. */
  uniqueBlobs: number;
  /** Total size of those distinct blobs. */
  uniqueBytes: number;
  /** Of `uniqueBytes`, the bytes of manifests and indexes (served by registries as manifests, not blobs). */
  manifestBytes: number;
}

export interface WriteSampleLayoutOptions {
  signal?: AbortSignal;
}

interface BlobDescriptor {
  mediaType: string;
  digest: Digest;
  size: number;
}

interface PlatformDescriptor extends BlobDescriptor {
  platform: { architecture: string; os: string; variant?: string };
}

interface IndexJsonEntry {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

const LAYOUT_VERSION = '1.0.0';
const CHUNK_BYTES = 256 * 1024;
/** A fixed timestamp keeps configs, and with them every digest, reproducible. */
const CREATED = '2024-01-01T00:00:00Z';
const ZEROS = Buffer.alloc(CHUNK_BYTES);

/**
 * The pseudo-random bytes of a sample layer: an AES-256-CTR keystream keyed by sha256(seed).
 * Streamed in fixed chunks, so memory does not grow with the layer size.
 */
export function sampleLayerStream(layer: SampleLayer): Readable {
  assertSize(layer);
  const key = createHash('sha256').update(layer.seed, 'utf8').digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  let remaining = layer.size;
  return new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      if (remaining === 0) {
        this.push(null);
        return;
      }
      const length = Math.min(remaining, CHUNK_BYTES);
      remaining -= length;
      this.push(cipher.update(ZEROS.subarray(0, length)));
    },
  });
}

/**
 * Writes the images as an OCI image layout in `dir` (created when missing). Blobs already in the
 * layout are kept; index.json keeps entries for other names and replaces entries with the same name.
 */
export async function writeSampleLayout(dir: string, images: SampleImage[], options: WriteSampleLayoutOptions = {}): Promise<SampleLayoutResult> {
  const { signal } = options;
  throwIfAborted(signal);
  for (const image of images) validateImage(image);
  const names = new Set<string>();
  for (const image of images) {
    if (names.has(image.name)) throw usage(`sample image "${image.name}" is listed twice`);
    names.add(image.name);
  }

  const blobsDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobsDir, { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));

  const writer = new BlobWriter(blobsDir, signal);
  const written: WrittenImage[] = [];
  for (const image of images) {
    written.push(await writeImage(writer, image));
  }
  await writeIndexJson(dir, written);
  return { images: written, uniqueBlobs: writer.blobCount, uniqueBytes: writer.byteCount, manifestBytes: writer.manifestByteCount };
}

async function writeImage(writer: BlobWriter, image: SampleImage): Promise<WrittenImage> {
  const format = image.format ?? 'oci';
  const types = format === 'docker' ? DOCKER_TYPES : OCI_TYPES;
  const manifests: PlatformDescriptor[] = [];
  for (const platform of image.platforms) {
    const layers: BlobDescriptor[] = [];
    for (const layer of platform.layers) {
      const { digest, size } = await writer.writeLayer(layer);
      layers.push({ mediaType: types.layer, digest, size });
    }
    const os = platform.os ?? 'linux';
    const config = imageConfig(image.name, platform, os, layers);
    const configDescriptor = { mediaType: types.config, ...(await writer.writeBytes(config, 'config')) };
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: types.manifest,
      config: configDescriptor,
      layers,
    });
    const manifestBlob = await writer.writeBytes(manifest, 'manifest');
    const descriptorPlatform: PlatformDescriptor['platform'] = { architecture: platform.architecture, os };
    if (platform.variant !== undefined) descriptorPlatform.variant = platform.variant;
    manifests.push({ mediaType: types.manifest, ...manifestBlob, platform: descriptorPlatform });
  }

  if (manifests.length === 1) {
    const [only] = manifests;
    if (only === undefined) throw usage(`sample image "${image.name}" has no platform`);
    return { name: image.name, digest: only.digest, mediaType: only.mediaType, size: only.size };
  }
  const index = JSON.stringify({ schemaVersion: 2, mediaType: types.index, manifests });
  const indexBlob = await writer.writeBytes(index, 'manifest');
  return { name: image.name, digest: indexBlob.digest, mediaType: types.index, size: indexBlob.size };
}

const OCI_TYPES = {
  layer: MediaType.OciLayerGzip,
  config: MediaType.OciConfig,
  manifest: MediaType.OciManifest,
  index: MediaType.OciIndex,
};
const DOCKER_TYPES = {
  layer: MediaType.DockerLayerGzip,
  config: MediaType.DockerConfig,
  manifest: MediaType.DockerManifest,
  index: MediaType.DockerManifestList,
};

/**
 * A valid image config. The layers are not real tar streams, so `diff_ids` are the layers' own
 * digests: enough for registries and copy tools, which never unpack them.
 */
function imageConfig(name: string, platform: SamplePlatform, os: string, layers: BlobDescriptor[]): string {
  const config: Record<string, unknown> = {
    created: CREATED,
    architecture: platform.architecture,
    os,
  };
  if (platform.variant !== undefined) config['variant'] = platform.variant;
  config['config'] = {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    Labels: { 'org.opencontainers.image.title': name, 'io.meshmirror.sample': 'true' },
  };
  config['rootfs'] = { type: 'layers', diff_ids: layers.map((layer) => layer.digest) };
  config['history'] = platform.layers.map((layer) => ({
    created: CREATED,
    created_by: `meshmirror sample layer ${layer.seed} (${layer.size} bytes)`,
  }));
  return JSON.stringify(config);
}

/** Writes blobs through a temporary file and a rename, so a crash never leaves a partial blob under its digest name. */
class BlobWriter {
  readonly #blobsDir: string;
  readonly #signal: AbortSignal | undefined;
  /** Layers already written in this run, by seed and size: repeated layers are generated once. */
  readonly #layers = new Map<string, BlobRef>();
  readonly #seen = new Set<Digest>();
  blobCount = 0;
  byteCount = 0;
  manifestByteCount = 0;

  constructor(blobsDir: string, signal: AbortSignal | undefined) {
    this.#blobsDir = blobsDir;
    this.#signal = signal;
  }

  async writeLayer(layer: SampleLayer): Promise<BlobRef> {
    const key = `${layer.size}\u0000${layer.seed}`;
    const known = this.#layers.get(key);
    if (known !== undefined) return known;
    throwIfAborted(this.#signal);

    const temp = this.#tempPath();
    const hash = createDigester();
    const hashing = async function* (chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of chunks) {
        hash.update(chunk);
        yield chunk;
      }
    };
    try {
      await pipeline(sampleLayerStream(layer), hashing, createWriteStream(temp, { flags: 'wx' }), {
        signal: this.#signal,
      });
    } catch (error) {
      await rm(temp, { force: true });
      if (this.#signal?.aborted === true) throwIfAborted(this.#signal);
      throw error;
    }
    const digest = digestOf(hash);
    await this.#commit(temp, digest, layer.size);
    const result = { digest, size: layer.size };
    this.#layers.set(key, result);
    return result;
  }

  async writeBytes(content: string, kind: 'config' | 'manifest'): Promise<BlobRef> {
    throwIfAborted(this.#signal);
    const bytes = Buffer.from(content, 'utf8');
    const digest = sha256Digest(bytes);
    if (!this.#seen.has(digest)) {
      if (kind === 'manifest') this.manifestByteCount += bytes.length;
      const temp = this.#tempPath();
      try {
        await writeFile(temp, bytes, { flag: 'wx' });
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
      await this.#commit(temp, digest, bytes.length);
    }
    return { digest, size: bytes.length };
  }

  async #commit(temp: string, digest: Digest, size: number): Promise<void> {
    const target = join(this.#blobsDir, digestHex(digest));
    const existing = await stat(target).catch(() => undefined);
    if (existing?.size === size) {
      // Same name means same content; keep the blob that is already there.
      await rm(temp, { force: true });
    } else {
      await rename(temp, target);
    }
    if (!this.#seen.has(digest)) {
      this.#seen.add(digest);
      this.blobCount += 1;
      this.byteCount += size;
    }
  }

  #tempPath(): string {
    return join(this.#blobsDir, `.tmp-${randomBytes(8).toString('hex')}`);
  }
}

async function writeIndexJson(dir: string, written: WrittenImage[]): Promise<void> {
  const file = join(dir, 'index.json');
  const replaced = new Set(written.map((image) => image.name));
  const kept: IndexJsonEntry[] = [];
  const previous = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (previous !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(previous);
    } catch (cause) {
      throw new MeshmirrorError('MM_MANIFEST_INVALID', `${file} is not JSON`, { cause });
    }
    const manifests = (parsed as { manifests?: unknown }).manifests;
    if (Array.isArray(manifests)) {
      for (const entry of manifests as IndexJsonEntry[]) {
        const name = entry.annotations?.[REF_NAME_ANNOTATION];
        if (name === undefined || !replaced.has(name)) kept.push(entry);
      }
    }
  }
  const entries: IndexJsonEntry[] = [
    ...kept,
    ...written.map((image) => ({
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.size,
      annotations: { [REF_NAME_ANNOTATION]: image.name },
    })),
  ];
  const temp = `${file}.tmp-${randomBytes(8).toString('hex')}`;
  await writeFile(temp, JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: entries }, null, 2));
  await rename(temp, file);
}

function validateImage(image: SampleImage): void {
  const slash = image.name.lastIndexOf('/');
  const colon = image.name.lastIndexOf(':');
  if (colon <= slash || colon === image.name.length - 1) {
    throw usage(`sample image name "${image.name}" must be "repository:tag"`);
  }
  if (image.platforms.length === 0) throw usage(`sample image "${image.name}" has no platform`);
  for (const platform of image.platforms) {
    if (platform.layers.length === 0) throw usage(`sample image "${image.name}" (${platform.architecture}) has no layer`);
    for (const layer of platform.layers) assertSize(layer);
  }
}

function assertSize(layer: SampleLayer): void {
  if (!Number.isSafeInteger(layer.size) || layer.size < 0) {
    throw usage(`sample layer "${layer.seed}" has an invalid size ${layer.size}`);
  }
}

function usage(message: string): MeshmirrorError {
  return new MeshmirrorError('MM_USAGE', message);
}

const KiB = 1024;

/**
 * About 3.5 MB of small images for the README demo: a base layer shared by every image, an app in
 * two versions sharing a runtime layer, a multi-arch (amd64 + arm64) index and a Docker-format image.
 */
export function demoImageSet(): SampleImage[] {
  const base: SampleLayer = { seed: 'demo/base', size: 1024 * KiB };
  const runtime: SampleLayer = { seed: 'demo/runtime', size: 512 * KiB };
  const baseArm64: SampleLayer = { seed: 'demo/base-arm64', size: 768 * KiB };
  return [
    { name: 'sample/base:1.0', platforms: [{ architecture: 'amd64', layers: [base] }] },
    {
      name: 'sample/app:1.0',
      platforms: [{ architecture: 'amd64', layers: [base, runtime, { seed: 'demo/app-1.0', size: 256 * KiB }] }],
    },
    {
      name: 'sample/app:1.1',
      platforms: [{ architecture: 'amd64', layers: [base, runtime, { seed: 'demo/app-1.1', size: 320 * KiB }] }],
    },
    {
      name: 'sample/multiarch:1.0',
      platforms: [
        { architecture: 'amd64', layers: [base, { seed: 'demo/multiarch-amd64', size: 192 * KiB }] },
        {
          architecture: 'arm64',
          variant: 'v8',
          layers: [baseArm64, { seed: 'demo/multiarch-arm64', size: 192 * KiB }],
        },
      ],
    },
    {
      name: 'sample/legacy:1.0',
      format: 'docker',
      platforms: [{ architecture: 'amd64', layers: [base, { seed: 'demo/legacy', size: 300 * KiB }] }],
    },
  ];
}

export interface ReleaseLikeImageSetOptions {
  /** Lower bound on the unique layer bytes of the whole set. */
  totalBytes: number;
}

/**
 * A set shaped like an OpenShift release payload, for `pnpm bench`: per-architecture base layers
 * shared by every image, middle layers shared by groups of images, a unique top layer per image,
 * three multi-arch (amd64 + arm64) indexes, one Docker-format image and one large layer of about a
 * fifth of the total. Unique layer bytes are at least `totalBytes`.
 */
export function releaseLikeImageSet(options: ReleaseLikeImageSetOptions): SampleImage[] {
  const { totalBytes } = options;
  if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) {
    throw usage(`releaseLikeImageSet: totalBytes must be a positive integer, got ${totalBytes}`);
  }
  const share = (fraction: number): number => Math.max(1, Math.floor(totalBytes * fraction));
  const componentCount = 10;
  const multiArchCount = 3;

  const baseAmd64: SampleLayer = { seed: 'release/base-amd64', size: share(0.08) };
  const baseArm64: SampleLayer = { seed: 'release/base-arm64', size: share(0.04) };
  const middleAmd64: SampleLayer[] = [0, 1, 2].map((i) => ({ seed: `release/middle-${i}-amd64`, size: share(0.04) }));
  const middleArm64: SampleLayer = { seed: 'release/middle-arm64', size: share(0.03) };
  const large: SampleLayer = { seed: 'release/large', size: share(0.2) };

  const fixed = [baseAmd64, baseArm64, ...middleAmd64, middleArm64, large].reduce((sum, l) => sum + l.size, 0);
  const topCount = componentCount + multiArchCount;
  const remaining = Math.max(0, totalBytes - fixed);
  const topSize = Math.max(1, Math.ceil(remaining / topCount));
  const top = (name: string, arch: string): SampleLayer => ({ seed: `release/top-${name}-${arch}`, size: topSize });

  const images: SampleImage[] = [];
  for (let i = 0; i < componentCount; i++) {
    const component = i === 0 ? 'release' : `component-${String(i).padStart(2, '0')}`;
    const middle = middleAmd64[i % middleAmd64.length] ?? baseAmd64;
    const amd64Layers = [baseAmd64, middle, top(component, 'amd64')];
    if (i === componentCount - 1) amd64Layers.splice(2, 0, large);
    const platforms: SamplePlatform[] = [{ architecture: 'amd64', layers: amd64Layers }];
    if (i < multiArchCount) {
      platforms.push({ architecture: 'arm64', variant: 'v8', layers: [baseArm64, middleArm64, top(component, 'arm64')] });
    }
    const image: SampleImage = { name: `ocp-release/${component}:4.16.0`, platforms };
    if (i === componentCount - 2) image.format = 'docker';
    images.push(image);
  }
  return images;
}

/** Sum of the sizes of the distinct layers (by seed and size) in a set of sample images. */
export function uniqueLayerBytes(images: SampleImage[]): number {
  const seen = new Map<string, number>();
  for (const image of images) {
    for (const platform of image.platforms) {
      for (const layer of platform.layers) seen.set(`${layer.size}\u0000${layer.seed}`, layer.size);
    }
  }
  let total = 0;
  for (const size of seen.values()) total += size;
  return total;
}
