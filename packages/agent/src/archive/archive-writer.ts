/**
 * Writes the archive: `mirror_000001.tar`, `mirror_000002.tar`, … that extract into one OCI image
 * layout. Every chunk's size is computed exactly before it is written (tar headers, padding, the
 * chunk's own manifest and the end-of-archive blocks), so no chunk exceeds the limit unless a single
 * blob does. Each chunk is written as `<name>.partial`, fsynced and renamed, so a crash never leaves
 * a complete-looking chunk with bad content; every blob's sha256 is checked while it is copied.
 */
import { randomUUID } from 'node:crypto';
import { open, readdir, rename, rm, stat, statfs, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pack as tarPack, type Pack } from 'tar-stream';
import {
  abortError,
  createDigester,
  describeError,
  DigestMismatchError,
  digestHex,
  errorCode,
  isDigest,
  MediaType,
  MeshmirrorError,
  REF_NAME_ANNOTATION,
  silentLogger,
  throwIfAborted,
  type AbortOptions,
  type ArchiveChunk,
  type ArchiveProgress,
  type ArchiveRequest,
  type ArchiveResult,
  type BlobReader,
  type Digest,
  type Logger,
} from '@meshmirror/shared';
import {
  BLOB_ENTRY_PREFIX,
  CHUNK_FILE_RE,
  chunkFileName,
  chunkManifestEntryName,
  encodeJson,
  INDEX_JSON_ENTRY,
  OCI_LAYOUT_ENTRY,
  RUN_METADATA_ENTRY,
  type ChunkBlob,
  type ChunkManifest,
  type RunMetadata,
} from './chunk-manifest.ts';

export interface WriteArchiveOptions extends AbortOptions {
  /** Called as bytes reach the chunk files (at most about once per MiB, and at each chunk's end). */
  onProgress?: (progress: ArchiveProgress) => void;
  /** Component logger; silent when omitted. */
  logger?: Logger;
}

const TAR_BLOCK = 512;
const END_OF_ARCHIVE_BYTES = 2 * TAR_BLOCK;
const PROGRESS_STEP_BYTES = 1024 * 1024;
/** ustar keeps names up to 100 bytes in the header itself; longer names would need pax headers. */
const USTAR_NAME_MAX = 100;

/** Bytes one regular-file entry takes in a tar: its header and its data padded to whole blocks. */
export function tarEntryBytes(dataBytes: number): number {
  return TAR_BLOCK + Math.ceil(dataBytes / TAR_BLOCK) * TAR_BLOCK;
}

