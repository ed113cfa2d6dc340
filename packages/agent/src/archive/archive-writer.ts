/**
 * Writes a whole archive from blobs already held: `mirror_000001.tar`, `mirror_000002.tar`, … that
 * extract into one OCI image layout. Built on the streaming writer (`startArchive`), so the chunks
 * are the same as when blobs are added while they are fetched: each at most the limit (tar headers,
 * padding, the chunk's own manifest and the end blocks counted exactly) unless a single blob is
 * larger, every blob's sha256 checked while it is copied, everything written as `.partial` and
 * renamed into place only once the whole set is complete.
 */
import { stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MeshmirrorError,
  silentLogger,
  throwIfAborted,
  type AbortOptions,
  type ArchiveProgress,
  type ArchiveRequest,
  type ArchiveResult,
  type BlobReader,
  type Digest,
  type Logger,
  type BlobRef,
} from '@meshmirror/shared';
import { chunkFileName, type ChunkBlob } from './chunk-manifest.ts';
import { addBlobToFill, chunkFileBytes, chunkFillWithBlob, emptyChunkFill, type ArchiveExtraEntry, type ChunkFill } from './chunk-sizing.ts';
import { archiveLayoutEntries, checkArchiveBlob, checkArchiveFinal, startArchive } from './archive-session.ts';

export { archiveLayoutEntries, startArchive, type LocalArchiveSession, type StartArchiveWriterOptions } from './archive-session.ts';
export { tarEntryBytes } from './tar-header.ts';
export type { ArchiveExtraEntry } from './chunk-sizing.ts';

export interface WriteArchiveOptions extends AbortOptions {
  /** Called as bytes reach the chunk files (at most about once per MiB, and at each chunk's end). */
  onProgress?: (progress: ArchiveProgress) => void;
  /** Component logger; silent when omitted. */
  logger?: Logger;
}

export interface PlannedChunk {
  chunk: number;
  file: string;
  blobs: ChunkBlob[];
  /** Bytes taken by the blob entries; the offset where the next entry's header would go. */
  blobBytes: number;
  /** Length of this chunk's manifest JSON. */
  manifestBytes: number;
  extras: ArchiveExtraEntry[];
  /** The chunk file's exact size. */
  totalBytes: number;
  /** The chunk holds one blob larger than the limit. */
  oversized: boolean;
}

export interface ArchivePlan {
  archiveId: string;
  chunks: PlannedChunk[];
  totalBytes: number;
  warnings: string[];
}

/**
 * Splits blobs into chunks of at most `chunkSizeBytes` exactly as the streaming writer fills them:
 * in order, each blob going into the current chunk when it fits and starting a new chunk when it
 * does not. A blob larger than the limit on its own gets a chunk of its own and a warning.
 * `extrasFor(chunkCount)` gives the files of the last chunk (their size can depend on the number of
 * chunks); they start one more chunk when they do not fit. Pure: useful for dry runs that report
 * how many chunks an archive will take.
 */
export function planArchiveChunks(
  blobs: ReadonlyArray<BlobRef>,
  chunkSizeBytes: number,
  archiveId: string,
  extrasFor: (chunkCount: number) => ArchiveExtraEntry[],
): ArchivePlan {
  const warnings: string[] = [];
  const chunks: PlannedChunk[] = [];
  const planned = (fill: ChunkFill, extras: ArchiveExtraEntry[], oversized: boolean): PlannedChunk => ({
    ...fill,
    file: chunkFileName(fill.chunk),
    extras,
    totalBytes: chunkFileBytes(fill.blobBytes, fill.manifestBytes, extras),
    oversized,
  });

  let current = emptyChunkFill(1, archiveId);
  const closeCurrent = (oversized: boolean): void => {
    chunks.push(planned(current, [], oversized));
    current = emptyChunkFill(current.chunk + 1, archiveId);
  };
  for (const blob of blobs) {
    if (current.blobs.length > 0 && chunkFillWithBlob(current, blob).totalBytes > chunkSizeBytes) closeCurrent(false);
    const next = chunkFillWithBlob(current, blob);
    addBlobToFill(current, next);
    if (next.totalBytes > chunkSizeBytes) {
      warnings.push(
        `blob ${blob.digest} (${blob.size} bytes) is larger than the chunk size limit of ${chunkSizeBytes} bytes; ` +
          `${chunkFileName(current.chunk)} holds it alone and is ${next.totalBytes} bytes`,
      );
      closeCurrent(true);
    }
  }

  // The layout files go into the last chunk; they start a chunk of their own when they do not fit.
  if (current.blobs.length > 0 && chunkFileBytes(current.blobBytes, current.manifestBytes, extrasFor(chunks.length + 1)) > chunkSizeBytes) {
    closeCurrent(false);
  }
  const last = planned(current, extrasFor(chunks.length + 1), false);
  if (last.totalBytes > chunkSizeBytes) {
    warnings.push(
      `index.json and the run metadata take ${last.totalBytes - last.blobBytes} bytes, more than the chunk size limit of ` +
        `${chunkSizeBytes} bytes; ${last.file} is larger than the limit`,
    );
  }
  chunks.push(last);
  const totalBytes = chunks.reduce((sum, chunk) => sum + chunk.totalBytes, 0);
  return { archiveId, chunks, totalBytes, warnings };
}

