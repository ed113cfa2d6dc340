/**
 * The writer's side of the exchange: a piece another agent fetched is pulled over
 * `/meshmirror/blob/1` into this host's store, at its place in the blob's partial file, and kept
 * only when its sha256 is the one the fetching agent reported.
 */
import type { Libp2p } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { asErrorCode, createDigester, describeError, DigestMismatchError, digestOf, errorCode, MeshmirrorError, type Digest } from '@meshmirror/shared';
import type { BlobStore, PieceSpec } from '../store/blob-store.ts';
import type { ByteRateLimiter } from '../fetch/rate-limiter.ts';
import { fetchPeerRange } from './blob-protocol.ts';
import { WriteBatch } from '../io/write-batch.ts';

export interface PullPieceOptions {
  signal?: AbortSignal;
  /** No byte from the holder for this long fails the pull (`MM_STALL`). */
  stallMs: number;
  /** The holder is still fetching its copy: its bytes come as they arrive from upstream. */
  live?: boolean;
  /** This host's ceiling on mesh bytes (`--limit-peer`): each chunk received takes from it first. */
  throttle?: ByteRateLimiter;
}

/** The holder's copy of a piece: the piece's bytes from `from` to its end, which hash to `sha256`. */
export interface HolderCopy {
  from: number;
  /**
   * Known, or (a live pull) known once the holder has fetched all of its copy. Undefined: the copy
   * is the committed start of one the holder never finished, with no hash of its own.
   */
  sha256: Digest | Promise<Digest> | undefined;
}

/**
 * The writer's batch per pull, larger than an upstream fetch's: it takes in the whole farm's bytes on
 * one host, and a write is also a wake-up of a pool thread on cores the agents and the registry keep
 * busy. Farm of three at 200 Mbit/s, the 496 MiB set, six runs against six back to back: the
 * writer's CPU 5.9–6.7 s against 6.5–7.3 s with 256 KiB, its system time 1.65–1.95 s against
 * 1.8–2.2 s; the runs 9.4–10.3 s (mean 9.85) against 9.9–11.1 s (10.36), within the machine's
 * noise of a run. Pulls at once are bounded (PULLS_PER_AGENT per agent), and so is the memory: at
 * most 18 MiB more on a farm of three.
 */
export const PULL_BATCH_BYTES = 1024 * 1024;

/**
 * Pulls from `holder` the bytes of `piece` this host's store does not have yet, at their place in the
 * blob's partial file, and finishes the piece only if the bytes of the holder's copy hash to its
 * sha256 (else `MM_DIGEST_MISMATCH`, and the piece starts over). The store may already hold the
 * piece's first bytes, from an earlier pull that broke off or an earlier run: those from `copy.from`
 * on are read back and hashed with the new ones. A pull that fails otherwise keeps (and commits)
 * what arrived, and its error says how much the store now holds (`data.committed`), so the rest can
 * be fetched from there. Resolves with the bytes received from the holder.
 */
export async function pullPiece(node: Libp2p, holder: Multiaddr, store: BlobStore, piece: PieceSpec, copy: HolderCopy, options: PullPieceOptions): Promise<number> {
  const writer = await store.openPiece(piece, options.signal === undefined ? {} : { signal: options.signal });
  let received = 0;
  let mismatch = false;
  try {
    const have = writer.committed;
    if (have < copy.from) {
      throw new MeshmirrorError('MM_NOT_FOUND', `this store holds ${have} bytes of piece ${piece.digest}@${piece.offset}, the holder's copy starts at ${copy.from}`);
    }
    // From the piece's start, the writer's own hash is the copy's; otherwise the copy's bytes are hashed on their own.
    const range = copy.from === 0 ? undefined : await store.hashPartialRange(piece.digest, piece.offset + copy.from, have - copy.from, { into: createDigester() });
    if (have < piece.length) {
      const batch = new WriteBatch((bytes) => writer.write(bytes), piece.length - have, { capacity: PULL_BATCH_BYTES });
      try {
        await fetchPeerRange(
          node,
          holder,
          { digest: piece.digest, offset: piece.offset + have, length: piece.length - have, ...(options.live === true ? { live: true } : {}) },
          async (chunk) => {
            // Waiting here pauses the stream, so the holder's sends slow down to the limit.
            if (options.throttle !== undefined) await options.throttle.take(chunk.length, options.signal);
            received += chunk.length;
            range?.update(chunk);
            await batch.push(chunk);
          },
          { stallMs: options.stallMs, ...(options.signal === undefined ? {} : { signal: options.signal }) },
        );
      } catch (err) {
        // What arrived before the failure is kept too, so the piece resumes after it.
        await batch.flush().catch(() => undefined);
        throw err;
      }
      await batch.flush();
    }
    let expected: Digest | undefined;
    try {
      expected = await copy.sha256;
    } catch {
      // Every byte arrived, but the holder died before it said what they hash to.
      expected = undefined;
    }
    if (expected === undefined) {
      // Kept unchecked here: the blob's own digest checks them when it is assembled.
      await writer.finish();
      return received;
    }
    if (range === undefined) {
      mismatch = true; // finish() starts the piece over itself when the hash differs
      await writer.finish(expected);
      return received;
    }
    const actual = digestOf(range);
    if (actual !== expected) {
      mismatch = true;
      await writer.restart();
      throw new DigestMismatchError(expected, actual, `bytes ${copy.from}.. of piece ${piece.digest}@${piece.offset}`);
    }
    await writer.finish();
    return received;
  } catch (err) {
    if (mismatch && errorCode(err) === 'MM_DIGEST_MISMATCH') throw err;
    // Whatever arrived is kept: the rest can come from another holder or another fetch.
    await writer.commit().catch(() => undefined);
    throw new MeshmirrorError(asErrorCode(errorCode(err)), describeError(err), { cause: err, data: { committed: writer.committed } });
  } finally {
    await writer.close();
  }
}
