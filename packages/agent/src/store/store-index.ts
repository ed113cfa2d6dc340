import { Level } from 'level';
import { isDigest, MeshmirrorError, type Digest } from '@meshmirror/shared';

/** A blob whose whole content is in `blobs/sha256/<hex>` and was verified against its digest. */
export interface HeldRecord {
  size: number;
}

/** The journal of one piece being written at its offset in the blob's shared file `partial/<hex>`. */
export interface PieceRecord {
  digest: Digest;
  blobSize: number;
  offset: number;
  length: number;
  /** Bytes of the piece that were fdatasync'ed before this record was written: the resume point. */
  committed: number;
  /** Set once the piece is whole: the sha256 of its bytes. */
  sha256?: Digest;
}

/**
 * Keys sort so that one blob's pieces are adjacent and in offset order:
 * `held:<digest>` and `piece:<digest>:<offset as 16 decimal digits>`.
 */
const HELD_PREFIX = 'held:';
/** `upload:<registry>/<repository>@<digest>`: the session URL of an unfinished upload into a target. */
const UPLOAD_PREFIX = 'upload:';
/**
 * `used:<digest>`: when the held blob was last written or read (ms since the epoch), for `prune`. A
 * key of its own rather than a field of the held mark, so that noting a read can never bring back a
 * held mark that an eviction removed meanwhile. Blobs held before this key existed have none.
 */
const USED_PREFIX = 'used:';
const PIECE_PREFIX = 'piece:';
const OFFSET_DIGITS = 16;

function heldKey(digest: Digest): string {
  return `${HELD_PREFIX}${digest}`;
}

function usedKey(digest: Digest): string {
  return `${USED_PREFIX}${digest}`;
}

function pieceKey(digest: Digest, offset: number): string {
  return `${PIECE_PREFIX}${digest}:${String(offset).padStart(OFFSET_DIGITS, '0')}`;
}

export function isFinished(record: PieceRecord): boolean {
  return record.sha256 !== undefined && record.committed === record.length;
}

function isHeldRecord(value: unknown): value is HeldRecord {
  return typeof value === 'object' && value !== null && Number.isSafeInteger((value as HeldRecord).size);
}

function isUploadSession(value: unknown): value is UploadSessionRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as UploadSessionRecord;
  return typeof r.url === 'string' && (r.at === undefined || Number.isFinite(r.at));
}

function isPieceRecord(value: unknown): value is PieceRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as PieceRecord;
  return (
    typeof r.digest === 'string' &&
    isDigest(r.digest) &&
    Number.isSafeInteger(r.blobSize) &&
    Number.isSafeInteger(r.offset) &&
    Number.isSafeInteger(r.length) &&
    Number.isSafeInteger(r.committed) &&
    (r.sha256 === undefined || isDigest(r.sha256))
  );
}

function storeError(message: string, cause: unknown): MeshmirrorError {
  return new MeshmirrorError('MM_STORE', message, { cause });
}

/** One write of an atomic batch; the index holds JSON values of several kinds. */
type IndexOperation = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

/** An unfinished upload's session, as journalled. */
export interface UploadSessionRecord {
  url: string;
  /** When it was saved (ms since the epoch); sessions saved before this field existed have none. */
  at?: number;
}

/**
 * Why LevelDB could not open a database, in words for a one-line error: its own message is
 * "Database failed to open", and the reason (a full disk, a permission) is in its causes.
 */
export function levelOpenReason(err: unknown): string {
  let innermost: unknown = err;
  for (let e: unknown = err; e instanceof Error; e = e.cause) innermost = e;
  const message = innermost instanceof Error ? innermost.message : String(innermost);
  if (/no space left on device/i.test(message)) return 'no space left on device';
  if (/permission denied/i.test(message)) return 'permission denied';
  return message.split('\n')[0] ?? message;
}

/**
 * Another process has this LevelDB open: LevelDB's own `LOCK` file (an exclusive `fcntl` lock,
 * released by the kernel when that process ends, even by `kill -9`) is what keeps a `prune` and a
 * mirror run or an agent off one store at the same time.
 */
