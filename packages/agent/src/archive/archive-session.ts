/**
 * The streaming archive writer: blobs are appended to the current chunk as soon as they are held,
 * while others are still being fetched, instead of after the whole fetch.
 *
 * Chunks are filled online, first fit: a blob goes into the current chunk when the chunk, with the
 * blob's entry and its manifest grown by one line, still fits the limit (sizes are exact, see
 * `chunk-sizing.ts`); otherwise the chunk is closed (its manifest and end blocks written, fsynced)
 * and the next one opened. Entries are written with positional writes at offsets the writer chose,
 * so a blob whose bytes turn out wrong is rolled back by truncating the chunk file to where its
 * entry began, and the session goes on. Every chunk stays `<name>.partial` until `finish` renames
 * the complete set into place: a killed run leaves only `.partial` files, and the previous archive
 * in the folder stays readable until then.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  abortError,
  createDigester,
  describeError,
  describeRunMetadataIssue,
  DigestMismatchError,
  digestHex,
  errorCode,
  isDigest,
  MediaType,
  MeshmirrorError,
  REF_NAME_ANNOTATION,
  runMetadataVersionOf,
  runDescriptionSchema,
  silentLogger,
  throwIfAborted,
  type AbortOptions,
  type ArchiveImage,
  type ArchiveProgress,
  type ArchiveResult,
  type ArchiveSession,
  type BlobReader,
  type Digest,
  type Logger,
  type RunDescription,
  type RunMetadata,
  type StartArchiveOptions,
  type BlobRef,
  type WrittenBlob,
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
} from './chunk-manifest.ts';
import { addBlobToFill, chunkFileBytes, chunkFillWithBlob, emptyChunkFill, encodeChunkManifest, type ArchiveExtraEntry, type ChunkFill } from './chunk-sizing.ts';
import { encodeTarHeader, END_OF_ARCHIVE_BYTES, TAR_BLOCK, tarEntryBytes, tarPaddingBytes } from './tar-header.ts';
import { readAhead } from '../io/read-ahead.ts';

const PROGRESS_STEP_BYTES = 1024 * 1024;
const PARTIAL_SUFFIX = '.partial';
/** Blob bytes between background write-backs of an open chunk. */
const WRITE_BACK_BYTES = 64 * 1024 * 1024;

export interface StartArchiveWriterOptions extends StartArchiveOptions {
  /** Component logger; silent when omitted. */
  logger?: Logger;
}

/** An `ArchiveSession` written by this process, with what it decided at start. */
export interface LocalArchiveSession extends ArchiveSession {
  /** The id every chunk manifest and `run.json` of this archive carry (mixed sets are refused on read). */
  readonly archiveId: string;
  /** When the session started: the tar entries' mtime and `run.json`'s `archive.writtenAt`. */
  readonly startedAt: Date;
}

/**
 * Starts an archive in `options.dir` that blobs, read through `reader`, are added to one by one.
 * Creates the folder; writes nothing until the first `add` (or `finish`).
 */
export async function startArchive(reader: BlobReader, options: StartArchiveWriterOptions): Promise<LocalArchiveSession> {
  throwIfAborted(options.signal);
  if (!Number.isSafeInteger(options.chunkSizeBytes) || options.chunkSizeBytes <= 0) {
    throw new MeshmirrorError('MM_USAGE', `archive chunk size must be a positive number of bytes, got ${options.chunkSizeBytes}`);
  }
  if (options.dir === '') throw new MeshmirrorError('MM_USAGE', 'archive folder is empty');
  await mkdir(options.dir, { recursive: true }).catch((cause: unknown) => {
    throw writeFailure(options.dir, cause);
  });
  return new StreamingArchiveSession(reader, options);
}