/** A file written into the last chunk beside the blobs (oci-layout, index.json, run.json). */
export interface ArchiveExtraEntry {
  name: string;
  data: Buffer;
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
 * Splits blobs into chunks of at most `chunkSizeBytes`, in order, each blob going into the current
 * chunk when it fits and starting a new chunk when it does not. A blob larger than the limit on its
 * own gets a chunk of its own and a warning. `extrasFor(chunkCount)` gives the files of the last
 * chunk (their size can depend on the number of chunks); they start one more chunk when they do not
 * fit. Pure: useful for dry runs that report how many chunks an archive will take.
 */
export function planArchiveChunks(
  blobs: ReadonlyArray<{ digest: Digest; size: number }>,
  chunkSizeBytes: number,
  archiveId: string,
  extrasFor: (chunkCount: number) => ArchiveExtraEntry[],
): ArchivePlan {
  const warnings: string[] = [];
  const chunks: PlannedChunk[] = [];
  const emptyManifestBytes = (chunk: number): number =>
    encodeJson({ chunk, archiveId, blobs: [] } satisfies ChunkManifest).length;
  const newChunk = (chunk: number): PlannedChunk => ({
    chunk,
    file: chunkFileName(chunk),
    blobs: [],
    blobBytes: 0,
    manifestBytes: emptyManifestBytes(chunk),
    extras: [],
    totalBytes: 0,
    oversized: false,
  });
  const sizeWith = (blobBytes: number, manifestBytes: number, extras: ArchiveExtraEntry[]): number =>
    blobBytes +
    extras.reduce((sum, extra) => sum + tarEntryBytes(extra.data.length), 0) +
    tarEntryBytes(manifestBytes) +
    END_OF_ARCHIVE_BYTES;
  const withBlob = (chunk: PlannedChunk, blob: { digest: Digest; size: number }) => {
    const entry: ChunkBlob = { digest: blob.digest, size: blob.size, offset: chunk.blobBytes + TAR_BLOCK };
    const blobBytes = chunk.blobBytes + tarEntryBytes(blob.size);
    const manifestBytes = chunk.manifestBytes + encodeJson(entry).length + (chunk.blobs.length > 0 ? 1 : 0);
    return { entry, blobBytes, manifestBytes, totalBytes: sizeWith(blobBytes, manifestBytes, []) };
  };
  const add = (chunk: PlannedChunk, next: ReturnType<typeof withBlob>): void => {
    chunk.blobs.push(next.entry);
    chunk.blobBytes = next.blobBytes;
    chunk.manifestBytes = next.manifestBytes;
    chunk.totalBytes = next.totalBytes;
  };

  let current = newChunk(1);
  const closeCurrent = (): void => {
    chunks.push(current);
    current = newChunk(current.chunk + 1);
  };
  for (const blob of blobs) {
    let next = withBlob(current, blob);
    if (next.totalBytes <= chunkSizeBytes) {
      add(current, next);
      continue;
    }
    if (current.blobs.length > 0) {
      closeCurrent();
      next = withBlob(current, blob);
      if (next.totalBytes <= chunkSizeBytes) {
        add(current, next);
        continue;
      }
    }
    add(current, next);
    current.oversized = true;
    warnings.push(
      `blob ${blob.digest} (${blob.size} bytes) is larger than the chunk size limit of ${chunkSizeBytes} bytes; ` +
        `${current.file} holds it alone and is ${next.totalBytes} bytes`,
    );
    closeCurrent();
  }

  // The layout files go into the last chunk; they start a chunk of their own when they do not fit.
  let extrasPlaced = false;
  if (current.blobs.length > 0) {
    const extras = extrasFor(chunks.length + 1);
    const total = sizeWith(current.blobBytes, current.manifestBytes, extras);
    if (total <= chunkSizeBytes) {
      current.extras = extras;
      current.totalBytes = total;
      chunks.push(current);
      extrasPlaced = true;
    } else {
      closeCurrent();
    }
  }
  if (!extrasPlaced) {
    current.extras = extrasFor(chunks.length + 1);
    current.totalBytes = sizeWith(0, current.manifestBytes, current.extras);
    if (current.totalBytes > chunkSizeBytes) {
      warnings.push(
        `index.json and the run metadata take ${current.totalBytes} bytes, more than the chunk size limit of ` +
          `${chunkSizeBytes} bytes; ${current.file} is larger than the limit`,
      );
    }
    chunks.push(current);
  }
  const totalBytes = chunks.reduce((sum, chunk) => sum + chunk.totalBytes, 0);
  return { archiveId, chunks, totalBytes, warnings };
}

/**
 * Writes `request.blobs` (read through `reader`) and the layout files as archive chunks in
 * `request.dir`. Chunks from an earlier run with higher numbers are removed once the new set is
 * complete. Fails with `DigestMismatchError` (naming the blob) when a blob's bytes do not match its
 * digest; the chunk being written is then deleted, never renamed into place.
 */
export async function writeArchive(
  reader: BlobReader,
  request: ArchiveRequest,
  options: WriteArchiveOptions = {},
): Promise<ArchiveResult> {
  const { signal } = options;
  const logger = options.logger ?? silentLogger();
  throwIfAborted(signal);
  const blobs = validateRequest(request);
  await checkBlobsHeld(reader, blobs, signal);

  const writtenAt = new Date();
  const archiveId = randomUUID();
  const ociLayout = encodeJson({ imageLayoutVersion: '1.0.0' });
  const indexJson = Buffer.from(JSON.stringify(buildIndexJson(request), null, 2), 'utf8');
  const plan = planArchiveChunks(blobs, request.chunkSizeBytes, archiveId, (chunkCount) => {
    const metadata: RunMetadata = {
      ...request.metadata,
      archive: { archiveId, chunkCount, writtenAt: writtenAt.toISOString() },
    };
    return [
      { name: OCI_LAYOUT_ENTRY, data: ociLayout },
      { name: INDEX_JSON_ENTRY, data: indexJson },
      { name: RUN_METADATA_ENTRY, data: Buffer.from(JSON.stringify(metadata, null, 2), 'utf8') },
    ];
  });
  for (const warning of plan.warnings) logger.warn({ dir: request.dir }, warning);

  await mkdir(request.dir, { recursive: true });
  await checkFreeSpace(request.dir, plan);

  const progress = new ProgressReporter(plan.totalBytes, options.onProgress);
  progress.report(true);
  // Whole seconds: tar headers keep mtime in seconds, and one time for all entries keeps them alike.
  const mtime = new Date(Math.floor(writtenAt.getTime() / 1000) * 1000);
  const chunks: ArchiveChunk[] = [];
  for (const chunk of plan.chunks) {
    throwIfAborted(signal);
    await writeChunk(reader, request.dir, chunk, archiveId, { mtime, progress, signal });
    chunks.push({ file: join(request.dir, chunk.file), bytes: chunk.totalBytes, blobs: chunk.blobs.length });
    logger.info(
      { file: chunk.file, bytes: chunk.totalBytes, blobs: chunk.blobs.length, chunk: chunk.chunk, chunks: plan.chunks.length },
      'archive chunk written',
    );
  }
  await removeStaleChunks(request.dir, plan.chunks.length, logger);
  return { chunks, warnings: plan.warnings };
}

function validateRequest(request: ArchiveRequest): Array<{ digest: Digest; size: number }> {
  if (!Number.isSafeInteger(request.chunkSizeBytes) || request.chunkSizeBytes <= 0) {
    throw new MeshmirrorError('MM_USAGE', `archive chunk size must be a positive number of bytes, got ${request.chunkSizeBytes}`);
  }
  if (request.dir === '') throw new MeshmirrorError('MM_USAGE', 'archive folder is empty');
  if ('archive' in request.metadata) {
    throw new MeshmirrorError('MM_USAGE', 'run metadata must not use the key "archive": the archive writer fills it in');
  }
  const sizes = new Map<Digest, number>();
  const blobs: Array<{ digest: Digest; size: number }> = [];
  for (const blob of request.blobs) {
    if (!isDigest(blob.digest)) throw new MeshmirrorError('MM_USAGE', `archive blob "${blob.digest}" is not a sha256 digest`);
    if (!Number.isSafeInteger(blob.size) || blob.size < 0) {
      throw new MeshmirrorError('MM_USAGE', `archive blob ${blob.digest} has an invalid size ${blob.size}`);
    }
    const known = sizes.get(blob.digest);
    if (known === undefined) {
      sizes.set(blob.digest, blob.size);
      blobs.push({ digest: blob.digest, size: blob.size });
    } else if (known !== blob.size) {
      throw new MeshmirrorError('MM_USAGE', `archive blob ${blob.digest} is listed with two sizes, ${known} and ${blob.size}`);
    }
  }
  for (const image of request.images) {
    if (image.name === '') throw new MeshmirrorError('MM_USAGE', `an archive image has an empty name (${image.descriptor.digest})`);
    if (sizes.get(image.descriptor.digest) !== image.descriptor.size) {
      throw new MeshmirrorError(
        'MM_USAGE',
        `image ${image.name}: its manifest ${image.descriptor.digest} (${image.descriptor.size} bytes) is not among the blobs to archive`,
      );
    }
  }
  return blobs;
}

async function checkBlobsHeld(reader: BlobReader, blobs: Array<{ digest: Digest; size: number }>, signal?: AbortSignal): Promise<void> {
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

function buildIndexJson(request: ArchiveRequest): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: request.images.map((image) => ({
      ...image.descriptor,
      annotations: { ...image.descriptor.annotations, [REF_NAME_ANNOTATION]: image.name },
    })),
  };
}

