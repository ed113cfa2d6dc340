import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  createDigester,
  digestHex,
  digestOf,
  DigestMismatchError,
  isDigest,
  MeshmirrorError,
  sha256Digest,
  throwIfAborted,
  type AbortOptions,
  type BlobHolding,
  type BlobReader,
  type ByteRange,
  type Digest,
  type Logger,
} from '@meshmirror/shared';
import { FilePieceWriter, type PieceWriter } from './piece-writer.ts';
import { isFinished, StoreIndex, type PieceRecord } from './store-index.ts';

export type { PieceWriter } from './piece-writer.ts';

export const DEFAULT_COMMIT_EVERY_BYTES = 4 * 1024 * 1024;

export interface BlobStoreOptions {
  /** The store's folder: `blobs/sha256/<hex>` (verified blobs), `partial/`, `tmp/` and `index/` (LevelDB). */
  dir: string;
  /** Named by the caller (e.g. `component: 'mesh:store'`). */
  logger: Logger;
  /** A piece writer fdatasyncs and journals its offset after this many new bytes. Default 4 MiB. */
  commitEveryBytes?: number;
}

/** The part of a piece task the store needs. */
export interface PieceSpec {
  digest: Digest;
  blobSize: number;
  offset: number;
  length: number;
}

/**
 * Content-addressed blob files plus a LevelDB index of what is held and of partial pieces with their
 * committed offsets. A blob is marked held only after its bytes were verified, fsync'ed and renamed
 * into place, so a crash at any moment never leaves a held mark on wrong bytes.
 */
export interface BlobStore extends BlobReader {
  readonly dir: string;
  /** Creates the folders, opens the index and repairs what a crash may have left behind. */
  open(options?: AbortOptions): Promise<void>;
  close(): Promise<void>;
  /** True when the whole blob is held and verified. */
  has(digest: Digest, options?: AbortOptions): Promise<boolean>;
  /** For each blob: held, or the partial pieces with their committed byte counts. */
  holdings(blobs: Array<{ digest: Digest; size: number }>, options?: AbortOptions): Promise<BlobHolding[]>;
  /** Stores a small blob held in memory (a manifest, a config); verified, then written atomically. */
  putBlob(digest: Digest, data: Uint8Array, options?: AbortOptions): Promise<void>;
  /** Opens (or resumes) a piece for writing. One writer per piece at a time. */
  openPiece(piece: PieceSpec, options?: AbortOptions): Promise<PieceWriter>;
  /**
   * Turns finished pieces covering `[0, size)` into the held blob, verifying the digest. On a
   * mismatch the partial data is deleted and `DigestMismatchError` is thrown. Idempotent.
   */
  completeBlob(digest: Digest, size: number, options?: AbortOptions): Promise<void>;
  /** True when the blob is held, or finished pieces cover all of it (so `completeBlob` can assemble it). */
  isComplete(digest: Digest, size: number, options?: AbortOptions): Promise<boolean>;
  /** The sha256 of a byte range of a held blob (the whole blob's is its digest, returned at once). */
  hashHeldRange(digest: Digest, offset: number, length: number, options?: AbortOptions): Promise<Digest>;
}

function storeError(message: string, cause?: unknown): MeshmirrorError {
  return new MeshmirrorError('MM_STORE', message, cause === undefined ? {} : { cause });
}

function notFound(digest: Digest): MeshmirrorError {
  return new MeshmirrorError('MM_NOT_FOUND', `blob ${digest} is not in the store`, { data: { digest } });
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw storeError(`cannot stat ${path}`, err);
  }
}

/** Feeds `[start, start + length)` of a file into `hash` with bounded memory. */
async function hashFileRangeInto(
  hash: ReturnType<typeof createDigester>,
  path: string,
  start: number,
  length: number,
  signal?: AbortSignal,
): Promise<ReturnType<typeof createDigester>> {
  if (length === 0) return hash;
  const stream = createReadStream(path, { start, end: start + length - 1, ...(signal ? { signal } : {}) });
  let seen = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    seen += chunk.length;
  }
  if (seen !== length) throw storeError(`${path} ended after ${seen} of ${length} bytes`);
  return hash;
}

/**
 * Finished pieces that tile `[0, size)` in offset order (pieces of another shape, left by an older
 * plan, are ignored), or the first byte no finished piece starts at.
 */
