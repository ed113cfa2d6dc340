/**
 * Which manifest a GET or HEAD answers given the client's `Accept`, by distribution's rules
 * (`registry/handlers/manifests.go`, v3):
 * - an OCI image manifest or OCI index the client did not accept is 404 MANIFEST_UNKNOWN;
 * - a Docker manifest list asked for by tag by a client that did not accept lists is replaced by its
 *   linux/amd64 manifest (404 MANIFEST_UNKNOWN without one; 400 MANIFEST_INVALID when that is a
 *   Docker schema 2 manifest the client did not accept either); by digest it is served as it is;
 * - a Docker schema 2 manifest is always served (distribution 3 no longer rewrites it to schema 1).
 */
import { MediaType, type Descriptor, type Digest } from '@meshmirror/shared';
import type { RegistryError } from './registry-errors.ts';

/** The platform distribution picks from a manifest list for a client that cannot read lists. */
const DEFAULT_PLATFORM = { os: 'linux', architecture: 'amd64' };

/** The media types named in `Accept` headers, parameters (`q=`) dropped, as distribution reads them. */
export function acceptedMediaTypes(accept: string | string[] | undefined): Set<string> {
  const accepted = new Set<string>();
  for (const header of Array.isArray(accept) ? accept : accept === undefined ? [] : [accept]) {
    for (const part of header.split(',')) {
      const type = (part.split(';')[0] ?? '').trim().toLowerCase();
      if (/^[\w.+-]+\/[\w.+-]+$/.test(type)) accepted.add(type);
    }
  }
  return accepted;
}

export type ManifestChoice =
  /** Serve the stored manifest. */
  | { kind: 'as-stored' }
  /** Serve this child of a Docker manifest list instead (then check it with `negotiateListChild`). */
  | { kind: 'platform-child'; digest: Digest }
  | { kind: 'refused'; error: RegistryError };

/** What to answer for a stored manifest of `mediaType` (with its `children` when it is an index). */
export function negotiateManifest(stored: { mediaType: string; children: readonly Descriptor[] }, accepted: Set<string>, byTag: boolean): ManifestChoice {
  if (stored.mediaType === MediaType.OciManifest && !accepted.has(MediaType.OciManifest)) {
    return refused('MANIFEST_UNKNOWN', 'OCI manifest found, but accept header does not support OCI manifests');
  }
  if (stored.mediaType === MediaType.OciIndex && !accepted.has(MediaType.OciIndex)) {
    return refused('MANIFEST_UNKNOWN', 'OCI index found, but accept header does not support OCI indexes');
  }
  if (byTag && stored.mediaType === MediaType.DockerManifestList && !accepted.has(MediaType.DockerManifestList)) {
    const child = stored.children.find((c) => c.platform?.os === DEFAULT_PLATFORM.os && c.platform.architecture === DEFAULT_PLATFORM.architecture);
    if (child === undefined)
      return refused('MANIFEST_UNKNOWN', 'manifest list found, but accept header does not support manifest lists and it has no linux/amd64 manifest');
    return { kind: 'platform-child', digest: child.digest };
  }
  return { kind: 'as-stored' };
}

/** Whether the linux/amd64 child picked from a manifest list may be served to this client. */
export function negotiateListChild(childMediaType: string, accepted: Set<string>): RegistryError | undefined {
  if (childMediaType === MediaType.DockerManifest && !accepted.has(MediaType.DockerManifest)) {
    return { code: 'MANIFEST_INVALID', message: 'Schema 2 manifest not supported by client' };
  }
  return undefined;
}

function refused(code: RegistryError['code'], message: string): ManifestChoice {
  return { kind: 'refused', error: { code, message } };
}
