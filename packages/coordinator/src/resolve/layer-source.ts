/**
 * Reading the contents of upstream layers during resolution: a release payload's
 * `release-manifests/image-references`, an operator catalog's `/configs`. The layers come from the
 * run's blob supply into the coordinator's own store, like every other blob (a farm of one over the
 * coordinator's agent: pieces, resume, verification), and are read from there, so a layer that is
 * read to resolve the image set and then mirrored with it crosses the upstream link once.
 */
import type { Readable } from 'node:stream';
import { asErrorCode, MeshmirrorError, type BlobReader, type BlobRef, type Digest, type Logger, type RepositoryLocation } from '@meshmirror/shared';
import type { MirrorPlan } from '../plan/plan.ts';
import { fetchLocally, type BlobSupply } from '../run/mesh-fetch.ts';

export interface LayerSource {
  /** A stream of the blob's bytes, verified against its digest before the first byte is read. */
  open(location: RepositoryLocation, blob: BlobRef, options?: { signal?: AbortSignal }): Promise<Readable>;
}

/**
 * Layers through the supply's own fetcher and the writer's store: fetched when the store does not
 * hold them yet (resuming what it holds of them), then opened from the store. Concurrent opens of
 * one blob share one fetch.
 */
export function supplyLayerSource(supply: Pick<BlobSupply, 'local' | 'writer'>, store: BlobReader, options: { pieceSize: number; logger: Logger }): LayerSource {
  const fetching = new Map<Digest, Promise<void>>();
  const fetchOnce = (location: RepositoryLocation, blob: BlobRef, signal: AbortSignal | undefined): Promise<void> => {
    let pending = fetching.get(blob.digest);
    if (pending === undefined) {
      pending = (async () => {
        const abortable = signal === undefined ? {} : { signal };
        const plan: MirrorPlan = { images: [], blobs: new Map([[blob.digest, { ...blob, sources: [location], images: [] }]]), uniqueBytes: blob.size };
        const holdings = await supply.local.agent.holdings([blob], abortable);
        let held = holdings.some((h) => h.held);
        const outcome = held
          ? undefined
          : await fetchLocally(supply, plan, holdings, options.pieceSize, {
              logger: options.logger,
              ...abortable,
              onBlobHeld: () => {
                held = true;
              },
            });
        if (!held) {
          const why = outcome?.failedBlobs.get(blob.digest);
          throw why === undefined
            ? new MeshmirrorError('MM_NOT_FOUND', `layer ${blob.digest} of ${location.registry}/${location.repository} could not be fetched`)
            : new MeshmirrorError(asErrorCode(why.code), why.message, { data: { code: why.code } });
        }
      })().finally(() => fetching.delete(blob.digest));
      fetching.set(blob.digest, pending);
    }
    return pending;
  };
  return {
    async open(location, blob, options = {}) {
      if ((await store.blobSize(blob.digest, options)) === undefined) await fetchOnce(location, blob, options.signal);
      return await store.openBlob(blob.digest, options);
    },
  };
}
