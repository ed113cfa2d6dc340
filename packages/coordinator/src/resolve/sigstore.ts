/**
 * Sigstore (cosign) signatures stored as tags: the signature of manifest `sha256:<hex>` is the image
 * tagged `sha256-<hex>.sig` in the same repository. For every image of the set, and each child of an
 * index, that tag is looked for; one that exists is mirrored like any other image, into the
 * repository its subject goes to, under the same tag, so a verifier finds it next to the image.
 * Absent signatures are normal (most images are unsigned).
 */
import { formatReference, referrersTag, type Digest } from '@meshmirror/shared';
import { isAttachedRole, sourceManifestDigests, type RequestedImage, type ResolvedImage } from './image-set.ts';

/** The tag cosign stores the signature of `digest` under. */
export function signatureTag(digest: Digest): string {
  return `${referrersTag(digest)}.sig`;
}

/**
 * The `.sig` tags to look for: one per manifest of each image (the top one and every child it
 * keeps), each (repository, tag, target repository) once. Images meshmirror made or changed (filtered
 * catalogs, the graph image) have no signature upstream, and signatures are not signed again. The
 * top of an index cut down to some platforms is pushed with another digest, so its signature would
 * name a manifest the target never holds: only its children's are looked for.
 */
export function signatureRequests(images: ResolvedImage[]): RequestedImage[] {
  const out = new Map<string, RequestedImage>();
  for (const image of images) {
    // Signatures and referrers are not signed again.
    if (isAttachedRole(image.role)) continue;
    for (const digest of sourceManifestDigests(image)) {
      const ref = { registry: image.ref.registry, repository: image.ref.repository, tag: signatureTag(digest) };
      const source = formatReference(ref);
      const key = `${source} ${image.targetRepo ?? ''}`;
      if (out.has(key)) continue;
      out.set(key, {
        kind: image.kind,
        source,
        ref,
        origin: `${image.origin} (signature of ${digest})`,
        role: 'signature',
        ...(image.targetRepo === undefined ? {} : { targetRepo: image.targetRepo }),
      });
    }
  }
  return [...out.values()];
}
