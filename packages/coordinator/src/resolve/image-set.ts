import type { Descriptor, Digest, ImageReference, RepositoryLocation, BlobRef } from '@meshmirror/shared';

/** Where an image came from in the ImageSetConfiguration; exit codes and reports group by it. */
export type ImageKind = 'release' | 'operator' | 'additional' | 'helm';

/** One image the configuration asks for, before its manifests are fetched. */
export interface RequestedImage {
  kind: ImageKind;
  /** The reference as the user wrote it (or as resolution produced it). */
  source: string;
  ref: ImageReference;
  /** Where the configuration names the image, e.g. `mirror.additionalImages[2]`. */
  origin: string;
  targetRepo?: string;
  targetTag?: string;
  /**
   * The platforms to copy from a multi-arch image (`os/arch`), from the item's `platforms`; unset,
   * `mirror.platform.architectures` decides (and operator images keep every platform).
   */
  platformFilter?: string[];
  /**
   * What the image is for the cluster: a release payload, a filtered catalog, the update graph data,
   * a signature of another image of the set (a sigstore `sha256-<hex>.sig` tag), or a referrer of
   * one (an OCI 1.1 manifest whose `subject` names it: a signature, an SBOM, an attestation), or a
   * Helm chart as an OCI artifact (`helm install oci://…` on the far side).
   */
  role?: ImageRole;
}

export type ImageRole = 'release-payload' | 'catalog' | 'graph' | 'signature' | 'referrer' | 'helm-chart';

/** Images that are about another image of the set (its signatures and referrers), not content of their own. */
export function isAttachedRole(role: ImageRole | undefined): boolean {
  return role === 'signature' || role === 'referrer';
}

/** A manifest (or index) the image needs, stored as a blob in the archive. */
export interface ResolvedManifest {
  digest: Digest;
  mediaType: string;
  bytes: Uint8Array;
}

/** An image whose manifests were fetched: everything needed to mirror it. */
export interface ResolvedImage extends RequestedImage {
  /** The top-level descriptor: the index for multi-arch images, else the image manifest. */
  descriptor: Descriptor;
  /** The top manifest first, then child manifests kept by the platform filter. */
  manifests: ResolvedManifest[];
  /** Configs and layers of every kept manifest, deduplicated within the image. */
  blobs: BlobRef[];
  /** Platforms kept (`os/arch[/variant]`), empty for single-manifest images. */
  platforms: string[];
  /** Platforms of an index that the architecture filter left out. */
  skippedPlatforms: string[];
  /** A release payload's OpenPGP signatures, verified, as the signature store served them. */
  releaseSignatures?: Uint8Array[];
  /**
   * Where the blobs not made by meshmirror are fetched, when not from `ref` (the graph image is made
   * here on a base image: its base layers come from the base image's repository).
   */
  fetchFrom?: RepositoryLocation;
}

/**
 * An image that could not be resolved or fetched, with the reason; or a part of the image set that
 * yielded no image at all (a release channel the graph could not give, a package missing from its
 * catalog), named by `source` and `origin` the same way.
 */
export interface FailedImage {
  kind: ImageKind;
  source: string;
  origin: string;
  role?: ImageRole;
  /** The image's digest, when it was known before it failed. */
  digest?: Digest;
  code: string;
  reason: string;
}

/**
 * The image's manifests that the target holds under their source digests, which is what
 * signatures and referrers upstream name: none for images meshmirror made or changed (filtered
 * catalogs, the graph image); for an index cut down to some platforms, only its children (the top
 * is pushed with another digest).
 */
export function sourceManifestDigests(image: ResolvedImage): Digest[] {
  // Charts are left out too: signing a chart artifact is rare, and most are made here.
  if (image.role === 'catalog' || image.role === 'graph' || image.role === 'helm-chart' || image.fetchFrom !== undefined) return [];
  return image.manifests.filter((_m, i) => i > 0 || image.skippedPlatforms.length === 0).map((m) => m.digest);
}
