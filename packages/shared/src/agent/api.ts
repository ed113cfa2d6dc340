import type { Digest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import type { AbortOptions, RepositoryLocation } from '../registry/types.ts';

/** A blob the plan needs, with its size and the upstream repositories that hold it. */
export interface PlannedBlob {
  digest: Digest;
  size: number;
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
  | { type: 'range-ignored'; digest: Digest; offset: number }
  | { type: 'retry'; digest: Digest; offset: number; attempt: number; delayMs: number; code: string; message: string };

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
  blobs: Array<{ digest: Digest; size: number }>;
  /** Run metadata written into the last chunk as `meshmirror/run.json`. */
  metadata: Record<string, unknown>;
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

/**
 * An agent: a blob store that fetches, holds, serves and writes. The coordinator's in-process agent
 * and a remote agent reached over libp2p implement this one interface.
 */
export interface Agent {
  readonly name: string;
  /** Which of these blobs (or pieces of them) the agent's store holds. */
  holdings(blobs: Array<{ digest: Digest; size: number }>, options?: AbortOptions): Promise<BlobHolding[]>;
  /**
   * Fetches pieces from upstream into the store, resuming from committed offsets, reporting through
   * `onEvent`. Resolves when every task is done or failed (failures are events, not rejections);
   * rejects only when aborted or when the store itself fails.
   */
  fetchPieces(tasks: PieceTask[], options: FetchPiecesOptions): Promise<void>;
  /** Stores a small blob the coordinator already has (a manifest); verified against `digest`. */
  putBlob(digest: Digest, data: Uint8Array, options?: AbortOptions): Promise<void>;
  /** Writes the archive from blobs the agent holds. */
  writeArchive(
    request: ArchiveRequest,
    options?: AbortOptions & { onProgress?: (progress: ArchiveProgress) => void },
  ): Promise<ArchiveResult>;
  close(): Promise<void>;
}
