import { formatReference, parseImageReference, type ImageReference, type ImageSetConfig } from '@meshmirror/shared';
import type { RequestedImage } from './image-set.ts';

export interface RequestedImages {
  images: RequestedImage[];
  /** Images left out by `blockedImages`, with the entry that blocked them. */
  blocked: Array<{ source: string; blockedBy: string }>;
}

/** Lists the additional images of a configuration, minus blocked images, without duplicates. */
export function requestedImages(config: ImageSetConfig): RequestedImages {
  const blockers = config.mirror.blockedImages.map((b) => ({ name: b.name, matches: blockMatcher(b.name) }));
  const images: RequestedImage[] = [];
  const blocked: RequestedImages['blocked'] = [];
  const seen = new Set<string>();
  config.mirror.additionalImages.forEach((entry, i) => {
    const ref = parseImageReference(entry.name);
    const source = formatReference(ref);
    if (seen.has(source)) return;
    seen.add(source);
    const blocker = blockers.find((b) => b.matches(ref));
    if (blocker !== undefined) {
      blocked.push({ source, blockedBy: blocker.name });
      return;
    }
    const image: RequestedImage = { kind: 'additional', source, ref, origin: `mirror.additionalImages[${i}]` };
    if (entry.targetRepo !== undefined) image.targetRepo = entry.targetRepo;
    if (entry.targetTag !== undefined) image.targetTag = entry.targetTag;
    images.push(image);
  });
  return { images, blocked };
}

/**
 * A blocked entry that parses as a reference blocks that repository (every tag) or, when it names
 * a tag or digest, just that image; anything else is a regular expression over the full reference
 * (oc-mirror v2 accepts regular expressions here).
 */
function blockMatcher(name: string): (ref: ImageReference) => boolean {
  const hasTagOrDigest = /@|:[^/]*$/.test(name);
  try {
    const blockedRef = parseImageReference(name);
    return (ref) =>
      ref.registry === blockedRef.registry &&
      ref.repository === blockedRef.repository &&
      (!hasTagOrDigest || (blockedRef.digest !== undefined ? ref.digest === blockedRef.digest : ref.tag === blockedRef.tag));
  } catch {
    const re = new RegExp(name);
    return (ref) => re.test(formatReference(ref));
  }
}
