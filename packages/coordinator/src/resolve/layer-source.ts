/**
 * Reading the contents of upstream layers during resolution: a release payload's
 * `release-manifests/image-references`, an operator catalog's `/configs`. The layers are fetched
 * into the coordinator's own store first and read from there, so a layer that is read to resolve
 * the image set and then mirrored with it crosses the upstream link once, like every other blob.
 */
import type { Readable } from 'node:stream';
import { asErrorCode, MeshmirrorError, type PieceFetcher, type BlobReader, type Digest, type RepositoryLocation, type BlobRef } from '@meshmirror/shared';

export interface LayerSource {
  /** A stream of the blob's bytes, verified against its digest before the first byte is read. */
  open(location: RepositoryLocation, blob: BlobRef, options?: { signal?: AbortSignal }): Promise<Readable>;
}

/**
 * Layers through the coordinator's agent and its store: fetched (resumably, verified) when the store
 * does not hold them yet, then opened from the store. Concurrent opens of one blob share one fetch.
 */
export function storeLayerSource(agent: PieceFetcher, store: BlobReader): LayerSource {
  const fetching = new Map<Digest, Promise<void>>();
  const fetchOnce = (location: RepositoryLocation, blob: BlobRef, signal: AbortSignal | undefined): Promise<void> => {
    let pending = fetching.get(blob.digest);
    if (pending === undefined) {
      pending = (async () => {
        let failure: MeshmirrorError | undefined;
        let held = false;
        await agent.fetchPieces([{ digest: blob.digest, blobSize: blob.size, offset: 0, length: blob.size, sources: [location] }], {
          ...(signal === undefined ? {} : { signal }),
          onEvent: (event) => {
            if (event.type === 'blob-held') held = true;
            if (event.type === 'piece-failed') failure = new MeshmirrorError(asErrorCode(event.code), event.message, { data: { code: event.code } });
          },
        });
        if (!held) {
          throw failure ?? new MeshmirrorError('MM_NOT_FOUND', `layer ${blob.digest} of ${location.registry}/${location.repository} could not be fetched`);
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