export class StoreInUseError extends MeshmirrorError {
  /** The folder whose database is locked. */
  readonly location: string;

  constructor(location: string, cause: unknown) {
    super('MM_STORE', `the store at ${location} is in use by another running meshmirror (a mirror run or an agent)`, { cause, data: { location, inUse: true } });
    this.name = 'StoreInUseError';
    this.location = location;
  }
}

/** True when opening a LevelDB failed because another process holds its lock (classic-level's `LEVEL_LOCKED`). */
export function isLockedByAnotherProcess(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === 'LEVEL_LOCKED') return true;
  }
  return false;
}

/** Blobs whose records `StoreIndex` keeps in memory by default; past this, the ones cached first are dropped. */
export const CACHED_BLOBS = 20_000;

export interface StoreIndexOptions {
  /** How many blobs' records are kept in memory (default `CACHED_BLOBS`). */
  cachedBlobs?: number;
}

/** What the index holds for one blob, as this process last read or wrote it. */
interface CachedBlob {
  /** Its held record; null: not held; undefined: not read yet. */
  held?: HeldRecord | null;
  /** Every piece record of the blob by offset, once read whole. */
  pieces?: Map<number, PieceRecord>;
  /** Counts the writes of the blob's records: a read that overlapped one is not kept. */
  writes: number;
}

/**
 * The blob store's LevelDB index. Every write that records durability (a committed offset, a held
 * mark) uses `sync: true`, so the record survives not only `kill -9` but a power cut too; it is
 * written only after the bytes it describes were fsync'ed.
 *
 * A blob's held record and pieces are kept in memory once read (the store asks several times per
 * blob: before fetching it, when a piece opens, when the blob completes). Every write goes through
 * here and updates them; the database is opened by this process alone (LevelDB's lock), so what is
 * kept never differs from what is on disk.
 */
export class StoreIndex {
  readonly #db: Level<string, unknown>;
  readonly #cache = new Map<Digest, CachedBlob>();
  readonly #cachedBlobs: number;

  constructor(location: string, options: StoreIndexOptions = {}) {
    this.#db = new Level<string, unknown>(location, { valueEncoding: 'json' });
    this.#cachedBlobs = Math.max(1, options.cachedBlobs ?? CACHED_BLOBS);
  }

  #cached(digest: Digest): CachedBlob {
    let entry = this.#cache.get(digest);
    if (entry === undefined) {
      if (this.#cache.size >= this.#cachedBlobs) this.#cache.delete(this.#cache.keys().next().value!);
      entry = { writes: 0 };
      this.#cache.set(digest, entry);
    }
    return entry;
  }