/** The layout files of the last chunk: `oci-layout`, `index.json` and `meshmirror/run.json`. */
export function archiveLayoutEntries(layout: {
  images: ArchiveImage[];
  metadata: RunDescription;
  archiveId: string;
  chunkCount: number;
  writtenAt: Date;
}): ArchiveExtraEntry[] {
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: layout.images.map((image) => ({
      ...image.descriptor,
      annotations: { ...image.descriptor.annotations, [REF_NAME_ANNOTATION]: image.name },
    })),
  };
  const metadata: RunMetadata = {
    schemaVersion: runMetadataVersionOf(layout.metadata),
    ...layout.metadata,
    archive: { archiveId: layout.archiveId, chunkCount: layout.chunkCount, writtenAt: layout.writtenAt.toISOString() },
  };
  return [
    { name: OCI_LAYOUT_ENTRY, data: encodeJson({ imageLayoutVersion: '1.0.0' }) },
    { name: INDEX_JSON_ENTRY, data: Buffer.from(JSON.stringify(index, null, 2), 'utf8') },
    { name: RUN_METADATA_ENTRY, data: Buffer.from(JSON.stringify(metadata, null, 2), 'utf8') },
  ];
}

/**
 * Refuses what `finish` cannot write; shared with `writeArchive`, which checks before starting.
 * Returns the run description as run.json will hold it (a copy, unknown fields dropped), checked
 * with the schema every reader uses, so that no archive is written that its readers refuse.
 */
export function checkArchiveFinal(final: { images: ArchiveImage[]; metadata: RunDescription }): RunDescription {
  for (const image of final.images) {
    if (image.name === '') throw new MeshmirrorError('MM_USAGE', `an archive image has an empty name (${image.descriptor.digest})`);
  }
  const metadata = runDescriptionSchema.safeParse(final.metadata);
  if (!metadata.success) {
    throw new MeshmirrorError('MM_USAGE', `the run metadata does not fit ${RUN_METADATA_ENTRY} ${describeRunMetadataIssue(metadata.error)}`);
  }
  return metadata.data;
}

export function checkArchiveBlob(blob: { digest: string; size: number }): void {
  if (!isDigest(blob.digest)) throw new MeshmirrorError('MM_USAGE', `archive blob "${blob.digest}" is not a sha256 digest`);
  if (!Number.isSafeInteger(blob.size) || blob.size < 0) {
    throw new MeshmirrorError('MM_USAGE', `archive blob ${blob.digest} has an invalid size ${blob.size}`);
  }
}

interface OpenChunk {
  fill: ChunkFill;
  file: string;
  partialPath: string;
  handle: FileHandle;
  /** Blob bytes covered by the last write-back started (see `#writeBack`). */
  writeBackAt: number;
  /** The write-back in flight, if any; it never rejects (the closing fsync reports failures). */
  writeBack: Promise<void> | undefined;
}

interface ClosedChunk {
  file: string;
  partialPath: string;
  bytes: number;
  blobs: number;
}

/** An operation waiting in the session's queue. */
interface QueuedOperation {
  /** What the operation runs with: `#stop`, or `#stop` combined with the caller's signal. */
  signal: AbortSignal;
  callerSignal: AbortSignal | undefined;
  /** Started or skipped: it is neither started nor skipped again. */
  settled: boolean;
  /** Runs the operation and settles its promise; never rejects. */
  run(): Promise<void>;
  /** Rejects the operation's promise with the abort of `aborted` (the caller's signal or `#stop`). */
  skip(aborted: AbortSignal): void;
}

const DONE_OPERATION: QueuedOperation = { signal: AbortSignal.abort(), callerSignal: undefined, settled: true, run: async () => {}, skip: () => {} };

/** Bytes a queued add will put into the chunk files; `left` shrinks as they are written. */
interface Reservation {
  left: number;
}

