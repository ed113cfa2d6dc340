import { randomBytes, type Hash } from 'node:crypto';
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
  type BlobFileLocation,
  type ByteRange,
  type Digest,
  type Logger,
  type BlobRef,
} from '@meshmirror/shared';
import { GroupSync } from '../io/group-sync.ts';
import { backgroundHashPool } from '../io/hash-pool.ts';
import { FilePieceWriter, type LivePiece, type PieceWriter } from './piece-writer.ts';
import { isFinished, StoreIndex, StoreInUseError, type PieceRecord } from './store-index.ts';
import { pruneStoreFolders, type StorePruneOptions, type StorePruneReport } from './store-prune.ts';
import type { UploadJournal } from '../push/blob-uploader.ts';

export type { PieceWriter } from './piece-writer.ts';
export { isLockedByAnotherProcess, levelOpenReason, StoreInUseError } from './store-index.ts';
export type { PruneTally, StorePruneOptions, StorePruneReport } from './store-prune.ts';

export const DEFAULT_COMMIT_EVERY_BYTES = 4 * 1024 * 1024;

export interface BlobStoreOptions {
  /**
   * The store's folder: `blobs/sha256/<hex>` (verified blobs), `partial/<hex>` (one sparse file per blob
   * being fetched, shared by its pieces), `tmp/` and `index/` (LevelDB).
   */
  dir: string;
  /** Named by the caller (e.g. `component: 'mesh:store'`). */
  logger: Logger;
  /** A piece writer fdatasyncs and journals its offset after this many new bytes. Default 4 MiB. */
  commitEveryBytes?: number;
  /**
   * The clock the store notes blob use by (ms since the epoch). Default `Date.now`; a test gives an
   * earlier one to write blobs that look unused for weeks.
   */
  now?: () => number;
}

/**
 * A blob's use is noted at its first use after the store opens, then at most once per this long:
 * reads of a blob served piece by piece cost no index write each, and `prune` (which measures in
 * days) sees every blob used within the hour.
 */
const NOTE_USE_EVERY_MS = 60 * 60 * 1000;

/** The part of a piece task the store needs. */
export interface PieceSpec {
  digest: Digest;
  blobSize: number;
  offset: number;
  length: number;
}

/**
 * Content-addressed blob files plus a LevelDB index of what is held and of partial pieces with their
 * committed offsets. All pieces of a blob write at their offsets into one partial file, which becomes
 * the blob file by a rename: the bytes are written once. A blob is marked held only after its bytes
 * were verified, fsync'ed and renamed into place, so a crash at any moment never leaves a held mark
 * on wrong bytes.
 */