/**
 * Fails before writing anything when the folder's file system cannot hold the archive. Old chunks
 * are replaced one by one, so the peak need is the new chunks written so far minus the old ones
 * already replaced.
 */
async function checkFreeSpace(dir: string, plan: ArchivePlan): Promise<void> {
  let free: number;
  try {
    const fs = await statfs(dir);
    free = fs.bavail * fs.bsize;
  } catch {
    return; // No statfs here: the write itself reports a full disk.
  }
  let need = 0;
  let peak = 0;
  for (const chunk of plan.chunks) {
    need += chunk.totalBytes;
    peak = Math.max(peak, need);
    const old = await stat(join(dir, chunk.file)).catch(() => undefined);
    if (old?.isFile() === true) need -= old.size;
  }
  if (peak > free) {
    throw new MeshmirrorError(
      'MM_STORE',
      `not enough space in ${dir} for the archive: it needs ${formatBytes(peak)} more, ${formatBytes(free)} are free`,
      { data: { dir, neededBytes: peak, freeBytes: free } },
    );
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

class ProgressReporter {
  readonly #total: number;
  readonly #onProgress: ((progress: ArchiveProgress) => void) | undefined;
  #written = 0;
  #reported = -1;

  constructor(total: number, onProgress: ((progress: ArchiveProgress) => void) | undefined) {
    this.#total = total;
    this.#onProgress = onProgress;
  }

  add(bytes: number): void {
    this.#written += bytes;
    if (this.#written - this.#reported >= PROGRESS_STEP_BYTES) this.report(false);
  }

  report(force: boolean): void {
    if (this.#onProgress === undefined || (!force && this.#written === this.#reported)) return;
    this.#reported = this.#written;
    this.#onProgress({ bytesWritten: this.#written, totalBytes: this.#total });
  }
}

interface ChunkWriteContext {
  mtime: Date;
  progress: ProgressReporter;
  signal: AbortSignal | undefined;
}

async function writeChunk(
  reader: BlobReader,
  dir: string,
  chunk: PlannedChunk,
  archiveId: string,
  context: ChunkWriteContext,
): Promise<void> {
  const finalPath = join(dir, chunk.file);
  const partialPath = `${finalPath}.partial`;
  const manifest = encodeJson({ chunk: chunk.chunk, archiveId, blobs: chunk.blobs } satisfies ChunkManifest);
  if (manifest.length !== chunk.manifestBytes) {
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${chunk.file}: chunk manifest is ${manifest.length} bytes, planned ${chunk.manifestBytes}`);
  }

  let handle: FileHandle | undefined;
  try {
    handle = await open(partialPath, 'w').catch((cause: unknown) => {
      throw writeFailure(partialPath, cause);
    });
    const written = await packChunk(reader, handle, chunk, manifest, context, partialPath);
    if (written !== chunk.totalBytes) {
      throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${chunk.file}: wrote ${written} bytes, planned ${chunk.totalBytes}`);
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    throwIfAborted(context.signal);
    await rename(partialPath, finalPath);
    await syncFolder(dir);
    context.progress.report(true);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(partialPath, { force: true });
    if (context.signal?.aborted === true) throw abortError(context.signal);
    throw error;
  }
}

/** Streams the chunk's entries through tar-stream into the file; returns the bytes written. */
async function packChunk(
  reader: BlobReader,
  handle: FileHandle,
  chunk: PlannedChunk,
  manifest: Buffer,
  context: ChunkWriteContext,
  partialPath: string,
): Promise<number> {
  const pack = tarPack();
  // Failures reach the caller through the produce/drain promises; the stream events would be uncaught.
  pack.on('error', () => undefined);
  let firstError: unknown;
  const fail = (error: unknown): never => {
    firstError ??= error;
    pack.destroy(error instanceof Error ? error : new Error(String(error)));
    throw error;
  };

  let written = 0;
  const drain = (async () => {
    for await (const data of pack as AsyncIterable<Buffer>) {
      await writeFully(handle, data).catch((cause: unknown) => {
        throw writeFailure(partialPath, cause);
      });
      written += data.length;
      context.progress.add(data.length);
    }
  })().catch(fail);

  const produce = (async () => {
    for (const blob of chunk.blobs) {
      throwIfAborted(context.signal);
      await copyBlobEntry(reader, pack, blob, chunk.file, context);
    }
    for (const extra of chunk.extras) await addBufferEntry(pack, extra.name, extra.data, context.mtime);
    await addBufferEntry(pack, chunkManifestEntryName(chunk.chunk), manifest, context.mtime);
    pack.finalize();
  })().catch(fail);

  const results = await Promise.allSettled([produce, drain]);
  if (firstError !== undefined) throw firstError;
  for (const result of results) if (result.status === 'rejected') throw result.reason;
  return written;
}

async function copyBlobEntry(reader: BlobReader, pack: Pack, blob: ChunkBlob, file: string, context: ChunkWriteContext): Promise<void> {
  const name = `${BLOB_ENTRY_PREFIX}${digestHex(blob.digest)}`;
  assertUstarName(name);
  const source: Readable = await reader.openBlob(blob.digest, { signal: context.signal });
  let entryCallback: (error?: Error | null) => void = () => undefined;
  const entryDone = new Promise<void>((resolve, reject) => {
    entryCallback = (error) => (error ? reject(error) : resolve());
  });
  // Rejections are awaited below on success; on failure the cause is thrown instead.
  entryDone.catch(() => undefined);
  const sink = pack.entry({ name, size: blob.size, mode: 0o644, mtime: context.mtime, type: 'file' }, entryCallback);
  sink.on('error', () => undefined);
  try {
    const hash = createDigester();
    let seen = 0;
    for await (const data of source as AsyncIterable<Buffer>) {
      throwIfAborted(context.signal);
      seen += data.length;
      if (seen > blob.size) break;
      hash.update(data);
      if (!sink.write(data)) await waitForDrain(sink);
    }
    if (seen !== blob.size) {
      throw new MeshmirrorError(
        'MM_SIZE_MISMATCH',
        `blob ${blob.digest} gave ${seen > blob.size ? `more than ${blob.size}` : seen} bytes while writing ${file}, expected ${blob.size}`,
        { data: { digest: blob.digest, expected: blob.size } },
      );
    }
    const actual: Digest = `sha256:${hash.digest('hex')}`;
    if (actual !== blob.digest) throw new DigestMismatchError(blob.digest, actual, `blob ${blob.digest} while writing ${file}`);
    sink.end(null);
    await entryDone;
  } finally {
    source.destroy();
  }
}

async function addBufferEntry(pack: Pack, name: string, data: Buffer, mtime: Date): Promise<void> {
  assertUstarName(name);
  await new Promise<void>((resolve, reject) => {
    pack.entry({ name, size: data.length, mode: 0o644, mtime, type: 'file' }, data, (error) => (error ? reject(error) : resolve()));
  });
}

/** Resolves when a tar-stream entry can take more data; rejects when it closes first. */
function waitForDrain(sink: ReturnType<Pack['entry']>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (sink.destroying || sink.destroyed) {
      reject(new MeshmirrorError('MM_STORE', 'tar entry closed while writing'));
      return;
    }
    const cleanup = (): void => {
      sink.off('drain', onDrain);
      sink.off('close', onClose);
      sink.off('error', onError);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(new MeshmirrorError('MM_STORE', 'tar entry closed while writing'));
    };
    const onError = (error: unknown): void => {
      cleanup();
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    sink.on('drain', onDrain);
    sink.on('close', onClose);
    sink.on('error', onError);
  });
}

function assertUstarName(name: string): void {
  // Entry sizes are planned with one 512-byte header per entry: no pax headers for long names.
  if (Buffer.byteLength(name) > USTAR_NAME_MAX) {
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `tar entry name "${name}" is longer than ${USTAR_NAME_MAX} bytes`);
  }
}

async function writeFully(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

function writeFailure(path: string, cause: unknown): MeshmirrorError {
  if (cause instanceof MeshmirrorError) return cause;
  const reason = errorCode(cause) === 'ENOSPC' ? 'no space left on device' : describeError(cause);
  return new MeshmirrorError('MM_STORE', `cannot write ${path}: ${reason}`, { cause, data: { path } });
}

/** Makes renames in `dir` durable: a rename is only on disk once the folder itself is synced. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a folder; the rename is still atomic there.
  } finally {
    await handle.close();
  }
}

/** Removes chunks numbered above `chunkCount` (an earlier, longer archive) and left-over `.partial` files. */
async function removeStaleChunks(dir: string, chunkCount: number, logger: Logger): Promise<void> {
  const names = await readdir(dir);
  let removed = false;
  for (const name of names) {
    const isPartial = name.endsWith('.partial') && CHUNK_FILE_RE.test(name.slice(0, -'.partial'.length));
    const match = CHUNK_FILE_RE.exec(name);
    const stale = isPartial || (match?.[1] !== undefined && Number(match[1]) > chunkCount);
    if (!stale) continue;
    await rm(join(dir, name), { force: true });
    removed = true;
    logger.info({ file: name }, 'removed a chunk left from an earlier archive');
  }
  if (removed) await syncFolder(dir);
}
