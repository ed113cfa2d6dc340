/**
 * Writes small, real images into an OCI image layout folder (`oci-layout`, `index.json` with
 * `org.opencontainers.image.ref.name`, `blobs/sha256/`), ready for `pushLayout` (push-layout.ts).
 *
 * Unlike the demo's sample images, layers here are real tar streams (gzip by default) with correct
 * `rootfs.diff_ids`, so tools that unpack layers (skopeo + tar, release and catalog scanners) see
 * real files. Everything is deterministic: tar entries have mtime 0 and uid/gid 0, configs carry a
 * fixed `created`, and JSON is written with a fixed key order, so the same input gives the same
 * digests on every run.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import tar from 'tar-stream';
import { digestHex, MediaType, REF_NAME_ANNOTATION, sha256Digest, type Digest } from '@meshmirror/shared';

/** A layer blob: the (possibly compressed) bytes, their digest, and the digest of the uncompressed tar. */
export interface Layer {
  bytes: Uint8Array;
  digest: Digest;
  diffId: Digest;
  mediaType: string;
}

export interface TarEntry {
  /** Path inside the layer, relative (`etc/os-release`); a leading `/` is dropped. */
  path: string;
  /** File content; ignored for directories and symlinks. */
  content?: string | Uint8Array;
  /** Default `file`. */
  type?: 'file' | 'directory' | 'symlink';
  /** Target of a symlink. */
  linkname?: string;
  /** Default 0o644 for files, 0o755 for directories, 0o777 for symlinks. */
  mode?: number;
}

export interface ImageConfigOptions {
  /** `config.Labels`. */
  labels?: Record<string, string>;
  /** Default `amd64`. */
  architecture?: string;
  /** Default `linux`. */
  os?: string;
  variant?: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
}

export interface IndexChild extends Omit<ImageConfigOptions, 'architecture'> {
  architecture: string;
  layers: Layer[];
}

export interface BuiltImage {
  /** The `repository:tag` name in index.json; undefined for unnamed (child) manifests. */
  name: string | undefined;
  /** Digest of the manifest (or index) bytes: what a registry reports after the push. */
  digest: Digest;
  mediaType: string;
  size: number;
  /** The exact manifest (or index) bytes. */
  manifest: Uint8Array;
  /** Config and layer blobs (for an index: of every child) with their sizes; manifests excluded. */
  blobs: Map<Digest, number>;
  /** For an index: its child manifests. */
  children: BuiltImage[];
}

/** A fixed timestamp keeps configs, and with them every digest, reproducible. */
const CREATED = '1970-01-01T00:00:00Z';
const EPOCH = new Date(0);

/**
 * A tar layer with the given entries, in order. Deterministic: mtime 0, uid/gid 0, no user names.
 * Gzip-compressed (`application/vnd.oci.image.layer.v1.tar+gzip`) unless `gzip: false`, or zstd with `zstd: true`.
 */
export async function tarLayer(entries: TarEntry[], options: { gzip?: boolean; zstd?: boolean } = {}): Promise<Layer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.once('end', () => resolve(Buffer.concat(chunks)));
    pack.once('error', reject);
  });
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const name = entry.path.replace(/^\/+/, '');
    if (name === '') throw new Error('tar entry with an empty path');
    const header = {
      name,
      type,
      mode: entry.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
      mtime: EPOCH,
      uid: 0,
      gid: 0,
      uname: '',
      gname: '',
      ...(type === 'symlink' ? { linkname: entry.linkname ?? '' } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null): void => (error ? reject(error) : resolve());
      if (type === 'file') {
        const content = entry.content ?? '';
        pack.entry(header, typeof content === 'string' ? Buffer.from(content, 'utf8') : content, done);
      } else {
        pack.entry(header, done);
      }
    });
  }
  pack.finalize();
  const raw = await collected;
  const diffId = sha256Digest(raw);
  if (options.zstd === true) {
    const compressed = zstdCompressSync(raw);
    return { bytes: compressed, digest: sha256Digest(compressed), diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' };
  }
  if (options.gzip === false) return { bytes: raw, digest: diffId, diffId, mediaType: MediaType.OciLayer };
  const bytes = gzipSync(raw);
  return { bytes, digest: sha256Digest(bytes), diffId, mediaType: MediaType.OciLayerGzip };
}

