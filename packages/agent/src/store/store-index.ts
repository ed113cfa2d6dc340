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
const PIECE_PREFIX = 'piece:';
const OFFSET_DIGITS = 16;

function heldKey(digest: Digest): string {
  return `${HELD_PREFIX}${digest}`;
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

/**
 * The blob store's LevelDB index. Every write that records durability (a committed offset, a held
 * mark) uses `sync: true`, so the record survives not only `kill -9` but a power cut too; it is
 * written only after the bytes it describes were fsync'ed.
 */
export class StoreIndex {
  readonly #db: Level<string, unknown>;

  constructor(location: string) {
    this.#db = new Level<string, unknown>(location, { valueEncoding: 'json' });
  }

  async open(): Promise<void> {
    try {
      await this.#db.open();
    } catch (err) {
      throw storeError(`cannot open the store index at ${this.#db.location} (is another agent using it?)`, err);
    }
  }

  async close(): Promise<void> {
    await this.#db.close();
  }

  async getHeld(digest: Digest): Promise<HeldRecord | undefined> {
    const value = await this.#wrap('read', () => this.#db.get(heldKey(digest)));
    return isHeldRecord(value) ? value : undefined;
  }

  async putHeld(digest: Digest, record: HeldRecord): Promise<void> {
    await this.#wrap('write', () => this.#db.put(heldKey(digest), record, { sync: true }));
  }

  async deleteHeld(digest: Digest): Promise<void> {
    await this.#wrap('write', () => this.#db.del(heldKey(digest), { sync: true }));
  }

  async *heldRecords(): AsyncGenerator<[Digest, HeldRecord]> {
    for await (const [key, value] of this.#db.iterator({ gt: HELD_PREFIX, lt: `${HELD_PREFIX}\xff` })) {
      const digest = key.slice(HELD_PREFIX.length);
      if (isDigest(digest) && isHeldRecord(value)) yield [digest, value];
    }
  }

  async getPiece(digest: Digest, offset: number): Promise<PieceRecord | undefined> {
    const value = await this.#wrap('read', () => this.#db.get(pieceKey(digest, offset)));
    return isPieceRecord(value) ? value : undefined;
  }

  async putPiece(record: PieceRecord): Promise<void> {
    await this.#wrap('write', () => this.#db.put(pieceKey(record.digest, record.offset), record, { sync: true }));
  }

  async deletePiece(digest: Digest, offset: number): Promise<void> {
    await this.#wrap('write', () => this.#db.del(pieceKey(digest, offset), { sync: true }));
  }

  /** The pieces journalled for one blob, in offset order. */
  async piecesOf(digest: Digest): Promise<PieceRecord[]> {
    const pieces: PieceRecord[] = [];
    const prefix = `${PIECE_PREFIX}${digest}:`;
    for await (const value of this.#db.values({ gte: prefix, lt: `${prefix}\xff` })) {
      if (isPieceRecord(value)) pieces.push(value);
    }
    return pieces;
  }

  async *pieceRecords(): AsyncGenerator<PieceRecord> {
    for await (const value of this.#db.values({ gt: PIECE_PREFIX, lt: `${PIECE_PREFIX}\xff` })) {
      if (isPieceRecord(value)) yield value;
    }
  }

  async getUploadSession(key: string): Promise<string | undefined> {
    const value = await this.#wrap('read', () => this.#db.get(`${UPLOAD_PREFIX}${key}`));
    return typeof value === 'object' && value !== null && typeof (value as { url?: unknown }).url === 'string' ? (value as { url: string }).url : undefined;
  }

  async putUploadSession(key: string, url: string): Promise<void> {
    await this.#wrap('write', () => this.#db.put(`${UPLOAD_PREFIX}${key}`, { url }, { sync: true }));
  }

  async deleteUploadSession(key: string): Promise<void> {
    await this.#wrap('write', () => this.#db.del(`${UPLOAD_PREFIX}${key}`, { sync: true }));
  }

  /** Marks a blob held and forgets its pieces in one atomic batch. */
  async markHeld(digest: Digest, record: HeldRecord, pieces: PieceRecord[]): Promise<void> {
    await this.#wrap('write', () =>
      this.#db.batch([{ type: 'put', key: heldKey(digest), value: record }, ...pieces.map((p) => ({ type: 'del' as const, key: pieceKey(p.digest, p.offset) }))], {
        sync: true,
      }),
    );
  }

  async deletePieces(pieces: PieceRecord[]): Promise<void> {
    if (pieces.length === 0) return;
    await this.#wrap('write', () =>
      this.#db.batch(
        pieces.map((p) => ({ type: 'del' as const, key: pieceKey(p.digest, p.offset) })),
        { sync: true },
      ),
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
