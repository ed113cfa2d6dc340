import { formatReference, manifestReference, MeshmirrorError, walkImage, type Descriptor, type RegistryClient } from '@meshmirror/shared';
import type { RequestedImage, ResolvedImage, ResolvedManifest } from './image-set.ts';

export interface ResolveImageOptions {
  client: RegistryClient;
  /**
   * Platforms to keep from multi-arch indexes, as architectures (`arm64`, `multi` for all) or
   * `os/arch` pairs; undefined keeps all. The index itself is always kept byte for byte, so
   * digest-pinned references keep working (the OCI layout allows an index whose other platforms
   * live elsewhere).
   */
  platforms?: string[];
  signal?: AbortSignal;
}

/** Fetches an image's manifest (following an index to its kept children) and lists its blobs. */
export async function resolveImage(image: RequestedImage, options: ResolveImageOptions): Promise<ResolvedImage> {
  const { client, signal } = options;
  const location = { registry: image.ref.registry, repository: image.ref.repository };
  const where = formatReference(image.ref);
  const top = await client.getManifest(location, manifestReference(image.ref), { signal });
  const platforms: string[] = [];
  const walked = await walkImage(top, where, {
    child: async (child) => {
      if (!keepPlatform(child, options.platforms)) return undefined;
      platforms.push(platformName(child));
      const fetched = await client.getManifest(location, child.digest, { signal });
      return { digest: fetched.digest, mediaType: child.mediaType, bytes: fetched.bytes };
    },
  });
  const skippedPlatforms = walked.skipped.map(platformName);
  if (walked.top.kind === 'index' && platforms.length === 0) {
    throw new MeshmirrorError('MM_NOT_FOUND', `${where}: no platform matches ${options.platforms?.join(',') ?? ''} (has ${skippedPlatforms.join(', ')})`);
  }
  const manifests: ResolvedManifest[] = [
    { digest: top.digest, mediaType: walked.top.mediaType, bytes: top.bytes },
    ...walked.children.map(({ manifest }) => ({ digest: manifest.digest, mediaType: manifest.mediaType, bytes: manifest.bytes })),
  ];
  const descriptor: Descriptor = { mediaType: walked.top.mediaType, digest: top.digest, size: top.bytes.byteLength };
  return { ...image, descriptor, manifests, blobs: walked.blobs, platforms, skippedPlatforms };
}

function platformName(d: Descriptor): string {
  const p = d.platform;
  if (p === undefined) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== '').join('/');
}

function keepPlatform(d: Descriptor, platforms: string[] | undefined): boolean {
  if (platforms === undefined || platforms.includes('multi')) return true;
  // Attestation manifests (buildkit's "unknown/unknown") belong to the platforms they describe.
  const arch = d.platform?.architecture;
  if (arch === undefined || arch === 'unknown') return false;
  const os = d.platform?.os ?? 'linux';
  return platforms.some((p) => (p.includes('/') ? p === `${os}/${arch}` : p === arch));
}
