/**
 * The repository and tag a mirrored image has in a registry that holds the mirror. A push to
 * `docker://HOST/PREFIX` and `meshmirror serve` of the archive follow this one rule, so a cluster
 * pointed at either finds the same names:
 * - the repository is the image set's `targetRepo` (release and catalog images), else the source's
 *   repository path;
 * - the tag is the image set's `targetTag`, else the source's tag, else, for an image named only by
 *   digest, the digest's 64 hex characters (oc-mirror v2 tags such images the same way);
 * - a referrer (a signature, an SBOM) has no tag: clients find it through its subject.
 */
import { digestHex, type Digest } from './digest.ts';
import type { ImageReference } from './reference.ts';

export interface MirroredImage {
  ref: ImageReference;
  targetRepo?: string;
  targetTag?: string;
  /** The image's role in the image set; only `referrer` changes the name. */
  role?: string;
}

export interface MirroredName {
  /** Without a registry host or a leading or trailing slash. */
  repository: string;
  /** Absent for a referrer. */
  tag?: string;
}

/** Where `image`, archived as the manifest (or index) `digest`, lives in a mirror registry. */
export function mirroredName(image: MirroredImage, digest: Digest): MirroredName {
  const repository = (image.targetRepo ?? image.ref.repository).replace(/^\/+|\/+$/g, '');
  if (image.role === 'referrer') return { repository };
  return { repository, tag: image.targetTag ?? image.ref.tag ?? digestTag(digest) };
}

/** The tag of an image mirrored only by digest: the digest's 64 hex characters. */
export function digestTag(digest: Digest): string {
  return digestHex(digest);
}
