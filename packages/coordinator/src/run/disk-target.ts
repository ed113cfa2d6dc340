import type { RequestedImage } from '../resolve/image-set.ts';

/** Where an image lands on disk, in oc-mirror's mapping notation. */
export function diskTarget(destination: string, image: RequestedImage): string {
  const repository = image.targetRepo ?? image.ref.repository;
  const tag = image.targetTag ?? image.ref.tag;
  return `file://${destination}/${repository}${tag !== undefined ? `:${tag}` : `@${image.ref.digest ?? ''}`}`;
}