class StreamingArchiveSession implements LocalArchiveSession {
  readonly archiveId = randomUUID();
  readonly startedAt: Date;
  readonly #reader: BlobReader;
  readonly #dir: string;
  readonly #limit: number;
  /** `--strict-archive`: exceeding the limit is an error, not a warning. */
  readonly #strict: boolean;
  readonly #logger: Logger;
  /** Whole seconds: tar headers keep mtime in seconds, and one time for all entries keeps them alike. */
  readonly #mtime: Date;
  readonly #progress: SessionProgress;
  readonly #onBlobWritten: ((blob: WrittenBlob) => void) | undefined;
  /** Fired by `abort()` (and the start signal); every queued and running operation listens to it. */
  readonly #stop = new AbortController();
  readonly #detachStartSignal: () => void;
  /**
   * Operations run one at a time in call order. A run of tens of thousands of blobs can queue
   * thousands of adds while the disk catches up with the network, so a queued operation is one
   * small record: no promise chained per operation, no signal or listener of its own.
   */
  readonly #queue: QueuedOperation[] = [];
  #queueHead = 0;
  /** Settles when the queue has drained; set while operations are queued or running. */
  #draining: { done: Promise<void>; resolve: () => void } | undefined;
  /** `#stop` combined with a caller's signal, made once per caller signal instead of once per operation. */
  readonly #combined = new WeakMap<AbortSignal, AbortSignal>();
  /** Caller signals with operations waiting, and how many: one abort listener each. */
  readonly #watched = new Map<AbortSignal, { waiting: number; onAbort: () => void }>();
  #finishing = false;
  #aborted = false;
  #failure: unknown;
  #result: ArchiveResult | undefined;
  #current: OpenChunk | undefined;
  readonly #closed: ClosedChunk[] = [];
  readonly #added = new Map<Digest, number>();
  readonly #warnings: string[] = [];
  #blobDataBytes = 0;

  constructor(reader: BlobReader, options: StartArchiveWriterOptions) {
    this.#reader = reader;
    this.#dir = options.dir;
    this.#limit = options.chunkSizeBytes;
    this.#strict = options.strict === true;
    this.#logger = options.logger ?? silentLogger();
    this.startedAt = new Date();
    this.#mtime = new Date(Math.floor(this.startedAt.getTime() / 1000) * 1000);
    this.#progress = new SessionProgress(options.onProgress);
    this.#onBlobWritten = options.onBlobWritten;
    const startSignal = options.signal;
    const onStartAbort = (): void => {
      this.abort().catch((error: unknown) => this.#logger.error({ dir: this.#dir, error: describeError(error) }, 'archive abort failed'));
    };
    startSignal?.addEventListener('abort', onStartAbort, { once: true });
    this.#detachStartSignal = () => startSignal?.removeEventListener('abort', onStartAbort);
  }

  get bytesWritten(): number {
    return this.#blobDataBytes;
  }

  add(blob: BlobRef & { verified?: boolean }, options: AbortOptions = {}): Promise<void> {
    try {
      throwIfAborted(options.signal);
      this.#assertAccepting('add a blob to');
      checkArchiveBlob(blob);
    } catch (error) {
      return Promise.reject(error);
    }
    const reservation = this.#progress.reserve(tarEntryBytes(blob.size));
    return this.#enqueue(
      options.signal,
      (signal) => this.#addNow({ digest: blob.digest, size: blob.size, verified: blob.verified === true }, reservation, signal),
      () => this.#progress.release(reservation),
    );
  }

  finish(final: { images: ArchiveImage[]; metadata: RunDescription }, options: AbortOptions = {}): Promise<ArchiveResult> {
    let metadata: RunDescription;
    try {
      throwIfAborted(options.signal);
      this.#assertAccepting('finish');
      metadata = checkArchiveFinal(final);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#finishing = true;
    const images = final.images.map((image) => ({ name: image.name, descriptor: { ...image.descriptor } }));
    return this.#enqueue(options.signal, (signal) => this.#finishNow(images, metadata, signal)).catch((error: unknown) => {
      // A refusal or an abort while queued leaves the session as it was: more adds, another finish.
      if (this.#result === undefined && this.#failure === undefined) this.#finishing = false;
      throw error;
    });
  }