export interface BlobStore extends BlobReader {
  readonly dir: string;
  /** Creates the folders, opens the index and repairs what a crash may have left behind. */
  open(options?: AbortOptions): Promise<void>;
  close(): Promise<void>;
  /** The held blob's file; undefined when the blob is not held. */
  blobFile(digest: Digest, options?: AbortOptions): Promise<BlobFileLocation | undefined>;
  /** True when the whole blob is held and verified. */
  has(digest: Digest, options?: AbortOptions): Promise<boolean>;
  /** For each blob: held, or the partial pieces with their committed byte counts. */
  holdings(blobs: BlobRef[], options?: AbortOptions): Promise<BlobHolding[]>;
  /** Stores a small blob held in memory (a manifest, a config); verified, then written atomically. */
  putBlob(digest: Digest, data: Uint8Array, options?: AbortOptions): Promise<void>;
  /**
   * Stores a blob streamed from a local source (an OCI layout on this host) as one piece: resumed
   * after what an earlier import committed (`open` is given that offset), then verified and held like
   * a fetched blob. Memory does not grow with the blob.
   */
  importBlob(digest: Digest, size: number, open: (offset: number) => Promise<Readable>, options?: AbortOptions): Promise<void>;
  /**
   * Opens (or resumes) a piece for writing. One writer per piece at a time, and never two open pieces
   * of one blob that overlap; journalled pieces of an older plan that overlap this one are forgotten.
   */
  openPiece(piece: PieceSpec, options?: AbortOptions): Promise<PieceWriter>;
  /**
   * Turns finished pieces covering `[0, size)` into the held blob, verifying the digest. On a
   * mismatch the partial data is deleted and `DigestMismatchError` is thrown. Refused while a piece
   * of the blob is open for writing. Idempotent.
   */
  completeBlob(digest: Digest, size: number, options?: AbortOptions): Promise<void>;
  /**
   * True when the blob is held, or finished pieces cover all of it and none of its pieces is open for
   * writing (so `completeBlob` can assemble it).
   */
  isComplete(digest: Digest, size: number, options?: AbortOptions): Promise<boolean>;
  /**
   * Forgets a held blob whose bytes turned out wrong (failed verification when read): the record
   * goes first, then the file, so the blob is never held without its bytes.
   */
  evict(digest: Digest, options?: AbortOptions): Promise<void>;
  /**
   * A range that the store can vouch for: inside a held blob, inside one finished piece of a blob
   * still being assembled (its pieces may sit on several hosts), or inside the committed start of an
   * unfinished piece (durable bytes, with no hash of their own yet). Undefined when none holds it.
   */
  openStoredRange(digest: Digest, offset: number, length: number, options?: AbortOptions): Promise<Readable | undefined>;
  /**
   * Like `openStoredRange`, and also a range inside a piece being written right now (or about to be:
   * a writer opened within `waitMs`): its bytes are read as they reach the file, and the stream ends
   * once the range is whole. It fails (`MM_NOT_FOUND`) when the writer stops short of the range's end
   * (the fetch failed or was cancelled) and (`MM_RANGE_IGNORED`) when the piece started over.
   */
  openLiveRange(digest: Digest, offset: number, length: number, options?: AbortOptions & { waitMs?: number }): Promise<Readable | undefined>;
  /** Hashes bytes of an unfinished blob's partial file (what piece writers put there) into `into`. */
  hashPartialRange(digest: Digest, offset: number, length: number, options: AbortOptions & { into: Hash }): Promise<Hash>;
  /** The sha256 of a byte range of a held blob (the whole blob's is its digest, returned at once). */
  hashHeldRange(digest: Digest, offset: number, length: number, options?: AbortOptions): Promise<Digest>;
  /**
   * The journal of unfinished uploads of this store's blobs into target registries (mirror to
   * mirror), so an agent killed mid-upload resumes the same session.
   */
  uploadJournal(registry: string): UploadJournal;
  /**
   * Removes what was last used before `usedBefore`: held blobs (the store notes a blob's use when it
   * is written and when its size or bytes are asked for: fetched, served, pushed, archived), partial
   * files of blobs being fetched (by modification time) and upload sessions (by when they were
   * saved). Pieces without a committed byte go whatever their age. A held blob that has no time yet
   * (held before the store noted use) counts as used now and is stamped so.
   */
  prune(options: StorePruneOptions): Promise<StorePruneReport>;
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

const READ_BYTES = 1024 * 1024;

/**
 * Feeds `[start, start + length)` of an open file into `hash` through two fixed buffers, reading the
 * next one while the current one is hashed, so memory stays constant and the disk never waits on the CPU.
 */
async function hashRangeInto(hash: Hash, handle: FileHandle, path: string, start: number, length: number, signal?: AbortSignal): Promise<Hash> {
  if (length === 0) return hash;
  const end = start + length;
  const size = Math.min(READ_BYTES, length);
  const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)] as const;
  const readAt = (turn: 0 | 1, at: number) => handle.read(buffers[turn], 0, Math.min(size, end - at), at);
  let turn: 0 | 1 = 0;
  let position = start;
  let reading: ReturnType<typeof readAt> | undefined = readAt(turn, position);
  while (reading !== undefined) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await reading);
    } catch (err) {
      throw storeError(`cannot read ${path}`, err);
    }
    if (bytesRead === 0) throw storeError(`${path} ended after ${position - start} of ${length} bytes`);
    const filled = buffers[turn].subarray(0, bytesRead);
    position += bytesRead;
    throwIfAborted(signal);
    turn = turn === 0 ? 1 : 0;
    reading = position < end ? readAt(turn, position) : undefined;
    hash.update(filled);
  }
  return hash;
}

