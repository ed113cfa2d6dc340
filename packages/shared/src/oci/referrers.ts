/**
 * OCI 1.1 referrers: a manifest whose `subject` names another manifest (a signature, an SBOM, an
 * attestation) refers to it. A registry with the referrers API lists them at
 * `/v2/<name>/referrers/<digest>`; one without it is given the referrers tag schema instead: an image
 * index tagged `sha256-<hex>` in the subject's repository, whose entries are the referrers.
 */
import type { Digest } from './digest.ts';
import { parseManifest, type Descriptor } from './manifest.ts';
import { MediaType } from './media-types.ts';

/** The tag of the referrers tag schema for `digest`: `sha256-<hex>`. */
export function referrersTag(digest: Digest): string {
  return digest.replace(':', '-');
}

/**
 * A referrer manifest's subject, and the descriptor a referrers list gives it (media type, digest,
 * size, `artifactType` falling back to the config's media type, annotations); undefined when the
 * manifest names no subject.
 */
export function referrerEntry(
  manifest: { digest: Digest; mediaType: string; bytes: Uint8Array },
  where: string,
): { subject: Digest; descriptor: Descriptor } | undefined {
  const parsed = parseManifest(manifest.bytes, manifest.mediaType, where);
  const body = parsed.kind === 'index' ? parsed.index : parsed.manifest;
  if (body.subject === undefined) return undefined;
  const artifactType = body.artifactType ?? (parsed.kind === 'image' ? parsed.manifest.config.mediaType : undefined);
  const descriptor: Descriptor = {
    mediaType: parsed.mediaType,
    digest: manifest.digest,
    size: manifest.bytes.byteLength,
    ...(artifactType === undefined ? {} : { artifactType }),
    ...(body.annotations === undefined ? {} : { annotations: body.annotations }),
  };
  return { subject: body.subject.digest, descriptor };
}

/**
 * The referrers tag index with `add` merged into `existing` (entries already listed by digest are
 * kept as they are); undefined when nothing is new, so an unchanged index is not written again.
 */
export function mergeReferrersIndex(existing: Descriptor[], add: Descriptor[]): Uint8Array | undefined {
  const listed = new Set(existing.map((d) => d.digest));
  const fresh = add.filter((d) => !listed.has(d.digest));
  if (fresh.length === 0) return undefined;
  const manifests = [...existing, ...fresh.filter((d, i) => fresh.findIndex((o) => o.digest === d.digest) === i)];
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }), 'utf8');
}
