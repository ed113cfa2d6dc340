/**
 * The writer's side of the exchange: a piece another agent fetched is pulled over
 * `/meshmirror/blob/1` into this host's store, at its place in the blob's partial file, and kept
 * only when its sha256 is the one the fetching agent reported.
 */
import type { Libp2p } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Digest } from '@meshmirror/shared';
import type { BlobStore, PieceSpec } from '../store/blob-store.ts';
import { fetchPeerRange } from './blob-protocol.ts';

export interface PullPieceOptions {
  signal?: AbortSignal;
  /** No byte from the holder for this long fails the pull (`MM_STALL`). */
  stallMs: number;
}

/**
 * Pulls `piece` from `holder` into `store` (after the bytes the store already committed for it, when
 * an interrupted run left some), and finishes the piece only if its bytes hash to `sha256` (else `MM_DIGEST_MISMATCH`, and the
 * piece starts over). Resolves with the bytes received from the holder.
 */
export async function pullPiece(node: Libp2p, holder: Multiaddr, store: BlobStore, piece: PieceSpec, sha256: Digest, options: PullPieceOptions): Promise<number> {
  const writer = await store.openPiece(piece, options.signal === undefined ? {} : { signal: options.signal });
  let received = 0;
  try {
    const from = writer.committed;
    if (from < piece.length) {
      await fetchPeerRange(
        node,
        holder,
        { digest: piece.digest, offset: piece.offset + from, length: piece.length - from },
        (chunk) => {
          received += chunk.length;
          return writer.write(chunk);
        },
        { stallMs: options.stallMs, ...(options.signal === undefined ? {} : { signal: options.signal }) },
      );
    }
    await writer.finish(sha256);
    return received;
  } catch (err) {
    // The next pull may come from another holder: starting over keeps the blame for wrong bytes on
    // the one holder that sent them.
    await writer.restart().catch(() => undefined);
    throw err;
  } finally {
    await writer.close();
  }
}
