/**
 * Operator catalogs kept in a local OCI image layout (`catalog: oci:///path/to/layout`, as oc-mirror
 * takes them, e.g. a catalog built by `opm` and saved with `skopeo copy … oci:`). The layout stands in
 * for the registry while the catalog is read, and the blobs the filtered catalog keeps are imported
 * into the coordinator's store, streamed and verified, so the catalog is mirrored from there like
 * every image made here: no agent of a farm is asked for them.
 */
import { basename, resolve } from 'node:path';
import { openOciLayout, type OciLayoutReader } from '@meshmirror/agent';
import {
  isDigest,
  MeshmirrorError,
  sha256Digest,
  type AbortOptions,
  type BlobRef,
  type Digest,
  type FetchedManifest,
  type ImageReference,
  type LocalWriter,
  type RegistryClient,
} from '@meshmirror/shared';
import type { LayerSource } from '../layer-source.ts';

/** Catalogs from layouts have no upstream registry; this names them in the archive, as the graph image's name does. */
const LAYOUT_REGISTRY = 'localhost';

export function isLayoutCatalog(catalog: string): boolean {
  return catalog.startsWith('oci:');
}

export interface LayoutCatalog {
  /** `localhost/<folder name>:<tag>`: how the catalog is named in the archive; the mirror's default is `<folder name>:<tag>`. */
  ref: ImageReference;
  /** The layout as a registry holding that one image. */
  client: RegistryClient;
  layers: LayerSource;
  /** Streams `blobs` from the layout into the store (what a filtered catalog keeps of the original). */
  importBlobs(writer: LocalWriter, blobs: BlobRef[], signal?: AbortSignal): Promise<void>;
}

/**
 * Opens the layout `oci:///path` (or `oci:path`) names. It must hold one image (an index of
 * platforms counts as one); its name's tag (`…:v4.19` or a bare `v4.19`, as skopeo writes it) is the
 * catalog's tag, else `latest`.
 */
export async function openLayoutCatalog(catalog: string, signal?: AbortSignal): Promise<LayoutCatalog> {
  const dir = resolve(catalog.replace(/^oci:(\/\/)?/, ''));
  const abortable = signal === undefined ? {} : { signal };
  const layout = await openOciLayout(dir, abortable);
  const images = await layout.images(abortable);
  if (images.length !== 1) {
    const names = images.map((i) => i.name ?? i.descriptor.digest).join(', ');
    throw new MeshmirrorError(
      'MM_USAGE',
      `catalog ${catalog}: the layout holds ${images.length} images${names === '' ? '' : ` (${names})`}; keep one catalog per layout`,
    );
  }
  const top = images[0]!;
  const name = top.name ?? '';
  const tag = /^[\w][\w.-]{0,127}$/.test(name) ? name : (/:([\w][\w.-]{0,127})$/.exec(name)?.[1] ?? 'latest');
  const repository = (
    basename(dir)
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[._-]+|[._-]+$/g, '') || 'catalog'
  ).replace(/[._-]{2,}/g, '-');
  const ref: ImageReference = { registry: LAYOUT_REGISTRY, repository, tag };
  const where = `catalog ${catalog}`;
  const read = (digest: Digest, options: AbortOptions) => readWhole(layout, digest, where, options);

  const client: RegistryClient = {
    ping: () => Promise.resolve(),
    async getManifest(_location, reference, options = {}): Promise<FetchedManifest> {
      const digest = isDigest(reference) ? reference : top.descriptor.digest;
      const bytes = await read(digest, options);
      const declared = digest === top.descriptor.digest ? top.descriptor.mediaType : (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
      return { bytes, mediaType: declared ?? 'application/vnd.oci.image.manifest.v1+json', digest: sha256Digest(bytes) };
    },
    getBlob: async (_location, digest, options = {}) => read(digest, options),
    fetchBlobRange: () => Promise.reject(new MeshmirrorError('MM_USAGE', `${where}: blobs of a layout are imported, not fetched`)),
    getReferrers: () => Promise.resolve({ via: 'none', manifests: [] }),
    close: () => Promise.resolve(),
  };
  return {
    ref,
    client,
    layers: { open: (_location, blob, options = {}) => layout.openBlob(blob.digest, options) },
    async importBlobs(writer, blobs, importSignal) {
      for (const blob of blobs) {
        const options = importSignal === undefined ? {} : { signal: importSignal };
        if ((await layout.blobSize(blob.digest, options)) === undefined)
          throw new MeshmirrorError('MM_NOT_FOUND', `${where}: blob ${blob.digest} is not in the layout`);
        await writer.importBlob(blob.digest, blob.size, (offset) => layout.openBlob(blob.digest, { ...options, start: offset }), options);
      }
    },
  };
}

/** A manifest or config from the layout, whole (verified by the reader); these are small. */
async function readWhole(layout: OciLayoutReader, digest: Digest, where: string, options: AbortOptions): Promise<Buffer> {
  const size = await layout.blobSize(digest, options);
  if (size === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `${where}: ${digest} is not in the layout`, { data: { digest } });
  if (size > 64 * 1024 * 1024) throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: ${digest} is ${size} bytes, too large for a manifest or config`);
  const chunks: Buffer[] = [];
  for await (const chunk of await layout.openBlob(digest, options)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
