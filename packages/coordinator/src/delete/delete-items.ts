/**
 * What `delete --generate` lists: every image of the resolved image set at the place a push to the
 * same destination put it (the push's own naming, `--max-nested-paths` included), with oc-mirror's
 * type, and with `--delete-signatures` the sigstore `.sig` tags next to it. Pure.
 */
import type { DeleteImageItem, DeleteImageType, Digest } from '@meshmirror/shared';
import { isAttachedRole, sourceManifestDigests, type ImageKind, type ResolvedImage } from '../resolve/image-set.ts';
import { signatureTag } from '../resolve/sigstore.ts';
import { pushTarget, type PushDestination } from '../push/push-targets.ts';

/**
 * oc-mirror's type of an image. Operator images are bundles or related images; which is which the
 * caller found out (`bundle`). A Helm chart pushed as an OCI artifact (oc-mirror pushes none) is
 * Helm content too: `helmImage`.
 */
export function deleteImageType(image: Pick<ResolvedImage, 'kind' | 'role'>, bundle = false): DeleteImageType {
  switch (image.kind) {
    case 'release':
      return image.role === 'release-payload' ? 'ocpRelease' : image.role === 'graph' ? 'cincinnatiGraph' : 'ocpReleaseContent';
    case 'operator':
      return image.role === 'catalog' ? 'operatorCatalog' : bundle ? 'operatorBundle' : 'operatorRelatedImage';
    case 'additional':
      return 'generic';
    case 'helm':
      return 'helmImage';
  }
}

/** The part of the image set an item's type belongs to: exit codes group by it, as the mirror's do. */
export function kindOfDeleteType(type: DeleteImageType): ImageKind {
  switch (type) {
    case 'ocpRelease':
    case 'ocpReleaseContent':
    case 'cincinnatiGraph':
      return 'release';
    case 'operatorCatalog':
    case 'operatorBundle':
    case 'operatorRelatedImage':
      return 'operator';
    case 'generic':
      return 'additional';
    case 'helmImage':
      return 'helm';
  }
}

export interface DeleteItemsOptions {
  /** `--delete-signatures`: also each image's sigstore `sha256-<hex>.sig` tags. */
  deleteSignatures: boolean;
  /** Top digests of the operator images that are bundles. */
  bundles: ReadonlySet<Digest>;
}

/**
 * One item per destination reference (the first image that maps there names it), unsorted; the
 * writer sorts. Signatures and referrers found by a mirror run are not images of the delete's own
 * resolution: `.sig` tags come only with `deleteSignatures`, as in oc-mirror.
 */
export function deleteItemsFor(images: readonly ResolvedImage[], destination: PushDestination, options: DeleteItemsOptions): DeleteImageItem[] {
  const items = new Map<string, DeleteImageItem>();
  const add = (item: DeleteImageItem): void => {
    if (!items.has(item.imageReference)) items.set(item.imageReference, item);
  };
  for (const image of images) {
    if (isAttachedRole(image.role)) continue;
    const type = deleteImageType(image, options.bundles.has(image.descriptor.digest));
    const target = pushTarget(destination, image, image.descriptor.digest);
    add({ imageName: image.source, imageReference: `docker://${target.reference}`, type });
    // oc-mirror signs off catalogs and the graph image: meshmirror made them, nobody signed them.
    if (!options.deleteSignatures || type === 'operatorCatalog' || type === 'cincinnatiGraph') continue;
    // The index's and every child's, as a mirror run looks for them (`sourceManifestDigests`).
    for (const digest of sourceManifestDigests(image)) {
      const tag = signatureTag(digest);
      add({ imageName: `${image.ref.registry}/${image.ref.repository}:${tag}`, imageReference: `docker://${target.registry}/${target.repository}:${tag}`, type });
    }
  }
  return [...items.values()];
}