  async abort(): Promise<void> {
    if (!this.#aborted && this.#result === undefined) {
      this.#aborted = true;
      this.#stop.abort(new MeshmirrorError('MM_ABORTED', `the archive in ${this.#dir} was aborted`));
      this.#skipWaiting(this.#stop.signal, () => true);
    }
    await this.#draining?.done;
    if (this.#result !== undefined) return;
    this.#detachStartSignal();
    await this.#discard();
  }

  #assertAccepting(action: string): void {
    this.#assertUsable();
    if (this.#finishing) throw new MeshmirrorError('MM_USAGE', `cannot ${action} the archive in ${this.#dir}: finish was already called`);
  }

  #assertUsable(): void {
    if (this.#aborted) throw abortError(this.#stop.signal);
    if (this.#failure !== undefined) {
      const code = this.#failure instanceof MeshmirrorError ? this.#failure.code : 'MM_STORE';
      throw new MeshmirrorError(code, `the archive in ${this.#dir} failed earlier: ${describeError(this.#failure)}`, { cause: this.#failure });
    }
  }

  /**
   * Runs `task` after every operation called before it. A caller's abort while the task waits
   * rejects at once (and `onSkip` runs); once started, the task sees the abort through its signal.
   */
  #enqueue<T>(callerSignal: AbortSignal | undefined, task: (signal: AbortSignal) => Promise<T>, onSkip?: () => void): Promise<T> {
    const signal = this.#signalFor(callerSignal);
    return new Promise<T>((resolve, reject) => {
      const operation: QueuedOperation = {
        signal,
        callerSignal,
        settled: false,
        run: async () => {
          try {
            resolve(await task(signal));
          } catch (error) {
            reject(signal.aborted ? abortError(signal) : error);
          }
        },
        skip: (aborted) => {
          onSkip?.();
          reject(abortError(aborted));
        },
      };
      this.#queue.push(operation);
      if (callerSignal !== undefined) this.#watch(callerSignal);
      this.#startDraining();
    });
  }

  #signalFor(callerSignal: AbortSignal | undefined): AbortSignal {
    if (callerSignal === undefined) return this.#stop.signal;
    let signal = this.#combined.get(callerSignal);
    if (signal === undefined) {
      signal = AbortSignal.any([this.#stop.signal, callerSignal]);
      this.#combined.set(callerSignal, signal);
    }
    return signal;
  }

  /** One listener per caller signal while it has operations waiting; `#stop` is handled in `abort()`. */
  #watch(callerSignal: AbortSignal): void {
    const watched = this.#watched.get(callerSignal);
    if (watched !== undefined) {
      watched.waiting += 1;
      return;
    }
    const onAbort = (): void => this.#skipWaiting(callerSignal, (operation) => operation.callerSignal === callerSignal);
    this.#watched.set(callerSignal, { waiting: 1, onAbort });
    callerSignal.addEventListener('abort', onAbort, { once: true });
  }

  #unwatch(callerSignal: AbortSignal | undefined): void {
    if (callerSignal === undefined) return;
    const watched = this.#watched.get(callerSignal);
    if (watched === undefined) return;
    watched.waiting -= 1;
    if (watched.waiting > 0) return;
    this.#watched.delete(callerSignal);
    callerSignal.removeEventListener('abort', watched.onAbort);
  }

  /** Rejects the waiting operations that `which` picks, in call order, with the abort of `aborted`. */
  #skipWaiting(aborted: AbortSignal, which: (operation: QueuedOperation) => boolean): void {
    for (let i = this.#queueHead; i < this.#queue.length; i += 1) {
      const operation = this.#queue[i]!;
      if (operation.settled || !which(operation)) continue;
      operation.settled = true;
      this.#unwatch(operation.callerSignal);
      operation.skip(aborted);
    }
  }