/** The sha256 of `[start, start + length)` of a file. */
async function hashFileRange(path: string, start: number, length: number, signal?: AbortSignal): Promise<Digest> {
  return digestOf(await hashFileInto(createDigester(), path, start, length, signal));
}

/** Hashes `[start, start + length)` of a file into `hash`. */
async function hashFileInto(hash: Hash, path: string, start: number, length: number, signal?: AbortSignal): Promise<Hash> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY);
  } catch (err) {
    throw storeError(`cannot open ${path}`, err);
  }
  try {
    return await hashRangeInto(hash, handle, path, start, length, signal);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

type PieceShape = Pick<PieceSpec, 'blobSize' | 'offset' | 'length'>;

/**
 * Two pieces of one blob that cannot both be journalled: they come from different plans (another
 * piece size, or a blob size that disagrees) and would claim the same bytes of the shared file.
 */
function clashes(a: PieceShape, b: PieceShape): boolean {
  if (a.offset === b.offset) return a.blobSize !== b.blobSize || a.length !== b.length;
  return a.blobSize !== b.blobSize || (a.offset < b.offset + b.length && b.offset < a.offset + a.length);
}

/** Partial files of the store layout before pieces shared one file: `partial/<hex>.<offset>`. */
const OLD_PIECE_FILE = /^[0-9a-f]{64}\.\d+$/;

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

/** Bytes read at once when following a piece. */
const FOLLOW_READ_BYTES = 1024 * 1024;

/**
 * The bytes [offset, offset + length) of a piece being written, as they reach the file. Each chunk
 * is a fresh buffer (the consumer may keep it).
 */
async function* followPiece(writer: LivePiece, handle: FileHandle, offset: number, length: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const generation = writer.generation;
  const end = offset + length;
  let position = offset;
  try {
    while (position < end) {
      throwIfAborted(signal);
      if (writer.generation !== generation) {
        throw new MeshmirrorError('MM_RANGE_IGNORED', `piece @${writer.offset}+${writer.length} started over while it was being read`);
      }
      const available = Math.min(end, writer.offset + writer.written) - position;
      if (available > 0) {
        const buffer = Buffer.allocUnsafe(Math.min(available, FOLLOW_READ_BYTES));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) throw storeError(`the partial file ended at ${position} while following piece @${writer.offset}`);
        position += bytesRead;
        yield buffer.subarray(0, bytesRead);
        continue;
      }
      if (writer.closed) {
        throw new MeshmirrorError('MM_NOT_FOUND', `piece @${writer.offset}+${writer.length} stopped at byte ${writer.written} of ${writer.length}`);
      }
      await writer.changed(signal);
    }
  } finally {
    await handle.close();
  }
}

export function createBlobStore(options: BlobStoreOptions): BlobStore {
  return new FileBlobStore(options);
}

class FileBlobStore implements BlobStore {
  readonly dir: string;
  readonly #logger: Logger;
  readonly #commitEveryBytes: number;
  readonly #blobsDir: string;
  /** The blobs folder's fsync after a rename into it, shared by the blobs completing at about the same time. */
  readonly #blobsDirSync = new GroupSync(() => this.#syncFile(this.#blobsDir));
  readonly #partialDir: string;
  readonly #tmpDir: string;
  readonly #index: StoreIndex;
  /** Pieces with a live writer, by blob and offset. */
  readonly #writing = new Map<Digest, Map<number, PieceShape>>();
  readonly #completing = new Map<Digest, Promise<void>>();
  /** Open piece writers, by blob, for readers that follow a piece while it is written. */
  readonly #live = new Map<Digest, Set<FilePieceWriter>>();
  /** Readers waiting for a piece writer of the blob to open. */
  readonly #liveWaiters = new Map<Digest, Set<() => void>>();
  readonly #now: () => number;
  /** Blobs whose use was noted since `#notedSince`; cleared every `NOTE_USE_EVERY_MS`. */
  readonly #noted = new Set<Digest>();
  #notedSince = 0;
  #opened = false;

