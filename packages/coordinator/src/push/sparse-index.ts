/**
 * An index whose platforms were filtered at mirror time names child manifests the archive does not
 * hold, and registries such as distribution refuse an index whose children they lack. Pushed by tag,
 * it goes as an index listing only the platforms that were mirrored (what containers/image does with
 * `StripSparseManifestList`); its digest changes, so an image the configuration names by digest
 * cannot be pushed this way, and says so.
 */
import { isIndexMediaType, MeshmirrorError, sha256Digest, type Digest } from '@meshmirror/shared';

export interface ManifestBytes {
  digest: Digest;
  mediaType: string;
  bytes: Uint8Array;
}

/** The index without the children `kept` rejects, or the index itself when none is left out. */
export function stripSparseIndex(top: ManifestBytes, kept: (child: Digest) => boolean, image: { source: string; byDigest: boolean }): ManifestBytes {
  if (!isIndexMediaType(top.mediaType)) return top;
  const index = JSON.parse(Buffer.from(top.bytes).toString('utf8')) as { manifests: Array<{ digest: Digest }> };
  const manifests = index.manifests.filter((m) => kept(m.digest));
  if (manifests.length === index.manifests.length) return top;
  if (image.byDigest) {
    throw new MeshmirrorError(
      'MM_USAGE',
      `${image.source}: named by digest, but only some of its platforms were mirrored (mirror.platform.architectures or the item's platforms); the registry needs the whole index for that digest. Mirror every platform of it or name the image by tag`,
    );
  }
  const bytes = new TextEncoder().encode(JSON.stringify({ ...index, manifests }));
  return { digest: sha256Digest(bytes), mediaType: top.mediaType, bytes };
}
