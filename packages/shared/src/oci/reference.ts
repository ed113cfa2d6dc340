import { ImageReferenceError } from '../errors.ts';
import { isDigest, type Digest } from './digest.ts';

/** A parsed image reference: `registry/repository[:tag][@digest]`. */
export interface ImageReference {
  /** Registry host with optional port, e.g. `registry.redhat.io`, `localhost:5000`, `docker.io`. */
  registry: string;
  /** Repository path, e.g. `ubi9/ubi`, `library/alpine`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';
/** Where Docker Hub's registry API actually lives. */
export const DOCKER_HUB_API = 'registry-1.docker.io';

const TAG_RE = /^[\w][\w.-]{0,127}$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const HOST_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d{1,5})?$|^\[[0-9a-fA-F:.]+\](?::\d{1,5})?$/;

/**
 * Parses an image reference the way `docker`/`containers/image` do: the first path component is a
 * registry when it has a `.` or `:` or is `localhost`; otherwise the image is on Docker Hub, and a
 * single-component Docker Hub name gets `library/`. A reference with neither tag nor digest gets
 * `latest`. An optional `docker://` prefix is accepted.
 */
export function parseImageReference(input: string): ImageReference {
  const original = input;
  let rest = input.trim();
  if (rest.startsWith('docker://')) rest = rest.slice('docker://'.length);
  if (rest === '') throw new ImageReferenceError(original, 'empty reference');
  if (/\s/.test(rest)) throw new ImageReferenceError(original, 'contains white space');

  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw new ImageReferenceError(original, `"${d}" is not a sha256 digest`);
    digest = d;
    rest = rest.slice(0, at);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) throw new ImageReferenceError(original, `"${tag}" is not a valid tag`);
  }

  let registry = DOCKER_HUB;
  let repository = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      registry = first;
      repository = rest.slice(firstSlash + 1);
      if (!HOST_RE.test(registry)) throw new ImageReferenceError(original, `"${registry}" is not a valid registry host`);
      const port = /:(\d+)$/.exec(registry)?.[1];
      if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
        throw new ImageReferenceError(original, `port ${port} of "${registry}" is not between 1 and 65535`);
      }
    }
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API) registry = DOCKER_HUB;
  if (repository === '') throw new ImageReferenceError(original, 'missing repository');
  for (const component of repository.split('/')) {
    if (!COMPONENT_RE.test(component)) {
      throw new ImageReferenceError(original, `repository component "${component}" must be lower-case letters, digits and separators`);
    }
  }
  if (repository.length > 255) throw new ImageReferenceError(original, 'repository name longer than 255 characters');
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (tag === undefined && digest === undefined) tag = 'latest';

  const ref: ImageReference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `registry/repository[:tag][@digest]`, fully qualified. */
export function formatReference(ref: ImageReference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** `registry/repository`, the name without tag or digest. */
export function repositoryName(ref: Pick<ImageReference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The manifest reference to request: the digest when pinned, else the tag. */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** The host to connect to for a registry name (Docker Hub's API lives on another host). */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}