function tileOf(size: number, pieces: PieceRecord[]): { cover: PieceRecord[]; missingAt: number | undefined } {
  const finished = pieces.filter((p) => p.blobSize === size && isFinished(p));
  const cover: PieceRecord[] = [];
  let cursor = 0;
  while (cursor < size) {
    const next = finished.find((p) => p.offset === cursor && p.length > 0);
    if (next === undefined) return { cover, missingAt: cursor };
    cover.push(next);
    cursor += next.length;
  }
  return { cover, missingAt: undefined };
}

export function createBlobStore(options: BlobStoreOptions): BlobStore {
  return new FileBlobStore(options);
}

class FileBlobStore implements BlobStore {
  readonly dir: string;
  readonly #logger: Logger;
  readonly #commitEveryBytes: number;
  readonly #blobsDir: string;
  readonly #partialDir: string;
  readonly #tmpDir: string;
  readonly #index: StoreIndex;
  readonly #openPieces = new Set<string>();
  readonly #completing = new Map<Digest, Promise<void>>();
  #opened = false;

  constructor(options: BlobStoreOptions) {
    this.dir = options.dir;
    this.#logger = options.logger;
    const every = options.commitEveryBytes ?? DEFAULT_COMMIT_EVERY_BYTES;
    if (!Number.isSafeInteger(every) || every <= 0) throw new RangeError(`commitEveryBytes must be > 0, got ${every}`);
    this.#commitEveryBytes = every;
    this.#blobsDir = join(this.dir, 'blobs', 'sha256');
    this.#partialDir = join(this.dir, 'partial');
    this.#tmpDir = join(this.dir, 'tmp');
    this.#index = new StoreIndex(join(this.dir, 'index'));
  }

