/**
 * Where an image lands in the target registry, by oc-mirror v2's rules, so a cluster configured for
 * an oc-mirror mirror needs no change: `HOST/PREFIX/<source path>:<tag>`; `targetRepo` replaces the
 * source path and `targetTag` the tag; an image named only by digest is tagged with the digest's hex
 * (oc-mirror does the same), and one named by tag and digest keeps only its tag.
 */
import { MeshmirrorError, parseImageReference, type Digest, type ImageReference } from '@meshmirror/shared';

/** `docker://HOST[/PREFIX]`, parsed. */
export interface PushDestination {
  registry: string;
  /** Repository path prefix without slashes at either end; '' for none. */
  prefix: string;
}

export function parseDockerDestination(arg: string): PushDestination {
  const rest = arg.slice('docker://'.length).replace(/\/+$/, '');
  if (rest === '') throw new MeshmirrorError('MM_USAGE', `destination "${arg}": missing registry host after docker://`);
  const slash = rest.indexOf('/');
  const registry = slash === -1 ? rest : rest.slice(0, slash);
  const prefix = slash === -1 ? '' : rest.slice(slash + 1);
  try {
    // Validates host and path with the same rules as every image reference.
    parseImageReference(`${registry}/${prefix === '' ? 'x' : `${prefix}/x`}`);
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `destination "${arg}": ${(cause as Error).message}`, { cause });
  }
  if (!registry.includes('.') && !registry.includes(':') && registry !== 'localhost') {
    throw new MeshmirrorError('MM_USAGE', `destination "${arg}": "${registry}" is not a registry host (expected HOST[:PORT])`);
  }
  return { registry, prefix };
}

export interface PushTarget {
  registry: string;
  repository: string;
  /** The tag pushed last, after every manifest of the image; none for a referrer, found through its subject. */
  tag?: string;
  /** `registry/repository:tag`, or `registry/repository@digest` when there is no tag. */
  reference: string;
}

export function pushTarget(
  destination: PushDestination,
  image: { ref: ImageReference; targetRepo?: string; targetTag?: string; role?: string },
  digest: Digest,
): PushTarget {
  const path = (image.targetRepo ?? image.ref.repository).replace(/^\/+|\/+$/g, '');
  const repository = destination.prefix === '' ? path : `${destination.prefix}/${path}`;
  // A referrer is pushed by digest: a client finds it by its subject, and a tag would only clutter the repository.
  if (image.role === 'referrer') return { registry: destination.registry, repository, reference: `${destination.registry}/${repository}@${digest}` };
  const tag = image.targetTag ?? image.ref.tag ?? digest.slice('sha256:'.length);
  return { registry: destination.registry, repository, tag, reference: `${destination.registry}/${repository}:${tag}` };
}