  #startDraining(): void {
    if (this.#draining !== undefined) return;
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.#draining = { done, resolve };
    // Started on a later microtask, as a task chained on a settled promise would be.
    queueMicrotask(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    while (this.#queueHead < this.#queue.length) {
      const operation = this.#queue[this.#queueHead]!;
      this.#queue[this.#queueHead] = DONE_OPERATION;
      this.#queueHead += 1;
      if (this.#queueHead >= 1024 && this.#queueHead * 2 >= this.#queue.length) {
        this.#queue.splice(0, this.#queueHead);
        this.#queueHead = 0;
      }
      if (operation.settled) continue;
      operation.settled = true;
      this.#unwatch(operation.callerSignal);
      await operation.run();
    }
    this.#queue.length = 0;
    this.#queueHead = 0;
    const draining = this.#draining;
    this.#draining = undefined;
    draining?.resolve();
  }

  async #addNow(blob: BlobRef & { verified: boolean }, reservation: Reservation, signal: AbortSignal): Promise<void> {
    try {
      throwIfAborted(signal);
      this.#assertUsable();
      const known = this.#added.get(blob.digest);
      if (known !== undefined) {
        if (known !== blob.size) {
          throw new MeshmirrorError('MM_USAGE', `archive blob ${blob.digest} was added with ${known} bytes, now with ${blob.size}`);
        }
        return;
      }
      let chunk = this.#current;
      if (chunk !== undefined && chunk.fill.blobs.length > 0 && chunkFillWithBlob(chunk.fill, blob).totalBytes > this.#limit) {
        await this.#closeCurrent([]);
        chunk = undefined;
      }
      chunk ??= await this.#openChunk();
      const next = chunkFillWithBlob(chunk.fill, blob);
      const started = performance.now();
      await this.#writeBlobEntry(chunk, blob, next.entry.offset - TAR_BLOCK, reservation, signal);
      this.#logger.debug({ digest: blob.digest, bytes: blob.size, ms: Math.round(performance.now() - started), file: chunk.file }, 'blob archived');
      addBlobToFill(chunk.fill, next);
      this.#added.set(blob.digest, blob.size);
      this.#blobDataBytes += blob.size;
      this.#onBlobWritten?.({ digest: blob.digest, size: blob.size, chunk: chunk.file, path: chunk.partialPath, offset: next.entry.offset });
      this.#writeBack(chunk);
      if (next.totalBytes > this.#limit) {
        // Alone in its chunk and still too large: the chunk holds only this blob.
        const warning =
          `blob ${blob.digest} (${blob.size} bytes) is larger than the chunk size limit of ${this.#limit} bytes; ` +
          `${chunk.file} holds it alone and is ${next.totalBytes} bytes`;
        this.#refuseIfStrict(warning);
        this.#warnings.push(warning);
        this.#logger.warn({ dir: this.#dir }, warning);
        await this.#closeCurrent([]);
      }
    } finally {
      this.#progress.release(reservation);
    }
  }

