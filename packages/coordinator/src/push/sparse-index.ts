/**
 * A sparse index (platforms filtered at mirror time) is pushed by tag as the index of the platforms
 * that were mirrored (`stripSparseIndex`); its digest changes, so an image the configuration names
 * by digest cannot be pushed this way, and says so.
 */
import { MeshmirrorError, stripSparseIndex, type Digest, type ManifestBytes } from '@meshmirror/shared';

/** The index without the children `kept` rejects, or the index itself when none is left out. */
export function pushableIndex(top: ManifestBytes, kept: (child: Digest) => boolean, image: { source: string; byDigest: boolean }): ManifestBytes {
  const stripped = stripSparseIndex(top, kept);
  if (stripped === undefined) return top;
  if (image.byDigest) {
    throw new MeshmirrorError(
      'MM_USAGE',
      `${image.source}: named by digest, but only some of its platforms were mirrored (mirror.platform.architectures or the item's platforms); the registry needs the whole index for that digest. Mirror every platform of it or name the image by tag`,
    );
  }
  return stripped;
}