/**
 * Writes `request.blobs` (read through `reader`) and the layout files as archive chunks in
 * `request.dir`. Nothing is renamed into place before the whole set is written; chunks from an
 * earlier run with higher numbers are then removed. Fails with `DigestMismatchError` (naming the
 * blob) when a blob's bytes do not match its digest; no new chunk is then left behind and the
 * previous archive in the folder is untouched.
 */
export async function writeArchive(reader: BlobReader, request: ArchiveRequest, options: WriteArchiveOptions = {}): Promise<ArchiveResult> {
  const { signal } = options;
  const logger = options.logger ?? silentLogger();
  throwIfAborted(signal);
  const blobs = validateRequest(request);
  // The layout files are sized from the run metadata as it will be written.
  const metadata = checkArchiveFinal(request);
  await checkBlobsHeld(reader, blobs, signal);

  let planned: ArchivePlan | undefined;
  const onProgress = options.onProgress;
  const session = await startArchive(reader, {
    dir: request.dir,
    chunkSizeBytes: request.chunkSizeBytes,
    logger,
    // The plan knows the final size from the start; the session only knows what was queued so far.
    ...(onProgress === undefined
      ? {}
      : { onProgress: (progress: ArchiveProgress) => onProgress({ ...progress, totalBytes: planned?.totalBytes ?? progress.totalBytes }) }),
  });
  try {
    const plan = planArchiveChunks(blobs, request.chunkSizeBytes, session.archiveId, (chunkCount) =>
      archiveLayoutEntries({ images: request.images, metadata, archiveId: session.archiveId, chunkCount, writtenAt: session.startedAt }),
    );
    planned = plan;
    await checkFreeSpace(request.dir, plan);
    onProgress?.({ bytesWritten: 0, totalBytes: plan.totalBytes });
    for (const blob of blobs) await session.add(blob, { signal });
    return await session.finish({ images: request.images, metadata }, { signal });
  } catch (error) {
    await session.abort();
    throw error;
  }
}

function validateRequest(request: ArchiveRequest): BlobRef[] {
  if (!Number.isSafeInteger(request.chunkSizeBytes) || request.chunkSizeBytes <= 0) {
    throw new MeshmirrorError('MM_USAGE', `archive chunk size must be a positive number of bytes, got ${request.chunkSizeBytes}`);
  }
  if (request.dir === '') throw new MeshmirrorError('MM_USAGE', 'archive folder is empty');
  const sizes = new Map<Digest, number>();
  const blobs: BlobRef[] = [];
  for (const blob of request.blobs) {
    checkArchiveBlob(blob);
    const known = sizes.get(blob.digest);
    if (known === undefined) {
      sizes.set(blob.digest, blob.size);
      blobs.push({ digest: blob.digest, size: blob.size });
    } else if (known !== blob.size) {
      throw new MeshmirrorError('MM_USAGE', `archive blob ${blob.digest} is listed with two sizes, ${known} and ${blob.size}`);
    }
  }
  for (const image of request.images) {
    if (sizes.get(image.descriptor.digest) !== image.descriptor.size) {
      throw new MeshmirrorError(
        'MM_USAGE',
        `image ${image.name}: its manifest ${image.descriptor.digest} (${image.descriptor.size} bytes) is not among the blobs to archive`,
      );
    }
  }
  return blobs;
}

async function checkBlobsHeld(reader: BlobReader, blobs: BlobRef[], signal?: AbortSignal): Promise<void> {
  const missing: Digest[] = [];
  for (const blob of blobs) {
    throwIfAborted(signal);
    const size = await reader.blobSize(blob.digest, { signal });
    if (size === undefined) {
      missing.push(blob.digest);
    } else if (size !== blob.size) {
      throw new MeshmirrorError('MM_SIZE_MISMATCH', `blob ${blob.digest} is ${size} bytes in the store, the plan says ${blob.size}`, {
        data: { digest: blob.digest, expected: blob.size, actual: size },
      });
    }
  }
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ');
    const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
    throw new MeshmirrorError('MM_NOT_FOUND', `${missing.length} blob(s) to archive are not held: ${shown}${more}`, {
      data: { missing },
    });
  }
}

/**
 * Fails before writing anything when the folder's file system cannot hold the archive. The new
 * chunks are all written before any old one is replaced (so the old archive stays readable until
 * then), so the need is the whole new archive; a `.partial` left by a killed run will be truncated
 * or removed and counts as free.
 */
async function checkFreeSpace(dir: string, plan: ArchivePlan): Promise<void> {
  let free: number;
  try {
    const fs = await statfs(dir);
    free = fs.bavail * fs.bsize;
  } catch {
    return; // No statfs here: the write itself reports a full disk.
  }
  for (const chunk of plan.chunks) {
    const leftover = await stat(join(dir, `${chunk.file}.partial`)).catch(() => undefined);
    if (leftover?.isFile() === true) free += leftover.size;
  }
  if (plan.totalBytes > free) {
    throw new MeshmirrorError('MM_STORE', `not enough space in ${dir} for the archive: it needs ${formatBytes(plan.totalBytes)} more, ${formatBytes(free)} are free`, {
      data: { dir, neededBytes: plan.totalBytes, freeBytes: free },
    });
  }
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
