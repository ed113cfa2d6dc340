/**
 * Where an image lands in the target registry, by oc-mirror v2's rules, so a cluster configured for
 * an oc-mirror mirror needs no change: `HOST/PREFIX/<repository>:<tag>`, where repository and tag are
 * `mirroredName`'s (shared with `meshmirror serve`): `targetRepo` replaces the source path and
 * `targetTag` the tag; an image named only by digest is tagged with the digest's hex (oc-mirror does
 * the same), one named by tag and digest keeps only its tag, and a referrer gets no tag.
 * `--max-nested-paths` flattens deep paths as oc-mirror does.
 */
import { MeshmirrorError, mirroredName, parseImageReference, type Digest, type MirroredImage } from '@meshmirror/shared';

/** `docker://HOST[/PREFIX]`, parsed. */
export interface PushDestination {
  registry: string;
  /** Repository path prefix without slashes at either end; '' for none. */
  prefix: string;
  /**
   * `--max-nested-paths N` (oc-mirror's): target repository paths (prefix included) of more than N
   * components keep the first N - 1 and join the rest with `-`, for registries that limit depth.
   */
  maxNestedPaths?: number;
}

/** oc-mirror's `--max-nested-paths`: `a/b/c/d` with 2 → `a/b-c-d`; 0 or undefined changes nothing. */
export function withMaxNestedPaths(repository: string, maxNestedPaths: number | undefined): string {
  if (maxNestedPaths === undefined || maxNestedPaths <= 0) return repository;
  const parts = repository.split('/');
  if (parts.length <= maxNestedPaths) return repository;
  return [...parts.slice(0, maxNestedPaths - 1), parts.slice(maxNestedPaths - 1).join('-')].join('/');
}

export function parseDockerDestination(arg: string, options: { maxNestedPaths?: number } = {}): PushDestination {
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
  return { registry, prefix, ...(options.maxNestedPaths === undefined || options.maxNestedPaths === 0 ? {} : { maxNestedPaths: options.maxNestedPaths }) };
}

export interface PushTarget {
  registry: string;
  repository: string;
  /** The tag pushed last, after every manifest of the image; none for a referrer, found through its subject. */
  tag?: string;
  /** `registry/repository:tag`, or `registry/repository@digest` when there is no tag. */
  reference: string;
}

export function pushTarget(destination: PushDestination, image: MirroredImage, digest: Digest): PushTarget {
  const name = mirroredName(image, digest);
  const repository = withMaxNestedPaths(destination.prefix === '' ? name.repository : `${destination.prefix}/${name.repository}`, destination.maxNestedPaths);
  // A referrer is pushed by digest: a client finds it by its subject, and a tag would only clutter the repository.
  if (name.tag === undefined) return { registry: destination.registry, repository, reference: `${destination.registry}/${repository}@${digest}` };
  return { registry: destination.registry, repository, tag: name.tag, reference: `${destination.registry}/${repository}:${name.tag}` };
}
