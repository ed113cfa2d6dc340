import { formatReference, manifestReference, MeshmirrorError, parseManifest, type Descriptor, type Digest, type RegistryClient } from '@meshmirror/shared';
import type { RequestedImage, ResolvedImage, ResolvedManifest } from './image-set.ts';

export interface ResolveImageOptions {
  client: RegistryClient;
  /**
   * Architectures to keep from multi-arch indexes; undefined keeps all. The index itself is always
   * kept byte for byte, so digest-pinned references keep working (the OCI layout allows an index
   * whose other platforms live elsewhere).
   */
  architectures?: string[];
  signal?: AbortSignal;
}

/** Fetches an image's manifest (following an index to its kept children) and lists its blobs. */
export async function resolveImage(image: RequestedImage, options: ResolveImageOptions): Promise<ResolvedImage> {
  const { client, signal } = options;
  const location = { registry: image.ref.registry, repository: image.ref.repository };
  const where = formatReference(image.ref);
  const top = await client.getManifest(location, manifestReference(image.ref), { signal });
  const parsed = parseManifest(top.bytes, top.mediaType, where);

  const manifests: ResolvedManifest[] = [{ digest: top.digest, mediaType: parsed.mediaType, bytes: top.bytes }];
  const blobs = new Map<Digest, number>();
  const platforms: string[] = [];
  const skippedPlatforms: string[] = [];
  const addImageBlobs = (bytes: Uint8Array, mediaType: string, at: string): void => {
    const m = parseManifest(bytes, mediaType, at);
    if (m.kind !== 'image') throw new MeshmirrorError('MM_MANIFEST_INVALID', `${at}: nested index is not supported`);
    for (const d of [m.manifest.config, ...m.manifest.layers]) blobs.set(d.digest, d.size);
  };

  if (parsed.kind === 'image') {
    addImageBlobs(top.bytes, parsed.mediaType, where);
  } else {
    for (const child of parsed.index.manifests) {
      const platform = platformName(child);
      if (!keepPlatform(child, options.architectures)) {
        skippedPlatforms.push(platform);
        continue;
      }
      const at = `${where} (${platform})`;
      const fetched = await client.getManifest(location, child.digest, { signal });
      manifests.push({ digest: fetched.digest, mediaType: child.mediaType, bytes: fetched.bytes });
      addImageBlobs(fetched.bytes, child.mediaType, at);
      platforms.push(platform);
    }
    if (platforms.length === 0) {
      throw new MeshmirrorError(
        'MM_NOT_FOUND',
        `${where}: no platform matches architectures ${options.architectures?.join(',') ?? ''} (has ${skippedPlatforms.join(', ')})`,
      );
    }
  }

  const descriptor: Descriptor = { mediaType: parsed.mediaType, digest: top.digest, size: top.bytes.byteLength };
  return {
    ...image,
    descriptor,
    manifests,
    blobs: [...blobs].map(([digest, size]) => ({ digest, size })),
    platforms,
    skippedPlatforms,
  };
}

function platformName(d: Descriptor): string {
  const p = d.platform;
  if (p === undefined) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== '').join('/');
}

function keepPlatform(d: Descriptor, architectures: string[] | undefined): boolean {
  if (architectures === undefined || architectures.includes('multi')) return true;
  // Attestation manifests (buildkit's "unknown/unknown") belong to the platforms they describe.
  const arch = d.platform?.architecture;
  if (arch === undefined || arch === 'unknown') return false;
  return architectures.includes(arch);
}
