/**
 * The one sizing rule for archive chunks, used by the planner (`planArchiveChunks`, for dry runs and
 * `writeArchive`'s space check) and by the streaming writer (`startArchive`), so both always agree
 * on where a chunk ends. A chunk file is: blob entries, then (in the last chunk) the layout files,
 * then its own manifest entry, then the end-of-archive blocks. The manifest lists every blob of the
 * chunk, so it grows with each blob and is counted exactly.
 */
import type { BlobRef } from '@meshmirror/shared';
import { CHUNK_MANIFEST_VERSION, encodeJson, type ChunkBlob, type ChunkManifest } from './chunk-manifest.ts';
import { END_OF_ARCHIVE_BYTES, TAR_BLOCK, tarEntryBytes } from './tar-header.ts';

/** A file written into the last chunk beside the blobs (oci-layout, index.json, run.json). */
export interface ArchiveExtraEntry {
  name: string;
  data: Buffer;
}

/** Where a chunk stands: the blobs in it so far and the bytes they and its manifest take. */
export interface ChunkFill {
  chunk: number;
  blobs: ChunkBlob[];
  /** Bytes taken by the blob entries; the offset where the next entry's header goes. */
  blobBytes: number;
  /** Length of the chunk's manifest JSON listing `blobs`. */
  manifestBytes: number;
}

/** The chunk after adding one more blob, and the file size it would then have (without layout files). */
export interface ChunkFillWithBlob {
  entry: ChunkBlob;
  blobBytes: number;
  manifestBytes: number;
  totalBytes: number;
}

export function emptyChunkFill(chunk: number, archiveId: string): ChunkFill {
  return {
    chunk,
    blobs: [],
    blobBytes: 0,
    manifestBytes: encodeJson({ schemaVersion: CHUNK_MANIFEST_VERSION, chunk, archiveId, blobs: [] } satisfies ChunkManifest).length,
  };
}

/** The chunk's manifest, exactly `fill.manifestBytes` long. */
export function encodeChunkManifest(fill: ChunkFill, archiveId: string): Buffer {
  return encodeJson({ schemaVersion: CHUNK_MANIFEST_VERSION, chunk: fill.chunk, archiveId, blobs: fill.blobs } satisfies ChunkManifest);
}

export function chunkFillWithBlob(fill: ChunkFill, blob: BlobRef): ChunkFillWithBlob {
  const entry: ChunkBlob = { digest: blob.digest, size: blob.size, offset: fill.blobBytes + TAR_BLOCK };
  const blobBytes = fill.blobBytes + tarEntryBytes(blob.size);
  // Compact JSON: each further blob adds its own object and, after the first, one comma.
  const manifestBytes = fill.manifestBytes + encodeJson(entry).length + (fill.blobs.length > 0 ? 1 : 0);
  return { entry, blobBytes, manifestBytes, totalBytes: chunkFileBytes(blobBytes, manifestBytes, []) };
}

export function addBlobToFill(fill: ChunkFill, next: ChunkFillWithBlob): void {
  fill.blobs.push(next.entry);
  fill.blobBytes = next.blobBytes;
  fill.manifestBytes = next.manifestBytes;
}

/** The exact size of a chunk file with these blob bytes, manifest length and layout files. */
export function chunkFileBytes(blobBytes: number, manifestBytes: number, extras: readonly ArchiveExtraEntry[]): number {
  return blobBytes + extrasBytes(extras) + tarEntryBytes(manifestBytes) + END_OF_ARCHIVE_BYTES;
}

export function extrasBytes(extras: readonly ArchiveExtraEntry[]): number {
  return extras.reduce((sum, extra) => sum + tarEntryBytes(extra.data.length), 0);
}

/** A UUID's length: what an archive id takes in a chunk manifest. */
const ARCHIVE_ID_PLACEHOLDER = '00000000-0000-0000-0000-000000000000';

/** The size of a chunk holding only this blob: what it takes at least, for `--strict-archive`'s check before fetching. */
export function chunkBytesAlone(blob: BlobRef): number {
  return chunkFillWithBlob(emptyChunkFill(1, ARCHIVE_ID_PLACEHOLDER), blob).totalBytes;
}