  async open(options: AbortOptions = {}): Promise<void> {
    if (this.#opened) return;
    try {
      await mkdir(this.#blobsDir, { recursive: true });
      await mkdir(this.#partialDir, { recursive: true });
      // Leftovers of an interrupted putBlob or multi-piece assembly: never referenced by the index.
      await rm(this.#tmpDir, { recursive: true, force: true });
      await mkdir(this.#tmpDir, { recursive: true });
    } catch (err) {
      throw storeError(`cannot prepare the store folder ${this.dir}`, err);
    }
    await this.#index.open();
    this.#opened = true;
    try {
      await this.#repair(options.signal);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    if (!this.#opened) return;
    this.#opened = false;
    await this.#index.close();
  }

  async has(digest: Digest, options: AbortOptions = {}): Promise<boolean> {
    return (await this.blobSize(digest, options)) !== undefined;
  }

  async blobSize(digest: Digest, options: AbortOptions = {}): Promise<number | undefined> {
    throwIfAborted(options.signal);
    this.#checkOpen();
    if (!isDigest(digest)) return undefined;
    const record = await this.#index.getHeld(digest);
    if (record === undefined) return undefined;
    const actual = await fileSize(this.#blobPath(digest));
    if (actual !== record.size) {
      // Someone removed or changed the file behind our back: it is not held any more.
      this.#logger.warn({ digest, expected: record.size, actual }, 'held blob file missing or resized; forgetting it');
      await this.#index.deleteHeld(digest);
      return undefined;
    }
    return record.size;
  }

  async openBlob(digest: Digest, range: ByteRange & AbortOptions = {}): Promise<Readable> {
    const size = await this.blobSize(digest, range);
    if (size === undefined) throw notFound(digest);
    const start = range.start ?? 0;
    const end = range.end ?? size - 1;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end >= size || start > end + 1) {
      throw new MeshmirrorError('MM_USAGE', `range ${start}-${end} is outside blob ${digest} of ${size} bytes`, {
        data: { digest, start, end, size },
      });
    }
    if (start > end) return Readable.from([]);
    return createReadStream(this.#blobPath(digest), { start, end, ...(range.signal ? { signal: range.signal } : {}) });
  }

  async holdings(blobs: Array<{ digest: Digest; size: number }>, options: AbortOptions = {}): Promise<BlobHolding[]> {
    const result: BlobHolding[] = [];
    for (const blob of blobs) {
      throwIfAborted(options.signal);
      if (await this.has(blob.digest)) {
        result.push({ digest: blob.digest, held: true, pieces: [] });
        continue;
      }
      const pieces = (await this.#index.piecesOf(blob.digest))
        .filter((p) => p.blobSize === blob.size && p.committed > 0)
        .map((p) => ({ offset: p.offset, length: p.length, committed: p.committed }));
      result.push({ digest: blob.digest, held: false, pieces });
    }
    return result;
  }

  async putBlob(digest: Digest, data: Uint8Array, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    this.#checkOpen();
    const actual = sha256Digest(data);
    if (actual !== digest) throw new DigestMismatchError(digest, actual, `blob ${digest}`);
    if (await this.has(digest)) return;
    const tmp = this.#tmpPath(digest);
    let handle: FileHandle | undefined;
    try {
      handle = await open(tmp, 'w');
      await handle.writeFile(data);
      await handle.datasync();
      await handle.close();
      handle = undefined;
      await this.#publish(tmp, digest);
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await rm(tmp, { force: true }).catch(() => undefined);
      throw err instanceof MeshmirrorError ? err : storeError(`cannot write blob ${digest}`, err);
    }
    await this.#index.putHeld(digest, { size: data.length });
  }

  async openPiece(piece: PieceSpec, options: AbortOptions = {}): Promise<PieceWriter> {
    throwIfAborted(options.signal);
    this.#checkOpen();
    const { digest, blobSize, offset, length } = piece;
    if (!isDigest(digest)) throw new MeshmirrorError('MM_USAGE', `not a sha256 digest: ${String(digest)}`);
    if (
      ![blobSize, offset, length].every((n) => Number.isSafeInteger(n) && n >= 0) ||
      offset + length > blobSize ||
      (length === 0 && blobSize !== 0)
    ) {
      throw new MeshmirrorError('MM_USAGE', `invalid piece ${digest}@${offset}+${length} of a ${blobSize}-byte blob`);
    }
    const lockKey = `${digest}:${offset}`;
    if (this.#openPieces.has(lockKey)) throw storeError(`piece ${digest}@${offset} is already open for writing`);
    this.#openPieces.add(lockKey);
    try {
      return await this.#openPieceLocked(piece, lockKey, options.signal);
    } catch (err) {
      this.#openPieces.delete(lockKey);
      throw err;
    }
  }

  async #openPieceLocked(piece: PieceSpec, lockKey: string, signal?: AbortSignal): Promise<PieceWriter> {
    const { digest, blobSize, offset, length } = piece;
    const path = this.#partialPath(digest, offset);
    let record = await this.#index.getPiece(digest, offset);
    if (record !== undefined && (record.blobSize !== blobSize || record.length !== length)) {
      // The plan changed its piece size; the old bytes are still right but the journal shape is not.
      this.#logger.info({ digest, offset, old: record.length, new: length }, 'piece shape changed; starting it over');
      await this.#index.deletePiece(digest, offset);
      await rm(path, { force: true });
      record = undefined;
    }
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (err) {
      throw storeError(`cannot open ${path}`, err);
    }
    try {
      const onDisk = (await handle.stat()).size;
      if (record === undefined) {
        record = { digest, blobSize, offset, length, committed: 0 };
        await this.#index.putPiece(record);
      } else if (onDisk < record.committed) {
        // Only possible if the file was tampered with or the filesystem lost synced data.
        this.#logger.warn({ digest, offset, committed: record.committed, onDisk }, 'partial file shorter than journal');
        const { sha256: _dropped, ...rest } = record;
        record = { ...rest, committed: onDisk };
        await this.#index.putPiece(record);
      }
      // The committed offset is the truth: whatever a crash left after it is discarded.
      if (onDisk !== record.committed) await handle.truncate(record.committed);
      const hash = createDigester();
      if (!isFinished(record)) await hashFileRangeInto(hash, path, 0, record.committed, signal);
      if (record.committed > 0) {
        this.#logger.debug({ digest, offset, committed: record.committed }, 'resuming piece');
      }
      return new FilePieceWriter({
        handle,
        path,
        record,
        index: this.#index,
        hash,
        commitEveryBytes: this.#commitEveryBytes,
        onClose: () => this.#openPieces.delete(lockKey),
      });
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err instanceof MeshmirrorError ? err : storeError(`cannot resume ${path}`, err);
    }
  }

  completeBlob(digest: Digest, size: number, options: AbortOptions = {}): Promise<void> {
    const running = this.#completing.get(digest);
    if (running !== undefined) return running;
    const job = this.#complete(digest, size, options.signal).finally(() => this.#completing.delete(digest));
    this.#completing.set(digest, job);
    return job;
  }

  async #complete(digest: Digest, size: number, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    this.#checkOpen();
    const pieces = await this.#index.piecesOf(digest);
    if (await this.has(digest)) {
      await this.#discardPieces(pieces);
      return;
    }
    const cover = this.#coverOf(digest, size, pieces);
    if (cover.some((p) => this.#openPieces.has(`${digest}:${p.offset}`))) {
      throw storeError(`blob ${digest} still has a piece open for writing`);
    }
    const only = cover.length === 1 ? cover[0] : undefined;
    if (only !== undefined) {
      await this.#completeFromOnePiece(digest, size, only, pieces);
    } else {
      await this.#completeFromPieces(digest, size, cover, pieces, signal);
    }
    this.#logger.debug({ digest, size, pieces: cover.length }, 'blob verified and held');
  }

  async isComplete(digest: Digest, size: number, options: AbortOptions = {}): Promise<boolean> {
    if (await this.has(digest, options)) return true;
    return tileOf(size, await this.#index.piecesOf(digest)).missingAt === undefined;
  }

  #coverOf(digest: Digest, size: number, pieces: PieceRecord[]): PieceRecord[] {
    const { cover, missingAt } = tileOf(size, pieces);
    if (missingAt !== undefined) {
      throw storeError(`blob ${digest} is incomplete: no finished piece starts at byte ${missingAt} of ${size}`);
    }
    return cover;
  }

  async #completeFromOnePiece(digest: Digest, size: number, piece: PieceRecord, all: PieceRecord[]): Promise<void> {
    const path = this.#partialPath(digest, piece.offset);
    const onDisk = await fileSize(path);
    if (piece.sha256 !== digest || onDisk !== size) {
      await this.#discardPieces(all);
      throw new DigestMismatchError(digest, piece.sha256 ?? 'none', `blob ${digest}`);
    }
    // The piece was fdatasync'ed when it finished; sync again so the rename never publishes a hole.
    await this.#syncFile(path);
    await this.#publish(path, digest);
    await this.#index.markHeld(digest, { size }, all);
    await this.#discardPieceFiles(all.filter((p) => p !== piece));
  }

  async #completeFromPieces(
    digest: Digest,
    size: number,
    cover: PieceRecord[],
    all: PieceRecord[],
    signal?: AbortSignal,
  ): Promise<void> {
    const tmp = this.#tmpPath(digest);
    const hash = createDigester();
    let handle: FileHandle | undefined;
    try {
      handle = await open(tmp, 'w');
      let position = 0;
      for (const piece of cover) {
        const stream = createReadStream(this.#partialPath(digest, piece.offset), {
          start: 0,
          end: Math.max(0, piece.length - 1),
          ...(signal ? { signal } : {}),
        });
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          hash.update(chunk);
          let done = 0;
          while (done < chunk.length) {
            const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
            done += bytesWritten;
          }
          position += chunk.length;
        }
      }
      if (position !== size) throw storeError(`assembled ${position} of ${size} bytes for blob ${digest}`);
      await handle.datasync();
      await handle.close();
      handle = undefined;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await rm(tmp, { force: true }).catch(() => undefined);
      if (signal?.aborted === true) throwIfAborted(signal);
      throw err instanceof MeshmirrorError ? err : storeError(`cannot assemble blob ${digest}`, err);
    }
    const actual = digestOf(hash);
    if (actual !== digest) {
      await rm(tmp, { force: true }).catch(() => undefined);
      await this.#discardPieces(all);
      throw new DigestMismatchError(digest, actual, `blob ${digest}`);
    }
    await this.#publish(tmp, digest);
    await this.#index.markHeld(digest, { size }, all);
    await this.#discardPieceFiles(all);
  }

  async hashHeldRange(digest: Digest, offset: number, length: number, options: AbortOptions = {}): Promise<Digest> {
    const size = await this.blobSize(digest, options);
    if (size === undefined) throw notFound(digest);
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new MeshmirrorError('MM_USAGE', `range ${offset}+${length} is outside blob ${digest} of ${size} bytes`);
    }
    if (offset === 0 && length === size) return digest;
    const hash = await hashFileRangeInto(createDigester(), this.#blobPath(digest), offset, length, options.signal);
    return digestOf(hash);
  }

  /** Moves a verified, synced file to its content address and makes the rename itself durable. */
  async #publish(from: string, digest: Digest): Promise<void> {
    try {
      await rename(from, this.#blobPath(digest));
      await this.#syncFile(this.#blobsDir);
    } catch (err) {
      throw storeError(`cannot move blob ${digest} into ${this.#blobsDir}`, err);
    }
  }

  async #syncFile(path: string): Promise<void> {
    const handle = await open(path, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async #discardPieces(pieces: PieceRecord[]): Promise<void> {
    await this.#index.deletePieces(pieces);
    await this.#discardPieceFiles(pieces);
  }

  async #discardPieceFiles(pieces: PieceRecord[]): Promise<void> {
    for (const p of pieces) await rm(this.#partialPath(p.digest, p.offset), { force: true });
  }

  /**
   * Brings the index and the folders back into agreement after a crash or a hand edit:
   * held marks need a file of the right size; partial files need a journal entry (and the reverse);
   * a blob file that lost its held mark (crash between rename and mark) is re-verified and adopted.
   */
  async #repair(signal?: AbortSignal): Promise<void> {
    const held = new Set<string>();
    for await (const [digest, record] of this.#index.heldRecords()) {
      throwIfAborted(signal);
      const actual = await fileSize(this.#blobPath(digest));
      if (actual !== record.size) {
        this.#logger.warn({ digest, expected: record.size, actual }, 'dropping held mark: blob file missing or wrong size');
        await this.#index.deleteHeld(digest);
      } else {
        held.add(digestHex(digest));
      }
    }

    for (const name of await readdir(this.#blobsDir)) {
      throwIfAborted(signal);
      if (held.has(name)) continue;
      const digest = `sha256:${name}`;
      const path = join(this.#blobsDir, name);
      const size = isDigest(digest) ? await fileSize(path) : undefined;
      const actual =
        size === undefined ? undefined : digestOf(await hashFileRangeInto(createDigester(), path, 0, size, signal));
      if (isDigest(digest) && size !== undefined && actual === digest) {
        this.#logger.info({ digest, size }, 'adopting verified blob file that lost its held mark');
        await this.#index.markHeld(digest, { size }, await this.#index.piecesOf(digest));
        held.add(name);
      } else {
        this.#logger.warn({ file: path, actual }, 'removing blob file whose content does not match its name');
        await rm(path, { force: true, recursive: true });
      }
    }

    const journalled = new Set<string>();
    const stale: PieceRecord[] = [];
    for await (const record of this.#index.pieceRecords()) {
      throwIfAborted(signal);
      const hex = digestHex(record.digest);
      const onDisk = await fileSize(this.#partialPath(record.digest, record.offset));
      if (held.has(hex) || onDisk === undefined) {
        stale.push(record);
        continue;
      }
      journalled.add(`${hex}.${record.offset}`);
      if (onDisk < record.committed) {
        this.#logger.warn({ digest: record.digest, offset: record.offset }, 'partial file shorter than its journal');
        const { sha256: _dropped, ...rest } = record;
        await this.#index.putPiece({ ...rest, committed: onDisk });
      }
    }
    await this.#index.deletePieces(stale);

    for (const name of await readdir(this.#partialDir)) {
      if (!journalled.has(name)) await rm(join(this.#partialDir, name), { force: true, recursive: true });
    }
  }

  #checkOpen(): void {
    if (!this.#opened) throw storeError(`the blob store at ${this.dir} is not open`);
  }

  #blobPath(digest: Digest): string {
    return join(this.#blobsDir, digestHex(digest));
  }

  #partialPath(digest: Digest, offset: number): string {
    return join(this.#partialDir, `${digestHex(digest)}.${offset}`);
  }

  #tmpPath(digest: Digest): string {
    return join(this.#tmpDir, `${digestHex(digest)}.${randomBytes(6).toString('hex')}`);
  }
}