  /**
   * Runs a write of `digests`' records, then `update` on their cached records. A write that fails
   * may or may not have reached the database, so their cached records are dropped instead.
   */
  async #write(digests: Iterable<Digest>, op: () => Promise<void>, update: (entry: CachedBlob, digest: Digest) => void): Promise<void> {
    try {
      await this.#wrap('write', op);
    } catch (err) {
      for (const digest of digests) this.#cache.delete(digest);
      throw err;
    }
    for (const digest of digests) {
      const entry = this.#cached(digest);
      entry.writes += 1;
      update(entry, digest);
    }
  }

  async open(): Promise<void> {
    // Another process may have written the database while this one had it closed.
    this.#cache.clear();
    try {
      await this.#db.open();
    } catch (err) {
      if (isLockedByAnotherProcess(err)) throw new StoreInUseError(this.#db.location, err);
      throw storeError(`cannot open the store index at ${this.#db.location}: ${levelOpenReason(err)}`, err);
    }
  }

  async close(): Promise<void> {
    this.#cache.clear();
    await this.#db.close();
  }

  async getHeld(digest: Digest): Promise<HeldRecord | undefined> {
    const entry = this.#cached(digest);
    if (entry.held !== undefined) return entry.held ?? undefined;
    const writes = entry.writes;
    const value = await this.#wrap('read', () => this.#db.get(heldKey(digest)));
    const held = isHeldRecord(value) ? value : undefined;
    if (entry.writes === writes) entry.held = held ?? null;
    return held;
  }

  /** Marks a blob held, written at `usedAt`. */
  async putHeld(digest: Digest, record: HeldRecord, usedAt: number): Promise<void> {
    const ops: IndexOperation[] = [
      { type: 'put', key: heldKey(digest), value: record },
      { type: 'put', key: usedKey(digest), value: usedAt },
    ];
    await this.#write(
      [digest],
      () => this.#db.batch(ops, { sync: true }),
      (entry) => (entry.held = record),
    );
  }

  async deleteHeld(digest: Digest): Promise<void> {
    await this.deleteHeldBlobs([digest]);
  }

  /** Forgets held blobs and when they were used, in one atomic batch. */
  async deleteHeldBlobs(digests: Digest[]): Promise<void> {
    if (digests.length === 0) return;
    await this.#write(
      digests,
      () =>
        this.#db.batch(
          digests.flatMap((d) => [
            { type: 'del' as const, key: heldKey(d) },
            { type: 'del' as const, key: usedKey(d) },
          ]),
          { sync: true },
        ),
      (entry) => (entry.held = null),
    );
  }

  /**
   * Notes that a blob was read or written at `at`. Not synced: losing the last few notes to a power
   * cut only makes a blob look older to `prune` by the time since the last synced write.
   */
  async putUsedAt(digests: Digest[], at: number): Promise<void> {
    if (digests.length === 0) return;
    await this.#wrap('write', () => this.#db.batch(digests.map((d) => ({ type: 'put' as const, key: usedKey(d), value: at }))));
  }

  /** When each blob was last used; blobs held before the store noted it are missing. */
  async *usedTimes(): AsyncGenerator<[Digest, number]> {
    for await (const [key, value] of this.#db.iterator({ gt: USED_PREFIX, lt: `${USED_PREFIX}\xff` })) {
      const digest = key.slice(USED_PREFIX.length);
      if (isDigest(digest) && typeof value === 'number' && Number.isFinite(value)) yield [digest, value];
    }
  }

  /** Forgets the use notes of blobs that are not held any more. */
  async deleteUsedTimes(digests: Digest[]): Promise<void> {
    if (digests.length === 0) return;
    await this.#wrap('write', () => this.#db.batch(digests.map((d) => ({ type: 'del' as const, key: usedKey(d) }))));
  }

  async *heldRecords(): AsyncGenerator<[Digest, HeldRecord]> {
    for await (const [key, value] of this.#db.iterator({ gt: HELD_PREFIX, lt: `${HELD_PREFIX}\xff` })) {
      const digest = key.slice(HELD_PREFIX.length);
      if (isDigest(digest) && isHeldRecord(value)) yield [digest, value];
    }
  }

  async getPiece(digest: Digest, offset: number): Promise<PieceRecord | undefined> {
    const pieces = this.#cache.get(digest)?.pieces;
    if (pieces !== undefined) return pieces.get(offset);
    const value = await this.#wrap('read', () => this.#db.get(pieceKey(digest, offset)));
    return isPieceRecord(value) ? value : undefined;
  }

  async putPiece(record: PieceRecord): Promise<void> {
    await this.#write(
      [record.digest],
      () => this.#db.put(pieceKey(record.digest, record.offset), record, { sync: true }),
      (entry) => entry.pieces?.set(record.offset, record),
    );
  }

  async deletePiece(digest: Digest, offset: number): Promise<void> {
    await this.#write(
      [digest],
      () => this.#db.del(pieceKey(digest, offset), { sync: true }),
      (entry) => entry.pieces?.delete(offset),
    );
  }

  /** The pieces journalled for one blob, in offset order. */
  async piecesOf(digest: Digest): Promise<PieceRecord[]> {
    const entry = this.#cached(digest);
    if (entry.pieces !== undefined) return [...entry.pieces.values()].sort((a, b) => a.offset - b.offset);
    const writes = entry.writes;
    const pieces: PieceRecord[] = [];
    const prefix = `${PIECE_PREFIX}${digest}:`;
    for await (const value of this.#db.values({ gte: prefix, lt: `${prefix}\xff` })) {
      if (isPieceRecord(value)) pieces.push(value);
    }
    if (entry.writes === writes) entry.pieces = new Map(pieces.map((p) => [p.offset, p]));
    return pieces;
  }

  async *pieceRecords(): AsyncGenerator<PieceRecord> {
    for await (const value of this.#db.values({ gt: PIECE_PREFIX, lt: `${PIECE_PREFIX}\xff` })) {
      if (isPieceRecord(value)) yield value;
    }
  }

  async getUploadSession(key: string): Promise<string | undefined> {
    const value = await this.#wrap('read', () => this.#db.get(`${UPLOAD_PREFIX}${key}`));
    return isUploadSession(value) ? value.url : undefined;
  }

  async putUploadSession(key: string, url: string, at: number): Promise<void> {
    const record: UploadSessionRecord = { url, at };
    await this.#wrap('write', () => this.#db.put(`${UPLOAD_PREFIX}${key}`, record, { sync: true }));
  }

  async deleteUploadSession(key: string): Promise<void> {
    await this.#wrap('write', () => this.#db.del(`${UPLOAD_PREFIX}${key}`, { sync: true }));
  }

  /** Every journalled upload session, by key (`<registry>/<repository>@<digest>`). */
  async *uploadSessions(): AsyncGenerator<[string, UploadSessionRecord]> {
    for await (const [key, value] of this.#db.iterator({ gt: UPLOAD_PREFIX, lt: `${UPLOAD_PREFIX}\xff` })) {
      if (isUploadSession(value)) yield [key.slice(UPLOAD_PREFIX.length), value];
    }
  }

  /** Replaces upload sessions (stamping, or forgetting them when `record` is undefined), in one batch. */
  async rewriteUploadSessions(changes: Array<[string, UploadSessionRecord | undefined]>): Promise<void> {
    if (changes.length === 0) return;
    await this.#wrap('write', () =>
      this.#db.batch(
        changes.map(([key, record]) =>
          record === undefined ? { type: 'del' as const, key: `${UPLOAD_PREFIX}${key}` } : { type: 'put' as const, key: `${UPLOAD_PREFIX}${key}`, value: record },
        ),
        { sync: true },
      ),
    );
  }

  /**
   * Marks a blob held and forgets its pieces in one atomic batch; `usedAt` notes when (a blob adopted
   * by a repair gets none: it was not used, only found).
   */
  async markHeld(digest: Digest, record: HeldRecord, pieces: PieceRecord[], usedAt?: number): Promise<void> {
    const ops: IndexOperation[] = [
      { type: 'put', key: heldKey(digest), value: record },
      ...(usedAt === undefined ? [] : [{ type: 'put' as const, key: usedKey(digest), value: usedAt }]),
      ...pieces.map((p) => ({ type: 'del' as const, key: pieceKey(p.digest, p.offset) })),
    ];
    await this.#write(
      new Set([digest, ...pieces.map((p) => p.digest)]),
      () => this.#db.batch(ops, { sync: true }),
      (entry, d) => {
        if (d === digest) entry.held = record;
        for (const p of pieces) if (p.digest === d) entry.pieces?.delete(p.offset);
      },
    );
  }

  async deletePieces(pieces: PieceRecord[]): Promise<void> {
    if (pieces.length === 0) return;
    await this.#write(
      new Set(pieces.map((p) => p.digest)),
      () =>
        this.#db.batch(
          pieces.map((p) => ({ type: 'del' as const, key: pieceKey(p.digest, p.offset) })),
          { sync: true },
        ),
      (entry, d) => {
        for (const p of pieces) if (p.digest === d) entry.pieces?.delete(p.offset);
      },
    );
  }

  async #wrap<T>(what: 'read' | 'write', op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw storeError(`store index ${what} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }
}
