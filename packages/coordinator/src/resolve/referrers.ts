/**
 * OCI referrers (signatures, SBOMs, attestations attached by `subject`): for every manifest of the
 * set, the source is asked for its referrers (the referrers API, else the `sha256-<hex>` tag index),
 * and each referrer becomes one more image of the set, named by digest, going to the repository its
 * subject goes to. Referrers of referrers (a signature of an SBOM) are found the same way, a few
 * levels deep.
 */
import pLimit from 'p-limit';
import { describeError, errorCode, formatReference, throwIfAborted, type Digest, type RegistryClient } from '@meshmirror/shared';
import { sourceManifestDigests, type FailedImage, type RequestedImage, type ResolvedImage } from './image-set.ts';

/**
 * The manifests whose referrers are asked for: each image's top manifest and the children it keeps.
 * Images meshmirror made or changed (filtered catalogs, the graph image) have none upstream, nor do
 * sigstore signatures; the top of an index cut down to some platforms is pushed with another digest,
 * so only its children are asked about.
 */
export function referrerSubjects(images: ResolvedImage[]): Array<{ image: ResolvedImage; digest: Digest }> {
  return images.flatMap((image) => (image.role === 'signature' ? [] : sourceManifestDigests(image).map((digest) => ({ image, digest }))));
}

export interface ReferrerLookup {
  /** One image per referrer found, each (source, target repository) once. */
  requests: RequestedImage[];
  /** Subjects whose referrers could not be listed. */
  failed: FailedImage[];
  /** Subjects asked about. */
  subjects: number;
}

/**
 * Asks the source for the referrers of every subject, `concurrency` at once; `seen` holds the
 * (source, target repository) keys already requested, and gains the new ones.
 */
export async function lookUpReferrers(
  subjects: Array<{ image: ResolvedImage; digest: Digest }>,
  client: RegistryClient,
  seen: Set<string>,
  options: { concurrency: number; signal?: AbortSignal },
): Promise<ReferrerLookup> {
  const limit = pLimit(options.concurrency);
  const requests: RequestedImage[] = [];
  const failed: FailedImage[] = [];
  await Promise.all(
    subjects.map(({ image, digest }) =>
      limit(async () => {
        throwIfAborted(options.signal);
        const location = { registry: image.ref.registry, repository: image.ref.repository };
        try {
          const found = await client.getReferrers(location, digest, options.signal === undefined ? {} : { signal: options.signal });
          for (const referrer of found.manifests) {
            const ref = { ...location, digest: referrer.digest };
            const source = formatReference(ref);
            const key = `${source} ${image.targetRepo ?? ''}`;
            if (seen.has(key)) continue;
            seen.add(key);
            requests.push({
              kind: image.kind,
              source,
              ref,
              origin: `${image.origin} (${referrer.artifactType ?? 'referrer'} of ${digest})`,
              role: 'referrer',
              ...(image.targetRepo === undefined ? {} : { targetRepo: image.targetRepo }),
            });
          }
        } catch (err) {
          if (options.signal?.aborted === true) throw err;
          failed.push({
            kind: image.kind,
            source: `${formatReference({ ...location, digest })} referrers`,
            origin: `${image.origin} (referrers of ${digest})`,
            role: 'referrer',
            digest,
            code: errorCode(err),
            reason: describeError(err),
          });
        }
      }),
    ),
  );
  return { requests, failed, subjects: subjects.length };
}
