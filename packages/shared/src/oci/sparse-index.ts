/**
 * An index whose platforms were filtered at mirror time names child manifests the archive does not
 * hold. Where it is handed on by tag (pushed into a registry, served from an archive), it goes as an
 * index listing only the children that were mirrored, as containers/image does with
 * `StripSparseManifestList`: registries such as distribution refuse an index whose children they
 * lack, and `skopeo copy --all` of the sparse one fails on the first missing child. Its digest
 * changes, so the push and `serve` must build it byte for byte alike: both use this function.
 */
import { isIndexMediaType } from './media-types.ts';
import { sha256Digest, type Digest } from './digest.ts';
import type { ManifestBytes } from './walk-image.ts';

/** The index without the children `kept` rejects, or `undefined` when it is no index or none is left out. */
export function stripSparseIndex(top: ManifestBytes, kept: (child: Digest) => boolean): ManifestBytes | undefined {
  if (!isIndexMediaType(top.mediaType)) return undefined;
  const index = JSON.parse(Buffer.from(top.bytes).toString('utf8')) as { manifests: Array<{ digest: Digest }> };
  const manifests = index.manifests.filter((m) => kept(m.digest));
  if (manifests.length === index.manifests.length) return undefined;
  const bytes = new TextEncoder().encode(JSON.stringify({ ...index, manifests }));
  return { digest: sha256Digest(bytes), mediaType: top.mediaType, bytes };
}