/** `size` pseudo-random bytes, the same for the same seed: an AES-256-CTR keystream keyed by sha256(seed). */
export function pseudoRandomBytes(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(seed, 'utf8').digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

const randomLayers = new Map<string, Promise<Layer>>();

/**
 * A gzip tar with one file of `size` pseudo-random bytes (incompressible, so the blob is about
 * `size` bytes). The same seed and size always give the same layer, so images share layers by
 * reusing a seed.
 */
export function randomLayer(seed: string, size: number): Promise<Layer> {
  const key = `${size}:${seed}`;
  let layer = randomLayers.get(key);
  if (layer === undefined) {
    const file = seed.replace(/[^A-Za-z0-9._-]+/g, '_');
    layer = tarLayer([
      { path: 'usr/', type: 'directory' },
      { path: 'usr/share/', type: 'directory' },
      { path: 'usr/share/fixture/', type: 'directory' },
      { path: `usr/share/fixture/${file}.bin`, content: pseudoRandomBytes(seed, size) },
    ]);
    randomLayers.set(key, layer);
  }
  return layer;
}

/** Builds images into an OCI image layout folder; `finish()` writes index.json and oci-layout. */
export class LayoutBuilder {
  readonly dir: string;
  readonly #blobsDir: string;
  readonly #written = new Map<Digest, Promise<void>>();
  /** index.json entries by name, in insertion order. */
  readonly #named = new Map<string, BuiltImage>();
  #ready: Promise<void> | undefined;
  #bytesWritten = 0;

  constructor(dir: string) {
    this.dir = dir;
    this.#blobsDir = join(dir, 'blobs', 'sha256');
  }

  /** Total size of the distinct blobs (layers, configs, manifests) this builder wrote. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** The named images added so far, by name. */
  get images(): ReadonlyMap<string, BuiltImage> {
    return this.#named;
  }

  /**
   * A single-platform OCI image manifest. `name` (`repository:tag`) puts it in index.json; a later
   * image with the same name replaces the entry. Layers are bottom first.
   */
  async addImage(name: string | undefined, layers: Layer[], config: ImageConfigOptions = {}): Promise<BuiltImage> {
    const configBytes = Buffer.from(JSON.stringify(imageConfig(layers, config)), 'utf8');
    return this.addArtifact(name, { mediaType: MediaType.OciConfig, bytes: configBytes }, layers);
  }

  /** A multi-platform OCI image index whose children are unnamed image manifests. */
  async addIndex(name: string | undefined, children: IndexChild[]): Promise<BuiltImage> {
    if (children.length === 0) throw new Error(`index ${name ?? ''} has no children`);
    const built: BuiltImage[] = [];
    const descriptors = [];
    for (const child of children) {
      const image = await this.addImage(undefined, child.layers, child);
      built.push(image);
      const platform: Record<string, string> = { architecture: child.architecture, os: child.os ?? 'linux' };
      if (child.variant !== undefined) platform['variant'] = child.variant;
      descriptors.push({ mediaType: image.mediaType, digest: image.digest, size: image.size, platform });
    }
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: descriptors }), 'utf8');
    const blobs = new Map<Digest, number>();
    for (const child of built) for (const [digest, size] of child.blobs) blobs.set(digest, size);
    const result: BuiltImage = {
      name,
      digest: await this.#writeBlob(index),
      mediaType: MediaType.OciIndex,
      size: index.length,
      manifest: index,
      blobs,
      children: built,
    };
    if (name !== undefined) this.#name(name, result);
    return result;
  }

  /**
   * An OCI 1.1 artifact that refers to `subject` (an SBOM, a signature): an image manifest with the
   * empty config, `artifactType`, the blobs as layers (each with its own media type), and `subject`.
   * Unnamed; `addReferrersTag` lists it where a registry without the referrers API is looked in.
   */
  async addReferrer(
    subject: BuiltImage,
    artifactType: string,
    blobs: Array<{ mediaType: string; bytes: Uint8Array }>,
    annotations?: Record<string, string>,
  ): Promise<BuiltImage> {
    const empty = Buffer.from('{}');
    const config = { mediaType: 'application/vnd.oci.empty.v1+json', digest: await this.#writeBlob(empty), size: empty.length };
    const layers = [];
    for (const blob of blobs) layers.push({ mediaType: blob.mediaType, digest: await this.#writeBlob(blob.bytes), size: blob.bytes.length });
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType,
        config,
        layers,
        subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
        ...(annotations === undefined ? {} : { annotations }),
      }),
      'utf8',
    );
    const owned = new Map<Digest, number>([[config.digest, config.size]]);
    for (const layer of layers) owned.set(layer.digest, layer.size);
    return { name: undefined, digest: await this.#writeBlob(manifest), mediaType: MediaType.OciManifest, size: manifest.length, manifest, blobs: owned, children: [] };
  }

  /**
   * An image manifest with any config media type and the blobs as layers: an image, or an OCI
   * artifact as `helm push` and ORAS store them. `name` (`repository:tag`) puts it in index.json.
   */
  async addArtifact(
    name: string | undefined,
    config: { mediaType: string; bytes: Uint8Array },
    blobs: ReadonlyArray<{ mediaType: string; bytes: Uint8Array }>,
  ): Promise<BuiltImage> {
    const configDescriptor = { mediaType: config.mediaType, digest: await this.#writeBlob(config.bytes), size: config.bytes.length };
    const layers = [];
    for (const blob of blobs) layers.push({ mediaType: blob.mediaType, digest: await this.#writeBlob(blob.bytes), size: blob.bytes.length });
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDescriptor, layers }), 'utf8');
    const owned = new Map<Digest, number>([[configDescriptor.digest, configDescriptor.size]]);
    for (const layer of layers) owned.set(layer.digest, layer.size);
    const built: BuiltImage = {
      name,
      digest: await this.#writeBlob(manifest),
      mediaType: MediaType.OciManifest,
      size: manifest.length,
      manifest,
      blobs: owned,
      children: [],
    };
    if (name !== undefined) this.#name(name, built);
    return built;
  }

  /**
   * The referrers tag schema: an index tagged `sha256-<hex>` of `subject` in `repository`, listing
   * the referrers with their `artifactType` and annotations, as a client writes it for a registry
   * without the referrers API.
   */
  async addReferrersTag(repository: string, subject: BuiltImage, referrers: BuiltImage[]): Promise<BuiltImage> {
    const manifests = referrers.map((r) => {
      const body = JSON.parse(Buffer.from(r.manifest).toString('utf8')) as { artifactType?: string; annotations?: Record<string, string> };
      return {
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(body.artifactType === undefined ? {} : { artifactType: body.artifactType }),
        ...(body.annotations === undefined ? {} : { annotations: body.annotations }),
      };
    });
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }), 'utf8');
    const built: BuiltImage = {
      name: `${repository}:${subject.digest.replace(':', '-')}`,
      digest: await this.#writeBlob(index),
      mediaType: MediaType.OciIndex,
      size: index.length,
      manifest: index,
      blobs: new Map(referrers.flatMap((r) => [...r.blobs])),
      children: referrers,
    };
    this.#name(built.name as string, built);
    return built;
  }

  /** Writes `oci-layout` and `index.json` (named images in the order they were first added). */
  async finish(): Promise<void> {
    await this.#prepare();
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const manifests = [...this.#named.entries()].map(([name, image]) => ({
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.size,
      annotations: { [REF_NAME_ANNOTATION]: name },
    }));
    await writeFile(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
  }

  #name(name: string, image: BuiltImage): void {
    const colon = name.lastIndexOf(':');
    if (colon <= name.lastIndexOf('/')) throw new Error(`image name "${name}" is not repository:tag`);
    this.#named.set(name, image);
  }

  #prepare(): Promise<void> {
    this.#ready ??= mkdir(this.#blobsDir, { recursive: true }).then(() => undefined);
    return this.#ready;
  }

  async #writeBlob(bytes: Uint8Array): Promise<Digest> {
    const digest = sha256Digest(bytes);
    let pending = this.#written.get(digest);
    if (pending === undefined) {
      this.#bytesWritten += bytes.length;
      pending = this.#prepare().then(async () => {
        const path = join(this.#blobsDir, digestHex(digest));
        const exists = await access(path).then(
          () => true,
          () => false,
        );
        if (!exists) await writeFile(path, bytes);
      });
      this.#written.set(digest, pending);
    }
    await pending;
    return digest;
  }
}

function imageConfig(layers: Layer[], options: ImageConfigOptions): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  if (options.env !== undefined) config['Env'] = options.env;
  if (options.entrypoint !== undefined) config['Entrypoint'] = options.entrypoint;
  if (options.cmd !== undefined) config['Cmd'] = options.cmd;
  if (options.labels !== undefined) config['Labels'] = options.labels;
  const result: Record<string, unknown> = {
    created: CREATED,
    architecture: options.architecture ?? 'amd64',
    os: options.os ?? 'linux',
  };
  if (options.variant !== undefined) result['variant'] = options.variant;
  result['config'] = config;
  result['rootfs'] = { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) };
  result['history'] = layers.map(() => ({ created: CREATED, created_by: 'meshmirror test fixture' }));
  return result;
}
