/**
 * `graph: true`: the OpenShift Update Service needs the update graph data in the disconnected site.
 * As oc-mirror does, the graph-data tarball is downloaded and published as one more layer on a base
 * image, its files under `/var/lib/cincinnati-graph-data/`, with a command that copies them where
 * the Update Service reads them. The new layer and config are made here and stored in the
 * coordinator's agent; the base image's layers are mirrored from the base image's repository.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import tar from 'tar-stream';
import {
  formatReference,
  MeshmirrorError,
  parseImageReference,
  sha256Digest,
  type LocalWriter,
  type Digest,
  type ImageReference,
  type RegistryClient,
} from '@meshmirror/shared';
import type { ResolvedImage } from '../image-set.ts';
import { normalize } from '../layer-files.ts';
import { appendLayer } from '../append-layer.ts';
import { platformManifest } from '../platform-manifest.ts';

export const DEFAULT_GRAPH_DATA_URL = 'https://api.openshift.com/api/upgrades_info/graph-data';
export const DEFAULT_GRAPH_BASE_IMAGE = 'registry.access.redhat.com/ubi9/ubi:latest';
/** The graph image has no upstream of its own; this names it in the archive (oc-mirror uses its local cache registry). */
export const GRAPH_IMAGE_SOURCE = 'localhost/openshift/graph-image:latest';
export const GRAPH_IMAGE_REPO = 'openshift/graph-image';
export const GRAPH_DATA_DIR = 'var/lib/cincinnati-graph-data';
const GRAPH_COMMAND = ['/bin/bash', '-c', 'exec cp -rp /var/lib/cincinnati-graph-data/* /var/lib/cincinnati/graph-data'];
/** The real graph data is a few MiB; anything far larger is not graph data. */
const MAX_GRAPH_LAYER_BYTES = 256 * 1024 * 1024;

export interface BuildGraphImageOptions {
  /** Streams the graph-data tarball (gzip tar). */
  download: (signal?: AbortSignal) => Promise<{ body: Readable; url: string }>;
  baseImage: string;
  architecture: string;
  client: RegistryClient;
  /** The coordinator's agent: the new layer and config are stored there. */
  agent: LocalWriter;
  signal?: AbortSignal;
}

export async function buildGraphImage(options: BuildGraphImageOptions): Promise<ResolvedImage> {
  const { client, agent, signal } = options;
  const abortable = signal === undefined ? {} : { signal };
  const { body, url } = await options.download(signal);
  const layer = await repackGraphData(body, url, signal);

  const baseRef = parseImageReference(options.baseImage);
  const baseWhere = `graph base image ${formatReference(baseRef)}`;
  const location = { registry: baseRef.registry, repository: baseRef.repository };
  const { manifest: base, mediaType } = await platformManifest(
    client,
    baseRef,
    baseWhere,
    (children) => children.find((m) => m.platform?.architecture === options.architecture && m.platform.os === 'linux'),
    abortable,
  );
  const baseConfig = JSON.parse(Buffer.from(await client.getBlob(location, base.config.digest, abortable)).toString('utf8')) as Record<string, unknown>;

  const image = appendLayer(
    { manifest: base, mediaType: mediaType, config: baseConfig },
    { digest: layer.digest, diffId: layer.diffId, size: layer.bytes.byteLength },
    {
      createdBy: `meshmirror: graph data from ${url}`,
      patch: (inner) => ({ ...inner, Cmd: GRAPH_COMMAND, Entrypoint: null }),
    },
  );
  const manifestBytes = image.bytes;
  const manifestDigest = image.digest;
  const configBytes = image.configBytes;
  const configDescriptor = image.config;

  await agent.putBlob(layer.digest, layer.bytes, abortable);
  await agent.putBlob(configDescriptor.digest, configBytes, abortable);

  const ref: ImageReference = parseImageReference(GRAPH_IMAGE_SOURCE);
  return {
    kind: 'release',
    role: 'graph',
    source: GRAPH_IMAGE_SOURCE,
    ref,
    origin: 'mirror.platform.graph',
    targetRepo: GRAPH_IMAGE_REPO,
    targetTag: 'latest',
    descriptor: { mediaType: mediaType, digest: manifestDigest, size: manifestBytes.byteLength },
    manifests: [{ digest: manifestDigest, mediaType: mediaType, bytes: manifestBytes }],
    blobs: [
      ...base.layers.map((l) => ({ digest: l.digest, size: l.size })),
      { digest: layer.digest, size: layer.bytes.byteLength },
      { digest: configDescriptor.digest, size: configBytes.byteLength },
    ],
    platforms: [],
    skippedPlatforms: [],
    fetchFrom: location,
  };
}

/**
 * The tarball's files, moved under `var/lib/cincinnati-graph-data/`, as a gzip tar layer. Entries
 * are copied as they come; only the compressed result is held (the graph data is a few MiB).
 */
async function repackGraphData(body: Readable, url: string, signal: AbortSignal | undefined): Promise<{ bytes: Uint8Array; digest: Digest; diffId: Digest }> {
  const extract = tar.extract();
  const pack = tar.pack();
  const gzip = createGzip();
  const diff = createHash('sha256');
  const chunks: Buffer[] = [];
  let size = 0;
  const collected = new Promise<void>((resolve, reject) => {
    gzip.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_GRAPH_LAYER_BYTES) {
        gzip.destroy(new MeshmirrorError('MM_SIZE_MISMATCH', `graph data from ${url} is larger than ${MAX_GRAPH_LAYER_BYTES} bytes compressed`));
        return;
      }
      chunks.push(chunk);
    });
    gzip.on('end', resolve);
    gzip.on('error', reject);
  });
  pack.on('data', (chunk: unknown) => {
    diff.update(chunk as Buffer);
  });
  pack.pipe(gzip);
  const gunzip = createGunzip();
  body.on('error', (err) => extract.destroy(err));
  gunzip.on('error', (err) => extract.destroy(err));
  body.pipe(gunzip).pipe(extract);
  const onAbort = (): void => extract.destroy(new MeshmirrorError('MM_ABORTED', `graph data download from ${url} aborted`));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let files = 0;
    for await (const entry of extract) {
      const name = normalize(entry.header.name);
      if (name === '' || name.split('/').includes('..')) {
        entry.resume();
        continue;
      }
      const header = { ...entry.header, name: `${GRAPH_DATA_DIR}/${name}`, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' };
      if (entry.header.type === 'file') {
        files += 1;
        const target = pack.entry({ ...header, size: entry.header.size ?? 0 });
        await new Promise<void>((resolve, reject) => {
          entry.pipe(target);
          target.on('finish', resolve);
          target.on('error', reject);
          entry.on('error', reject);
        });
      } else if (entry.header.type === 'directory' || entry.header.type === 'symlink') {
        pack.entry(entry.header.type === 'symlink' ? { ...header, linkname: entry.header.linkname ?? '' } : header);
        entry.resume();
      } else {
        entry.resume();
      }
    }
    if (files === 0) throw new MeshmirrorError('MM_MANIFEST_INVALID', `graph data from ${url} holds no files`);
  } catch (err) {
    pack.destroy();
    if (err instanceof MeshmirrorError) throw err;
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `graph data from ${url} is not a gzip tar: ${(err as Error).message}`, { cause: err });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  pack.finalize();
  await collected;
  const bytes = Buffer.concat(chunks);
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), digest: sha256Digest(bytes), diffId: `sha256:${diff.digest('hex')}` };
}
