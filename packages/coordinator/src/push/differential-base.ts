/**
 * Pushing a differential archive: the blobs it leaves out must already be in the target (its
 * receipt says so). Before anything is uploaded, each is looked for (HEAD) in the repositories of
 * this push that need it and in those the receipt names; if any is nowhere, the push stops at once,
 * saying how many and which receipt the archive was made against. Those found are mounted from
 * where they were found, or are present already.
 */
import pLimit from 'p-limit';
import { differentialBasis, formatBytes, MeshmirrorError, throwIfAborted, type Differential, type Digest, type RegistryPushClient } from '@meshmirror/shared';
import type { ImagePush } from './image-pusher.ts';
import type { BlobPlacement } from './registry-sink.ts';

/** Blobs looked for at once. */
const LOOKUPS = 8;

/**
 * Where in the target (`registry`) each blob the archive leaves out is held; throws
 * `MM_DIFFERENTIAL_BASE_MISSING` when any blob the pushes need is nowhere there.
 */
export async function findDifferentialBase(
  differential: Differential,
  pushes: ImagePush[],
  registry: string,
  client: RegistryPushClient,
  signal?: AbortSignal,
): Promise<Map<Digest, string>> {
  const omitted = new Map(differential.omitted.map((b) => [b.digest, b]));
  const candidates = new Map<Digest, string[]>();
  for (const push of pushes) {
    for (const blob of push.blobs) {
      if (!omitted.has(blob.digest)) continue;
      const list = candidates.get(blob.digest) ?? [];
      if (!list.includes(push.target.repository)) list.push(push.target.repository);
      candidates.set(blob.digest, list);
    }
  }
  const holders = new Map<Digest, string>();
  const missing: Digest[] = [];
  const limit = pLimit(LOOKUPS);
  await Promise.all(
    [...candidates].map(([digest, repositories]) =>
      limit(async () => {
        throwIfAborted(signal);
        for (const repository of new Set([...repositories, ...(omitted.get(digest)?.repositories ?? [])])) {
          if (await client.blobExists({ registry, repository }, digest, signal === undefined ? {} : { signal })) {
            holders.set(digest, repository);
            return;
          }
        }
        missing.push(digest);
      }),
    ),
  );
  if (missing.length > 0) {
    const bytes = missing.reduce((n, d) => n + (omitted.get(d)?.size ?? 0), 0);
    const shown = missing.sort().slice(0, 3).join(', ');
    throw new MeshmirrorError(
      'MM_DIFFERENTIAL_BASE_MISSING',
      `this archive is differential: made against ${differentialBasis(differential)}, it leaves out ` +
        `${differential.omitted.length} blobs; ${registry} lacks ${missing.length} of them (${formatBytes(bytes)}: ${shown}${missing.length > 3 ? ', …' : ''}). ` +
        'Nothing was uploaded. Push the archive it was made after first, or make a full archive (without --since-receipt or --since)',
      { data: { missing: missing.length } },
    );
  }
  return holders;
}

/** The archive's placement, with each left-out blob mounted from where the target holds it. */
export function withDifferentialBase(placement: BlobPlacement, holders: ReadonlyMap<Digest, string>): BlobPlacement {
  return {
    ...placement,
    place: (blob, repository, mountFrom, onBytesSent) => {
      const holder = holders.get(blob.digest);
      const from = holder === undefined || holder === repository ? mountFrom : [holder, ...mountFrom.filter((r) => r !== holder)];
      return placement.place(blob, repository, from, onBytesSent);
    },
  };
}
