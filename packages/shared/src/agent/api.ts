import type { Readable } from 'node:stream';
import type { RunDescription } from '../archive/run-metadata.ts';
import type { BlobRef, Digest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import type { AbortOptions, RepositoryLocation } from '../registry/types.ts';

/** A blob the plan needs, with its size and the upstream repositories that hold it. */
export interface PlannedBlob extends BlobRef {
  /** Upstream repositories known to hold this blob, tried in order. */
  sources: RepositoryLocation[];
}

/** A byte range of one blob, assigned to one agent. A small blob is one piece covering it whole. */
export interface PieceTask {
  digest: Digest;
  blobSize: number;
  offset: number;
  length: number;
  sources: RepositoryLocation[];
}

export interface PieceHolding {
  offset: number;
  length: number;
  /** Bytes of the piece durably written so far (resume point, relative to `offset`). */
  committed: number;
  /** The sha256 of the piece's bytes, once the piece is finished (`committed === length`). */
  sha256?: Digest;
}

export interface BlobHolding {
  digest: Digest;
  /** The whole blob is in the store and its sha256 was verified. */
  held: boolean;
  /** Partial pieces with their committed offsets (empty when held). */
  pieces: PieceHolding[];
}

/** What an agent reports while fetching. */
export type PieceEvent =
  | { type: 'progress'; digest: Digest; offset: number; bytes: number }
  | { type: 'piece-done'; digest: Digest; offset: number; length: number; sha256: Digest; upstreamBytes: number }
  | {
      type: 'piece-failed';
      digest: Digest;
      offset: number;
      length: number;
      code: string;
      message: string;
      upstreamBytes: number;
    }
  /**
   * The fetch was stopped by the caller (another copy won, the blob failed, the run ended); the bytes
   * that arrived are kept for a resume. The last word on the piece, so its upstream bytes are counted.
   */
  | { type: 'piece-cancelled'; digest: Digest; offset: number; length: number; upstreamBytes: number }
  /** Every piece of the blob is here and its sha256 was verified: it can be served and archived. */
  | ({ type: 'blob-held' } & BlobRef)
  | { type: 'range-ignored'; digest: Digest; offset: number }
  /**
   * An attempt failed and another follows after `delayMs`. `host` is the registry the piece comes
   * from; while that host is failing, `failingForMs` says for how long and `unreachable` whether its
   * connections fail (as opposed to error answers), for the progress line.
   */
  | {
      type: 'retry';
      digest: Digest;
      offset: number;
      attempt: number;
      delayMs: number;
      code: string;
      message: string;
      host?: string | undefined;
      failingForMs?: number | undefined;
      unreachable?: boolean | undefined;
    };

export interface FetchPiecesOptions extends AbortOptions {
  onEvent: (event: PieceEvent) => void;
}

/** One image to name in the archive's `index.json`. */
export interface ArchiveImage {
  /** Source reference, written as `org.opencontainers.image.ref.name`. */
  name: string;
  descriptor: Descriptor;
}

export interface ArchiveRequest {
  /** Output folder for `mirror_000001.tar`, … */
  dir: string;
  /** Maximum bytes per chunk. */
  chunkSizeBytes: number;
  images: ArchiveImage[];
  /** Every blob to include (layers, configs, manifests), in the order to write them. */
  blobs: BlobRef[];
  /** What the run says about itself, written into the last chunk as `meshmirror/run.json`. */
  metadata: RunDescription;
}

export interface ArchiveChunk {
  file: string;
  bytes: number;
  blobs: number;
}

export interface ArchiveResult {
  chunks: ArchiveChunk[];
  warnings: string[];
}

export interface ArchiveProgress {
  bytesWritten: number;
  totalBytes: number;
}

export interface StartArchiveOptions extends AbortOptions {
  /** Output folder for `mirror_000001.tar`, …; created when missing. */
  dir: string;
  /** Maximum bytes per chunk, counting tar headers, padding, the chunk's manifest and end blocks. */
  chunkSizeBytes: number;
  /**
   * `--strict-archive`: a chunk larger than `chunkSizeBytes` (one blob too large for any chunk, or
   * layout files that do not fit) is an error (`MM_CONFIG_INVALID`) instead of a warning.
   */
  strict?: boolean;
  /**
   * Called as bytes reach the chunk files. `bytesWritten` counts every byte in the chunk files
   * (headers and manifests too); `totalBytes` is what the archive will take for the blobs added or
   * queued so far, so it grows while blobs are added and equals `bytesWritten` once finished.
   */
  onProgress?: (progress: ArchiveProgress) => void;
  /**
   * Called once a blob's entry is complete in its chunk. Its bytes there never change again (a
   * later blob that fails is truncated away after it, and `finish` only renames the file), so a
   * check of them now is a check of what the archive will hold.
   */
  onBlobWritten?: (blob: WrittenBlob) => void;
}

/** A blob entry as the archive writer left it: where its bytes are now, and where they will be. */
export interface WrittenBlob extends BlobRef {
  /** The chunk's file name once finished (`mirror_000001.tar`). */
  chunk: string;
  /** The file the bytes are in now (the chunk's `.partial` until `finish`). */
  path: string;
  /** Offset of the blob's first byte in the chunk (after its tar header). */
  offset: number;
}

/**
 * An archive being written while its blobs are still arriving: each blob is appended to the current
 * chunk as soon as `add` is called for it. Everything is written as `<chunk>.partial` and renamed
 * only by `finish`, so the previous archive in the folder stays intact and readable until the new
 * one is complete, and a killed run never leaves a complete-looking chunk. Aborting the signal given
 * to `startArchive` aborts the session like `abort()`.
 */
export interface ArchiveSession {
  /**
   * Appends one blob (read now through the agent's store, sha256-verified while copying unless
   * `verified` says the agent verified it moments ago, when it completed in this run) to the
   * archive. Calls may come from many places at once; they are queued and written in call order.
   * Adding a digest already added is a no-op (with another size it is `MM_USAGE`). A failure
   * (`MM_DIGEST_MISMATCH` naming the blob, `MM_SIZE_MISMATCH`, `MM_NOT_FOUND`, `MM_ABORTED` from
   * this call's signal, a full disk) rolls the partly written entry back and rejects this call
   * only: the session stays usable and the blob may be added again. Only when the chunk file
   * itself cannot be repaired (a failed truncate, or a failure while closing a full chunk) does
   * every later call reject; `abort()` then deletes the files.
   */
  add(blob: BlobRef & { verified?: boolean }, options?: AbortOptions): Promise<void>;
  /**
   * Waits for the queued adds, writes `oci-layout`, `index.json` (one entry per image,
   * `org.opencontainers.image.ref.name` = name) and `meshmirror/run.json` (`metadata` with
   * `schemaVersion` and `archive` added) into the last chunk (or a chunk of their own when they do
   * not fit), fsyncs, renames every `.partial` into place and removes chunks with higher numbers and
   * left-over `.partial` files. Refuses with `MM_USAGE`, before writing anything and leaving the
   * session usable, when an image's manifest was not added or `metadata` does not fit run.json's
   * schema (naming the field). Any other failure deletes the session's files.
   */
  finish(final: { images: ArchiveImage[]; metadata: RunDescription }, options?: AbortOptions): Promise<ArchiveResult>;
  /**
   * Stops the blob being written, rejects the queued adds with `MM_ABORTED` and deletes this
   * session's `.partial` files; the previous archive in the folder is untouched. Does nothing once
   * `finish` has resolved.
   */
  abort(): Promise<void>;
  /** Bytes of blob data in the archive so far (rolled-back entries excluded). */
  readonly bytesWritten: number;
}

/** One blob to place in one repository of a target registry, from the agent's store. */
export interface PushBlobRequest {
  digest: Digest;
  size: number;
  target: RepositoryLocation;
  /** Repositories of the target known (or likely) to hold the blob: tried as mount sources first. */
  mountFrom: string[];
}

export interface PushBlobResult {
  /** present: the target had it; mounted: from another repository; uploaded: bytes were sent. */
  action: 'present' | 'mounted' | 'uploaded';
  /** Body bytes sent for this blob, failed attempts included. */
  bytesSent: number;
  /** Bytes the registry already held from an interrupted earlier upload (journalled session). */
  resumedFrom: number;
  /** Upload sessions the registry lost and that were started over. */
  restarts: number;
  retries: number;
}

export interface PushBlobOptions extends AbortOptions {
  /** Body bytes put on the wire, as they go (failed attempts included). */
  onBytesSent?: (bytes: number) => void;
}

/*
 * An agent is a blob store with capabilities, one interface each, so a caller asks for what it uses
 * and no implementation has to refuse a method: every agent holds, fetches and pushes (`Agent`);
 * the coordinator's own agent also writes locally (`LocalAgent`).
 */

/** What an agent's store holds, and dropping what turned out to be wrong. */
export interface BlobHoldings {
  readonly name: string;
  /** Which of these blobs (or pieces of them) the agent's store holds. */
  holdings(blobs: BlobRef[], options?: AbortOptions): Promise<BlobHolding[]>;
  /**
   * Forgets held blobs whose bytes failed verification when read (disk corruption, a crash that
   * lost written data), so they are fetched again instead of failing every later run.
   */
  evict(digests: Digest[], options?: AbortOptions): Promise<void>;
}

/** Fetching pieces from upstream registries into the agent's store. */
export interface PieceFetcher {
  readonly name: string;
  /**
   * Fetches pieces from upstream into the store, resuming from committed offsets, reporting through
   * `onEvent`. Resolves when every task is done or failed (failures are events, not rejections);
   * rejects only when aborted or when the store itself fails.
   */
  fetchPieces(tasks: PieceTask[], options: FetchPiecesOptions): Promise<void>;
}

/** Placing a blob from the agent's store into a target registry (mirror to mirror). */
export interface BlobPusher {
  readonly name: string;
  /**
   * HEAD, then a mount from `mountFrom`, then a resumable chunked upload from the agent's store,
   * with the agent's own credentials for the target. An upload the agent began in an earlier run
   * resumes from the offset the registry confirms. Rejects with `MM_NOT_FOUND` when the store does
   * not hold the blob and the target cannot get it without its bytes, and with the registry's error
   * when the upload cannot be done.
   */
  pushBlob(request: PushBlobRequest, options?: PushBlobOptions): Promise<PushBlobResult>;
}

/** Writing on the coordinator's own host: small blobs it already has, and the archive. */
export interface LocalWriter {
  /** Stores a small blob the coordinator already has (a manifest); verified against `digest`. */
  putBlob(digest: Digest, data: Uint8Array, options?: AbortOptions): Promise<void>;
  /**
   * Stores a blob streamed from a local source (an operator catalog's OCI layout), resuming after
   * what an earlier import committed (`open(offset)`), verified like a fetched blob.
   */
  importBlob(digest: Digest, size: number, open: (offset: number) => Promise<Readable>, options?: AbortOptions): Promise<void>;
  /** Starts an archive that blobs are added to as they become held (see `ArchiveSession`). */
  startArchive(options: StartArchiveOptions): Promise<ArchiveSession>;
}

/** An agent on any host, in this process or reached over libp2p: it holds, fetches and pushes. */
export interface Agent extends BlobHoldings, PieceFetcher, BlobPusher {
  close(): Promise<void>;
}

/** The coordinator's own agent: an agent that also writes the archive and the blobs it is handed. */
export interface LocalAgent extends Agent, LocalWriter {}
