import { formatReference, parseImageReference, type ImageReference, type ImageSetConfig } from '@meshmirror/shared';
import type { RequestedImage } from './image-set.ts';

export interface RequestedImages {
  images: RequestedImage[];
  /** Images left out by `blockedImages`, with the entry that blocked them. */
  blocked: Array<{ source: string; blockedBy: string }>;
}

/**
 * The images of a configuration: those that release and catalog resolution found (`found`, in that
 * order), then the additional images; minus blocked images, each (source, target) once. A release
 * component shared by several releases stays once per release, because each release tags it.
 */
export function requestedImages(config: ImageSetConfig, found: RequestedImage[] = []): RequestedImages {
  const blockers = config.mirror.blockedImages.map((b) => ({ name: b.name, matches: blockMatcher(b.name) }));
  const images: RequestedImage[] = [];
  const blocked: RequestedImages['blocked'] = [];
  const seen = new Map<string, RequestedImage>();
  const add = (image: RequestedImage): void => {
    const key = `${image.source} ${image.targetRepo ?? ''} ${image.targetTag ?? ''}`;
    const first = seen.get(key);
    if (first !== undefined) {
      // Several items name it: their platforms add up, and one that names none wants them all.
      if (first.platformFilter !== undefined) {
        if (image.platformFilter === undefined) delete first.platformFilter;
        else first.platformFilter = [...new Set([...first.platformFilter, ...image.platformFilter])];
      }
      return;
    }
    seen.set(key, image);
    const blocker = blockers.find((b) => b.matches(image.ref));
    if (blocker !== undefined) {
      blocked.push({ source: image.source, blockedBy: blocker.name });
      return;
    }
    images.push(image);
  };
  for (const image of found) add(image);
  config.mirror.additionalImages.forEach((entry, i) => {
    const ref = parseImageReference(entry.name);
    const image: RequestedImage = { kind: 'additional', source: formatReference(ref), ref, origin: `mirror.additionalImages[${i}]` };
    if (entry.targetRepo !== undefined) image.targetRepo = entry.targetRepo;
    if (entry.targetTag !== undefined) image.targetTag = entry.targetTag;
    if (entry.platforms !== undefined && entry.platforms.length > 0) image.platformFilter = platformNames(entry.platforms);
    add(image);
  });
  return { images, blocked };
}

/** `platforms` entries as `os/arch`. */
export function platformNames(platforms: ReadonlyArray<{ os: string; architecture: string }>): string[] {
  return platforms.map((p) => `${p.os}/${p.architecture}`);
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