  constructor(options: BlobStoreOptions) {
    this.dir = options.dir;
    this.#logger = options.logger;
    const every = options.commitEveryBytes ?? DEFAULT_COMMIT_EVERY_BYTES;
    if (!Number.isSafeInteger(every) || every <= 0) throw new RangeError(`commitEveryBytes must be > 0, got ${every}`);
    this.#commitEveryBytes = every;
    this.#now = options.now ?? Date.now;
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
      // Leftovers of an interrupted putBlob: never referenced by the index.
      await rm(this.#tmpDir, { recursive: true, force: true });
      await mkdir(this.#tmpDir, { recursive: true });
    } catch (err) {
      throw storeError(`cannot prepare the store folder ${this.dir}`, err);
    }
    try {
      await this.#index.open();
    } catch (err) {
      // Named by the store's folder, which is what the user gave (the index is a folder inside it).
      throw err instanceof StoreInUseError ? new StoreInUseError(this.dir, err.cause) : err;
    }
    this.#opened = true;
    this.#noted.clear();
    this.#notedSince = this.#now();
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
    await this.#noteUse(digest);
    return record.size;
  }

  /** Notes that a held blob was used now, unless that was noted within the last `NOTE_USE_EVERY_MS`. */
  async #noteUse(digest: Digest): Promise<void> {
    const now = this.#now();
    if (now - this.#notedSince >= NOTE_USE_EVERY_MS) {
      this.#noted.clear();
      this.#notedSince = now;
    }
    if (this.#noted.has(digest)) return;
    this.#noted.add(digest);
    try {
      await this.#index.putUsedAt([digest], now);
    } catch (err) {
      // A read must not fail for want of its note (a full disk): the blob only looks older to `prune`.
      this.#logger.warn({ digest, err: err instanceof Error ? err.message : String(err) }, 'cannot note the use of a blob');
    }
  }

  async prune(options: StorePruneOptions): Promise<StorePruneReport> {
    throwIfAborted(options.signal);
    this.#checkOpen();
    if (this.#writing.size > 0) throw storeError(`the store at ${this.dir} has pieces open for writing; prune it when nothing uses it`);
    const report = await pruneStoreFolders(
      { index: this.#index, blobsDir: this.#blobsDir, partialDir: this.#partialDir, now: this.#now(), logger: this.#logger },
      options,
    );
    this.#noted.clear();
    return report;
  }

  async blobFile(digest: Digest, options: AbortOptions = {}): Promise<BlobFileLocation | undefined> {
    const size = await this.blobSize(digest, options);
    return size === undefined ? undefined : { path: this.#blobPath(digest), offset: 0, size };
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

  async openStoredRange(digest: Digest, offset: number, length: number, options: AbortOptions = {}): Promise<Readable | undefined> {
    if (!isDigest(digest) || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) return undefined;
    const size = await this.blobSize(digest, options);
    if (size !== undefined) {
      if (offset + length > size) return undefined;
      return this.openBlob(digest, { start: offset, end: offset + length - 1, ...(options.signal ? { signal: options.signal } : {}) });
    }
    // A finished piece, or the committed start of an unfinished one (durable, and never written
    // again unless the piece starts over): a writer elsewhere may lack exactly those bytes.
    const piece = (await this.#index.piecesOf(digest)).find((p) => p.offset <= offset && offset + length <= p.offset + (isFinished(p) ? p.length : p.committed));
    if (piece === undefined) return undefined;
    if (length === 0) return Readable.from([]);
    // An open descriptor keeps reading the same bytes even if the blob completes (a rename) meanwhile.
    return createReadStream(this.#partialPath(digest), {
      start: offset,
      end: offset + length - 1,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  async openLiveRange(digest: Digest, offset: number, length: number, options: AbortOptions & { waitMs?: number } = {}): Promise<Readable | undefined> {
    const stored = await this.openStoredRange(digest, offset, length, options);
    if (stored !== undefined) return stored;
    const covers = (w: FilePieceWriter): boolean => !w.closed && w.offset <= offset && offset + length <= w.offset + w.length;
    const find = (): FilePieceWriter | undefined => [...(this.#live.get(digest) ?? [])].find(covers);
    let writer = find();
    if (writer === undefined) {
      // Finished (and its writer closed) while the first look was under way: a writer publishes the
      // finished piece before it closes.
      const finished = await this.openStoredRange(digest, offset, length, options);
      if (finished !== undefined) return finished;
      writer = find();
    }
    if (writer === undefined && (options.waitMs ?? 0) > 0) {
      // The fetch of the piece and this request were sent at the same moment: give its writer time to open.
      const deadline = AbortSignal.any([AbortSignal.timeout(options.waitMs ?? 0), ...(options.signal ? [options.signal] : [])]);
      while (writer === undefined && !deadline.aborted) {
        await new Promise<void>((resolve) => {
          const waiters = this.#liveWaiters.get(digest) ?? new Set<() => void>();
          this.#liveWaiters.set(digest, waiters);
          const done = (): void => {
            waiters.delete(done);
            if (waiters.size === 0 && this.#liveWaiters.get(digest) === waiters) this.#liveWaiters.delete(digest);
            deadline.removeEventListener('abort', done);
            resolve();
          };
          waiters.add(done);
          deadline.addEventListener('abort', done, { once: true });
        });
        writer = find();
      }
      throwIfAborted(options.signal);
    }
    // Finished in the meantime: served from the store like any other.
    if (writer === undefined) return this.openStoredRange(digest, offset, length, options);
    let handle: FileHandle;
    try {
      handle = await open(this.#partialPath(digest), constants.O_RDONLY);
    } catch {
      // Completed and renamed in the meantime.
      return this.openStoredRange(digest, offset, length, options);
    }
    return Readable.from(followPiece(writer, handle, offset, length, options.signal));
  }

  async hashPartialRange(digest: Digest, offset: number, length: number, options: AbortOptions & { into: Hash }): Promise<Hash> {
    return length === 0 ? options.into : hashFileInto(options.into, this.#partialPath(digest), offset, length, options.signal);
  }

  uploadJournal(registry: string): UploadJournal {
    const key = (repository: string, digest: Digest): string => `${registry}/${repository}@${digest}`;
    return {
      session: (repository, digest) => {
        this.#checkOpen();
        return this.#index.getUploadSession(key(repository, digest));
      },
      saveSession: (repository, digest, url) => {
        this.#checkOpen();
        return this.#index.putUploadSession(key(repository, digest), url, this.#now());
      },
      clearSession: (repository, digest) => {
        this.#checkOpen();
        return this.#index.deleteUploadSession(key(repository, digest));
      },
    };
  }

  async evict(digest: Digest, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    this.#checkOpen();
    if (!isDigest(digest)) return;
    await this.#index.deleteHeld(digest);
    await rm(this.#blobPath(digest), { force: true });
    this.#logger.warn({ digest }, 'evicted a held blob that failed verification');
  }

  async holdings(blobs: BlobRef[], options: AbortOptions = {}): Promise<BlobHolding[]> {
    const result: BlobHolding[] = [];
    for (const blob of blobs) {
      throwIfAborted(options.signal);
      if (await this.has(blob.digest)) {
        result.push({ digest: blob.digest, held: true, pieces: [] });
        continue;
      }
      const pieces = (await this.#index.piecesOf(blob.digest))
        .filter((p) => p.blobSize === blob.size && p.committed > 0)
        .map((p) => ({ offset: p.offset, length: p.length, committed: p.committed, ...(p.sha256 === undefined ? {} : { sha256: p.sha256 }) }));
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
    await this.#index.putHeld(digest, { size: data.length }, this.#now());
    this.#noted.add(digest);
  }

  async importBlob(digest: Digest, size: number, open: (offset: number) => Promise<Readable>, options: AbortOptions = {}): Promise<void> {
    if (await this.has(digest, options)) return;
    if (size > 0) {
      const writer = await this.openPiece({ digest, blobSize: size, offset: 0, length: size }, options);
      try {
        if (writer.written < size) {
          const source = await open(writer.written);
          for await (const chunk of source as AsyncIterable<Uint8Array>) {
            throwIfAborted(options.signal);
            await writer.write(chunk);
          }
        }
        await writer.finish();
      } finally {
        await writer.close();
      }
    }
    await this.completeBlob(digest, size, options);
  }

  async openPiece(piece: PieceSpec, options: AbortOptions = {}): Promise<PieceWriter> {
    throwIfAborted(options.signal);
    this.#checkOpen();
    const { digest, blobSize, offset, length } = piece;
    if (!isDigest(digest)) throw new MeshmirrorError('MM_USAGE', `not a sha256 digest: ${String(digest)}`);
    if (![blobSize, offset, length].every((n) => Number.isSafeInteger(n) && n >= 0) || offset + length > blobSize || (length === 0 && blobSize !== 0)) {
      throw new MeshmirrorError('MM_USAGE', `invalid piece ${digest}@${offset}+${length} of a ${blobSize}-byte blob`);
    }
    // Completing a blob renames its partial file; a writer opened meanwhile would write into the held blob.
    for (let running = this.#completing.get(digest); running !== undefined; running = this.#completing.get(digest)) {
      await running.catch(() => undefined);
    }
    throwIfAborted(options.signal);
    this.#checkOpen();
    // Checked and claimed without an await in between, so two writers can never share bytes of the file.
    const writing = this.#writing.get(digest) ?? new Map<number, PieceShape>();
    if (writing.has(offset)) throw storeError(`piece ${digest}@${offset} is already open for writing`);
    const shape: PieceShape = { blobSize, offset, length };
    for (const other of writing.values()) {
      if (clashes(other, shape)) {
        throw storeError(`piece ${digest}@${offset}+${length} overlaps piece @${other.offset}+${other.length}, open for writing`);
      }
    }
    writing.set(offset, shape);
    this.#writing.set(digest, writing);
    const release = (): void => {
      writing.delete(offset);
      if (writing.size === 0 && this.#writing.get(digest) === writing) this.#writing.delete(digest);
    };
    try {
      return await this.#openPieceLocked(piece, release, options.signal);
    } catch (err) {
      release();
      throw err;
    }
  }

  async #openPieceLocked(piece: PieceSpec, release: () => void, signal?: AbortSignal): Promise<PieceWriter> {
    const { digest, blobSize, offset, length } = piece;
    const path = this.#partialPath(digest);
    const journalled = await this.#index.piecesOf(digest);
    // Journalled pieces of another plan (another piece size) would claim bytes this piece is about to
    // overwrite in the shared file. Their bytes are only a cache, so they are forgotten.
    const stale = journalled.filter((p) => clashes(p, piece));
    if (stale.length > 0) {
      this.#logger.info(
        { digest, offset, length, forgotten: stale.map((p) => `${p.offset}+${p.length}`) },
        'piece plan changed; forgetting overlapping pieces of the old plan',
      );
      await this.#index.deletePieces(stale);
    }
    let record = journalled.find((p) => p.offset === offset && !clashes(p, piece));
    let handle: FileHandle;
    try {
      // Never truncated: other pieces of the blob may already have bytes in it.
      handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (err) {
      throw storeError(`cannot open ${path}`, err);
    }
    try {
      const onDisk = (await handle.stat()).size;
      if (record === undefined) {
        record = { digest, blobSize, offset, length, committed: 0 };
        await this.#index.putPiece(record);
      } else if (onDisk < offset + record.committed) {
        // Only possible if the file was tampered with or the filesystem lost synced data.
        this.#logger.warn({ digest, offset, committed: record.committed, onDisk }, 'partial file shorter than journal');
        record = await this.#shrinkCommitted(record, onDisk);
      }
      // Bytes of this piece past its committed offset are not trusted: the writer resumes at the
      // committed offset and overwrites them, and the hash covers only the committed prefix.
      const hash = createDigester();
      if (!isFinished(record)) await hashRangeInto(hash, handle, path, offset, record.committed, signal);
      if (record.committed > 0) {
        this.#logger.debug({ digest, offset, committed: record.committed }, 'resuming piece');
      }
      const live = this.#live.get(digest) ?? new Set<FilePieceWriter>();
      this.#live.set(digest, live);
      const writer: FilePieceWriter = new FilePieceWriter({
        handle,
        path,
        record,
        index: this.#index,
        hash,
        commitEveryBytes: this.#commitEveryBytes,
        onClose: () => {
          live.delete(writer);
          if (live.size === 0 && this.#live.get(digest) === live) this.#live.delete(digest);
          release();
        },
      });
      live.add(writer);
      for (const waiter of [...(this.#liveWaiters.get(digest) ?? [])]) waiter();
      return writer;
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err instanceof MeshmirrorError ? err : storeError(`cannot resume ${path}`, err);
    }
  }

  /** Lowers a piece's committed offset to what a partial file of `onDisk` bytes can hold. */
  async #shrinkCommitted(record: PieceRecord, onDisk: number): Promise<PieceRecord> {
    const { sha256: _dropped, ...rest } = record;
    const shrunk = { ...rest, committed: Math.max(0, Math.min(record.committed, onDisk - record.offset)) };
    await this.#index.putPiece(shrunk);
    return shrunk;
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
    const writing = (this.#writing.get(digest)?.size ?? 0) > 0;
    if (await this.has(digest)) {
      // A live writer still owns its piece and the file; its leftovers go with the next completion or open.
      if (!writing) await this.#discardPartial(digest, pieces);
      return;
    }
    const cover = this.#coverOf(digest, size, pieces);
    // Every piece of the blob writes into the one partial file, so any live writer could change it.
    if (writing) throw storeError(`blob ${digest} still has a piece open for writing`);
    await this.#completeFromPartial(digest, size, cover, pieces, signal);
    this.#logger.debug({ digest, size, pieces: cover.length }, 'blob verified and held');
  }

  async isComplete(digest: Digest, size: number, options: AbortOptions = {}): Promise<boolean> {
    if (await this.has(digest, options)) return true;
    const pieces = await this.#index.piecesOf(digest);
    // A piece of the blob still open for writing (one that has journalled its hash and is closing
    // its file, or a second copy) may still change the file, and `completeBlob` refuses it: not yet.
    // The writer that closes last asks again.
    if ((this.#writing.get(digest)?.size ?? 0) > 0) return false;
    return tileOf(size, pieces).missingAt === undefined;
  }

  #coverOf(digest: Digest, size: number, pieces: PieceRecord[]): PieceRecord[] {
    const { cover, missingAt } = tileOf(size, pieces);
    if (missingAt !== undefined) {
      throw storeError(`blob ${digest} is incomplete: no finished piece starts at byte ${missingAt} of ${size}`);
    }
    return cover;
  }

  /**
   * Verifies the partial file and renames it into place: the bytes are written once, never copied.
   * A single piece spanning the blob was hashed while it streamed in, so its hash is the blob's;
   * otherwise the file is read once, in order, to hash it.
   */
  async #completeFromPartial(digest: Digest, size: number, cover: PieceRecord[], all: PieceRecord[], signal?: AbortSignal): Promise<void> {
    const path = this.#partialPath(digest);
    let handle: FileHandle | undefined;
    let actual: string;
    try {
      // Created when missing so that the empty blob, which has no piece bytes, completes too.
      handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
      const onDisk = (await handle.stat()).size;
      const only = cover.length === 1 ? cover[0] : undefined;
      if (onDisk < size) {
        actual = `a partial file of ${onDisk} bytes`;
      } else if (only !== undefined) {
        actual = only.sha256 ?? 'none';
      } else {
        // In a worker thread with its own reads: on the main thread, each read of the file waited
        // its turn in the thread pool behind the farm's pulls, and a 104 MB blob took 2.5 s to hash.
        const hashed = await backgroundHashPool().hashFileRange(path, 0, size, signal);
        actual = hashed.bytesRead < size ? `a partial file of ${hashed.bytesRead} bytes` : hashed.digest;
      }
      if (actual === digest) {
        // Bytes past the blob's end can only come from pieces of a plan with a wrong blob size.
        if (onDisk > size) await handle.truncate(size);
        // Each piece fdatasync'ed its bytes when it finished; a full fsync before the rename also makes
        // the file's metadata durable, so the rename never publishes a hole.
        await handle.sync();
      }
      await handle.close();
      handle = undefined;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      if (signal?.aborted === true) throwIfAborted(signal);
      throw err instanceof MeshmirrorError ? err : storeError(`cannot verify blob ${digest}`, err);
    }
    if (actual !== digest) {
      await this.#discardPartial(digest, all);
      throw new DigestMismatchError(digest, actual, `blob ${digest}`);
    }
    await this.#publish(path, digest);
    await this.#index.markHeld(digest, { size }, all, this.#now());
    this.#noted.add(digest);
  }

  async hashHeldRange(digest: Digest, offset: number, length: number, options: AbortOptions = {}): Promise<Digest> {
    const size = await this.blobSize(digest, options);
    if (size === undefined) throw notFound(digest);
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new MeshmirrorError('MM_USAGE', `range ${offset}+${length} is outside blob ${digest} of ${size} bytes`);
    }
    if (offset === 0 && length === size) return digest;
    return hashFileRange(this.#blobPath(digest), offset, length, options.signal);
  }

  /** Moves a verified, synced file to its content address and makes the rename itself durable. */
  async #publish(from: string, digest: Digest): Promise<void> {
    try {
      await rename(from, this.#blobPath(digest));
      await this.#blobsDirSync.sync();
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

  /** Forgets a blob's pieces, then deletes their shared file. */
  async #discardPartial(digest: Digest, pieces: PieceRecord[]): Promise<void> {
    await this.#index.deletePieces(pieces);
    await rm(this.#partialPath(digest), { force: true });
  }

  /**
   * Brings the index and the folders back into agreement after a crash or a hand edit:
   * held marks need a file of the right size; a piece record needs its blob's partial file, long
   * enough for its committed bytes; partial files need a piece record; a blob file that lost its
   * held mark (crash between rename and mark) is re-verified and adopted.
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
      const actual = size === undefined ? undefined : await hashFileRange(path, 0, size, signal);
      if (isDigest(digest) && size !== undefined && actual === digest) {
        this.#logger.info({ digest, size }, 'adopting verified blob file that lost its held mark');
        await this.#index.markHeld(digest, { size }, await this.#index.piecesOf(digest));
        held.add(name);
      } else {
        this.#logger.warn({ file: path, actual }, 'removing blob file whose content does not match its name');
        await rm(path, { force: true, recursive: true });
      }
    }

    // Stores written before pieces shared one file kept `partial/<hex>.<offset>` per piece. They are
    // only a cache of upstream bytes, so they are deleted rather than converted; their records point
    // at a shared file that does not exist and are dropped below with the other stale records.
    const partialNames = await readdir(this.#partialDir);
    const oldPieceFiles = partialNames.filter((name) => OLD_PIECE_FILE.test(name)).length;
    if (oldPieceFiles > 0) {
      this.#logger.info({ files: oldPieceFiles }, 'discarding partial pieces of the previous store layout; they will be fetched again');
    }

    const journalled = new Set<string>();
    const stale: PieceRecord[] = [];
    for await (const record of this.#index.pieceRecords()) {
      throwIfAborted(signal);
      const hex = digestHex(record.digest);
      const onDisk = held.has(hex) ? undefined : await fileSize(this.#partialPath(record.digest));
      if (onDisk === undefined) {
        stale.push(record);
        continue;
      }
      journalled.add(hex);
      if (onDisk < record.offset + record.committed) {
        this.#logger.warn({ digest: record.digest, offset: record.offset }, 'partial file shorter than its journal');
        await this.#shrinkCommitted(record, onDisk);
      }
    }
    await this.#index.deletePieces(stale);

    for (const name of partialNames) {
      if (!journalled.has(name)) await rm(join(this.#partialDir, name), { force: true, recursive: true });
    }
  }

  #checkOpen(): void {
    if (!this.#opened) throw storeError(`the blob store at ${this.dir} is not open`);
  }

  #blobPath(digest: Digest): string {
    return join(this.#blobsDir, digestHex(digest));
  }

  /** The one sparse file all pieces of a blob write into, each at its own offset. */
  #partialPath(digest: Digest): string {
    return join(this.#partialDir, digestHex(digest));
  }

  #tmpPath(digest: Digest): string {
    return join(this.#tmpDir, `${digestHex(digest)}.${randomBytes(6).toString('hex')}`);
  }
}
