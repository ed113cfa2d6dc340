/**
 * One walk over an image's manifests, wherever they are read from (a registry when resolving, an
 * archive when pushing): the top manifest, the children of an index that the caller keeps, and the
 * blobs (config and layers) every kept image manifest names, each once.
 */
import { MeshmirrorError } from '../errors.ts';
import type { BlobRef, Digest } from './digest.ts';
import { parseManifest, type Descriptor, type ParsedManifest } from './manifest.ts';

/** Manifest bytes as read, with the digest they were asked for and the media type they came with. */
export interface ManifestBytes {
  digest: Digest;
  mediaType: string;
  bytes: Uint8Array;
}

export interface WalkedChild<M extends ManifestBytes> {
  /** The index's entry for it (platform, media type). */
  descriptor: Descriptor;
  /** What `where` names it in messages: the image and the child's platform. */
  where: string;
  manifest: M;
}

export interface WalkedImage<M extends ManifestBytes> {
  top: ParsedManifest;
  /** Kept children of an index, in index order (empty for a single image manifest). */
  children: Array<WalkedChild<M>>;
  /** Index entries the caller left out. */
  skipped: Descriptor[];
  /** Blobs of every kept image manifest, first mention first. */
  blobs: BlobRef[];
}

export interface WalkImageOptions<M extends ManifestBytes> {
  /**
   * Reads a child manifest of an index, or resolves undefined to leave the child out (a platform the
   * caller does not want, or one an archive does not hold).
   */
  child(descriptor: Descriptor, where: string): Promise<M | undefined>;
  /** Sees each blob a manifest names, with the manifest that names it (an archive checks it holds it). */
  onBlob?(blob: Descriptor, owner: { manifest: ManifestBytes; where: string }): void;
}

/** `where` for a child of an index: the image and the child's platform (`os/arch/variant`). */
export function childWhere(image: string, descriptor: Descriptor): string {
  const p = descriptor.platform;
  const platform = p === undefined ? descriptor.digest : [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== '').join('/');
  return `${image} (${platform})`;
}

export async function walkImage<M extends ManifestBytes>(top: M, where: string, options: WalkImageOptions<M>): Promise<WalkedImage<M>> {
  const parsedTop = parseManifest(top.bytes, top.mediaType, where);
  const blobs = new Map<Digest, number>();
  const addBlobs = (manifest: ManifestBytes, parsed: ParsedManifest, at: string): void => {
    if (parsed.kind !== 'image') throw new MeshmirrorError('MM_MANIFEST_INVALID', `${at}: nested index is not supported`);
    for (const d of [parsed.manifest.config, ...parsed.manifest.layers]) {
      options.onBlob?.(d, { manifest, where: at });
      if (!blobs.has(d.digest)) blobs.set(d.digest, d.size);
    }
  };
  const children: Array<WalkedChild<M>> = [];
  const skipped: Descriptor[] = [];
  if (parsedTop.kind === 'image') {
    addBlobs(top, parsedTop, where);
  } else {
    for (const descriptor of parsedTop.index.manifests) {
      const at = childWhere(where, descriptor);
      const manifest = await options.child(descriptor, at);
      if (manifest === undefined) {
        skipped.push(descriptor);
        continue;
      }
      addBlobs(manifest, parseManifest(manifest.bytes, manifest.mediaType, at), at);
      children.push({ descriptor, where: at, manifest });
    }
  }
  return { top: parsedTop, children, skipped, blobs: [...blobs].map(([digest, size]) => ({ digest, size })) };
}