  /**
   * Writes the blob's entry at `start`, checking size and sha256 while copying. On any failure the
   * chunk file is truncated back to `start`, so the chunk is as if the blob had never been added.
   */
  async #writeBlobEntry(chunk: OpenChunk, blob: BlobRef & { verified: boolean }, start: number, reservation: Reservation, signal: AbortSignal): Promise<void> {
    let entryBytes = 0;
    const put = async (data: Buffer, position: number): Promise<void> => {
      await writeAt(chunk.handle, data, position, chunk.partialPath);
      entryBytes += data.length;
      this.#progress.wrote(data.length, reservation);
    };
    let source: Readable | undefined;
    const stopSource = (): void => {
      source?.destroy(abortError(signal));
    };
    signal.addEventListener('abort', stopSource, { once: true });
    try {
      await put(encodeTarHeader({ name: `${BLOB_ENTRY_PREFIX}${digestHex(blob.digest)}`, size: blob.size, mtime: this.#mtime }), start);
      const file = await this.#reader.blobFile?.(blob.digest, { signal });
      let blocks: AsyncIterable<Buffer>;
      if (file !== undefined) {
        blocks = readAhead(file, signal);
      } else {
        source = await this.#reader.openBlob(blob.digest, { signal });
        blocks = source as AsyncIterable<Buffer>;
      }
      throwIfAborted(signal);
      // A blob whose sha256 the store verified moments ago in this process is not hashed again.
      const hash = blob.verified === true ? undefined : createDigester();
      let seen = 0;
      for await (const data of blocks) {
        throwIfAborted(signal);
        if (seen + data.length > blob.size) {
          seen += data.length;
          break;
        }
        hash?.update(data);
        await put(data, start + TAR_BLOCK + seen);
        seen += data.length;
      }
      if (seen !== blob.size) {
        throw new MeshmirrorError(
          'MM_SIZE_MISMATCH',
          `blob ${blob.digest} gave ${seen > blob.size ? `more than ${blob.size}` : seen} bytes while writing ${chunk.file}, expected ${blob.size}`,
          { data: { digest: blob.digest, expected: blob.size } },
        );
      }
      const actual: Digest = hash === undefined ? blob.digest : `sha256:${hash.digest('hex')}`;
      if (actual !== blob.digest) throw new DigestMismatchError(blob.digest, actual, `blob ${blob.digest} while writing ${chunk.file}`);
      const padding = tarPaddingBytes(blob.size);
      if (padding > 0) await put(Buffer.alloc(padding), start + TAR_BLOCK + blob.size);
    } catch (error) {
      source?.destroy();
      await this.#rollBack(chunk, start, entryBytes, error);
      throw error;
    } finally {
      signal.removeEventListener('abort', stopSource);
      source?.destroy();
    }
  }

  async #rollBack(chunk: OpenChunk, start: number, entryBytes: number, cause: unknown): Promise<void> {
    try {
      await chunk.handle.truncate(start);
    } catch (truncateError) {
      // The chunk now holds part of an entry its manifest will not list: nothing more can go in it.
      this.#failure ??= writeFailure(chunk.partialPath, truncateError);
      return;
    }
    this.#progress.unwrote(entryBytes);
    this.#logger.debug({ file: chunk.file, offset: start, error: describeError(cause) }, 'rolled back a blob entry');
  }

  async #openChunk(): Promise<OpenChunk> {
    const number = this.#closed.length + 1;
    const file = chunkFileName(number);
    const partialPath = join(this.#dir, `${file}${PARTIAL_SUFFIX}`);
    // 'w' truncates a `.partial` a killed run left under the same name.
    const handle = await open(partialPath, 'w').catch((cause: unknown) => {
      throw writeFailure(partialPath, cause);
    });
    if (this.#aborted) {
      // Aborted while the file was being created: the clean-up may have run already, so this one
      // removes its own file rather than leave a `.partial` behind.
      await handle.close().catch(() => undefined);
      await rm(partialPath, { force: true });
      throw abortError(this.#stop.signal);
    }
    const chunk: OpenChunk = { fill: emptyChunkFill(number, this.archiveId), file, partialPath, handle, writeBackAt: 0, writeBack: undefined };
    this.#current = chunk;
    return chunk;
  }

  /**
   * Starts an fdatasync in the background every `WRITE_BACK_BYTES` of blob data, so the disk writes
   * the chunk while blobs are still arriving instead of all at once in the closing fsync (measured:
   * that fsync took 0.2 s of a 1.9 s run for a 496 MiB chunk). Nothing waits for it until the close.
   */
  #writeBack(chunk: OpenChunk): void {
    if (chunk.writeBack !== undefined || chunk.fill.blobBytes - chunk.writeBackAt < WRITE_BACK_BYTES) return;
    chunk.writeBackAt = chunk.fill.blobBytes;
    chunk.writeBack = chunk.handle.datasync().then(
      () => {
        chunk.writeBack = undefined;
      },
      () => {
        chunk.writeBack = undefined;
      },
    );
  }

  /** Writes `extras`, the chunk's manifest and the end blocks, fsyncs and closes the chunk file. */
  async #closeCurrent(extras: ArchiveExtraEntry[]): Promise<void> {
    const chunk = this.#current;
    if (chunk === undefined) return;
    try {
      let position = chunk.fill.blobBytes;
      const put = async (data: Buffer): Promise<void> => {
        await writeAt(chunk.handle, data, position, chunk.partialPath);
        position += data.length;
        this.#progress.wrote(data.length);
      };
      const putEntry = async (name: string, data: Buffer): Promise<void> => {
        await put(encodeTarHeader({ name, size: data.length, mtime: this.#mtime }));
        await put(data);
        const padding = tarPaddingBytes(data.length);
        if (padding > 0) await put(Buffer.alloc(padding));
      };
      for (const extra of extras) await putEntry(extra.name, extra.data);
      const manifest = encodeChunkManifest(chunk.fill, this.archiveId);
      const expected = chunkFileBytes(chunk.fill.blobBytes, chunk.fill.manifestBytes, extras);
      if (manifest.length !== chunk.fill.manifestBytes) {
        throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${chunk.file}: chunk manifest is ${manifest.length} bytes, counted ${chunk.fill.manifestBytes}`);
      }
      await putEntry(chunkManifestEntryName(chunk.fill.chunk), manifest);
      await put(Buffer.alloc(END_OF_ARCHIVE_BYTES));
      if (position !== expected) throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${chunk.file}: wrote ${position} bytes, counted ${expected}`);
      await chunk.writeBack;
      await chunk.handle.sync();
      await chunk.handle.close();
      this.#current = undefined;
      this.#closed.push({ file: chunk.file, partialPath: chunk.partialPath, bytes: position, blobs: chunk.fill.blobs.length });
      this.#progress.report(true);
      this.#logger.info({ file: chunk.file, bytes: position, blobs: chunk.fill.blobs.length, chunk: chunk.fill.chunk }, 'archive chunk written');
    } catch (error) {
      this.#failure ??= error;
      throw error;
    }
  }

  async #finishNow(images: ArchiveImage[], metadata: RunDescription, signal: AbortSignal): Promise<ArchiveResult> {
    throwIfAborted(signal);
    this.#assertUsable();
    for (const image of images) {
      const added = this.#added.get(image.descriptor.digest);
      if (added !== image.descriptor.size) {
        throw new MeshmirrorError(
          'MM_USAGE',
          `image ${image.name}: its manifest ${image.descriptor.digest} (${image.descriptor.size} bytes) was not added to the archive`,
          { data: { image: image.name, digest: image.descriptor.digest } },
        );
      }
    }
    const extrasFor = (chunkCount: number): ArchiveExtraEntry[] =>
      archiveLayoutEntries({ images, metadata, archiveId: this.archiveId, chunkCount, writtenAt: this.startedAt });
    try {
      // The layout files go into the last chunk; they start a chunk of their own when they do not fit.
      let chunk = this.#current;
      if (chunk !== undefined && chunk.fill.blobs.length > 0) {
        const extras = extrasFor(this.#closed.length + 1);
        if (chunkFileBytes(chunk.fill.blobBytes, chunk.fill.manifestBytes, extras) > this.#limit) {
          await this.#closeCurrent([]);
          chunk = undefined;
        }
      }
      chunk ??= await this.#openChunk();
      const chunkCount = this.#closed.length + 1;
      const extras = extrasFor(chunkCount);
      const lastBytes = chunkFileBytes(chunk.fill.blobBytes, chunk.fill.manifestBytes, extras);
      if (lastBytes > this.#limit) {
        const warning =
          `index.json and the run metadata take ${lastBytes - chunk.fill.blobBytes} bytes, more than the chunk size limit of ` +
          `${this.#limit} bytes; ${chunk.file} is larger than the limit`;
        this.#refuseIfStrict(warning);
        this.#warnings.push(warning);
        this.#logger.warn({ dir: this.#dir }, warning);
      }
      throwIfAborted(signal);
      await this.#closeCurrent(extras);
      throwIfAborted(signal);

      // Past this point the new set replaces the old one; an abort no longer stops it halfway.
      for (const closed of this.#closed) await rename(closed.partialPath, join(this.#dir, closed.file));
      await syncFolder(this.#dir);
      await removeStaleChunks(this.#dir, chunkCount, this.#logger);
      const result: ArchiveResult = {
        chunks: this.#closed.map((closed) => ({ file: join(this.#dir, closed.file), bytes: closed.bytes, blobs: closed.blobs })),
        warnings: [...this.#warnings],
      };
      this.#result = result;
      this.#detachStartSignal();
      this.#progress.report(true);
      this.#logger.info({ dir: this.#dir, chunks: chunkCount, archiveId: this.archiveId }, 'archive complete');
      return result;
    } catch (error) {
      this.#failure ??= error;
      this.#detachStartSignal();
      await this.#discard();
      throw error;
    }
  }

  /** With `strict`, a chunk over the limit fails the archive instead of being a warning. */
  #refuseIfStrict(problem: string): void {
    if (this.#strict) throw new MeshmirrorError('MM_CONFIG_INVALID', `archiveSize: ${problem} (--strict-archive allows no chunk above archiveSize)`);
  }

  /** Closes the open chunk and deletes every `.partial` file of this session. */
  async #discard(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await current?.writeBack;
    await current?.handle.close().catch(() => undefined);
    const paths = [...this.#closed.map((closed) => closed.partialPath), ...(current === undefined ? [] : [current.partialPath])];
    this.#closed.length = 0;
    for (const path of paths) await rm(path, { force: true });
    if (paths.length > 0) this.#logger.info({ dir: this.#dir, files: paths.length }, 'archive abandoned; its partial chunks were deleted');
  }
}

/** Progress over the chunk files; `totalBytes` counts the blobs queued but not yet written. */
class SessionProgress {
  readonly #onProgress: ((progress: ArchiveProgress) => void) | undefined;
  #written = 0;
  #pending = 0;
  #reported = -1;

  constructor(onProgress: ((progress: ArchiveProgress) => void) | undefined) {
    this.#onProgress = onProgress;
  }

  reserve(bytes: number): Reservation {
    this.#pending += bytes;
    return { left: bytes };
  }

  release(reservation: Reservation): void {
    this.#pending -= reservation.left;
    reservation.left = 0;
  }

  wrote(bytes: number, reservation?: Reservation): void {
    this.#written += bytes;
    if (reservation !== undefined) {
      const taken = Math.min(bytes, reservation.left);
      reservation.left -= taken;
      this.#pending -= taken;
    }
    if (this.#written - this.#reported >= PROGRESS_STEP_BYTES) this.report(false);
  }

  unwrote(bytes: number): void {
    this.#written -= bytes;
  }

  report(force: boolean): void {
    if (this.#onProgress === undefined || (!force && this.#written === this.#reported)) return;
    this.#reported = this.#written;
    this.#onProgress({ bytesWritten: this.#written, totalBytes: this.#written + this.#pending });
  }
}

async function writeAt(handle: FileHandle, data: Buffer, position: number, path: string): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset, position + offset).catch((cause: unknown) => {
      throw writeFailure(path, cause);
    });
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
    const isPartial = name.endsWith(PARTIAL_SUFFIX) && CHUNK_FILE_RE.test(name.slice(0, -PARTIAL_SUFFIX.length));
    const match = CHUNK_FILE_RE.exec(name);
    const stale = isPartial || (match?.[1] !== undefined && Number(match[1]) > chunkCount);
    if (!stale) continue;
    await rm(join(dir, name), { force: true });
    removed = true;
    logger.info({ file: name }, 'removed a chunk left from an earlier archive');
  }
  if (removed) await syncFolder(dir);
}
