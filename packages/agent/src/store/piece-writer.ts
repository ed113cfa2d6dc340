import type { Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { digestOf, createDigester, DigestMismatchError, MeshmirrorError, type Digest } from '@meshmirror/shared';
import type { PieceRecord, StoreIndex } from './store-index.ts';

/**
 * Writes the bytes of one piece at its place in the blob's partial file, which all pieces of the blob
 * share. `committed` is the truth after a crash: bytes of the piece past it may be in the file, but
 * they are never trusted and are overwritten when the piece resumes.
 */
export interface PieceWriter {
  readonly digest: Digest;
  /** Offset of the piece in its blob. */
  readonly offset: number;
  readonly length: number;
  /** Bytes of the piece that are durable (fdatasync'ed and journalled): the resume point. */
  readonly committed: number;
  /** Bytes of the piece written so far in this process, committed or not. */
  readonly written: number;
  /**
   * Writes bytes at `written`. Resolves once they are in the file. Every `commitEveryBytes` a commit
   * starts in the background (the next writes do not wait for the disk); `commit` and `finish` wait for it.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** fdatasync, then journal `written` as the committed offset. */
  commit(): Promise<void>;
  /** Forgets the piece's bytes (a server ignored Range, or the content changed): committed = 0. */
  restart(): Promise<void>;
  /**
   * Commits and returns the sha256 of the piece's bytes. Fails unless `written === length`. With
   * `expected` (the hash another host reported for these bytes), a different hash is never
   * journalled: the piece restarts at 0, the writer closes and `MM_DIGEST_MISMATCH` is thrown.
   */
  finish(expected?: Digest): Promise<{ sha256: Digest }>;
  /**
   * Releases the file once any write in flight has landed; bytes after the last commit are not
   * trusted on the next open. Idempotent.
   */
  close(): Promise<void>;
}

/** What a reader following a piece while it is written sees (`BlobStore.openLiveRange`). */
export interface LivePiece {
  readonly offset: number;
  readonly length: number;
  /** Bytes of the piece in the file so far. */
  readonly written: number;
  /** Counts restarts: bytes read before a restart may have been overwritten since. */
  readonly generation: number;
  /** No more bytes will come from this writer. */
  readonly closed: boolean;
  /** Resolves at the next write, restart or close (or when `signal` aborts). */
  changed(signal?: AbortSignal): Promise<void>;
}

export interface FilePieceWriterInit {
  /** This writer's own handle on the blob's partial file. */
  handle: FileHandle;
  path: string;
  record: PieceRecord;
  index: StoreIndex;
  /** sha256 state over the piece's first `record.committed` bytes. */
  hash: Hash;
  commitEveryBytes: number;
  onClose: () => void;
}

function storeError(message: string, cause?: unknown): MeshmirrorError {
  return new MeshmirrorError('MM_STORE', message, cause === undefined ? {} : { cause });
}

export class FilePieceWriter implements PieceWriter, LivePiece {
  readonly digest: Digest;
  readonly offset: number;
  readonly length: number;
  readonly #path: string;
  readonly #index: StoreIndex;
  readonly #commitEveryBytes: number;
  readonly #onClose: () => void;
  #handle: FileHandle | undefined;
  #closing: Promise<void> | undefined;
  #record: PieceRecord;
  #hash: Hash;
  #written: number;
  /** Calls run one after another even if a caller forgets to await, so offsets never interleave. */
  #queue: Promise<unknown> = Promise.resolve();
  #generation = 0;
  #closed = false;
  /** Readers waiting for the next change. */
  #waiters = new Set<() => void>();
  /** The background commit `write` started, if one is under way. */
  #syncing: Promise<void> | undefined;
  /** Why a background commit failed: the next call fails with it. */
  #syncError: MeshmirrorError | undefined;

  constructor(init: FilePieceWriterInit) {
    this.digest = init.record.digest;
    this.offset = init.record.offset;
    this.length = init.record.length;
    this.#path = init.path;
    this.#index = init.index;
    this.#commitEveryBytes = init.commitEveryBytes;
    this.#onClose = init.onClose;
    this.#handle = init.handle;
    this.#record = init.record;
    this.#hash = init.hash;
    this.#written = init.record.committed;
  }

  get committed(): number {
    return this.#record.committed;
  }

  get written(): number {
    return this.#written;
  }

  get generation(): number {
    return this.#generation;
  }

  get closed(): boolean {
    return this.#closed;
  }

  changed(signal?: AbortSignal): Promise<void> {
    if (this.#closed || signal?.aborted === true) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      const handle = this.#openHandle();
      if (this.#syncError !== undefined) throw this.#syncError;
      if (this.#record.sha256 !== undefined) throw storeError(`piece ${this.#describe()} is already finished`);
      if (this.#written + chunk.length > this.length) {
        throw storeError(`piece ${this.#describe()} overflow: ${this.#written} + ${chunk.length} bytes > ${this.length}`);
      }
      const position = this.offset + this.#written;
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await this.#io('write', () => handle.write(chunk, done, chunk.length - done, position + done));
        done += bytesWritten;
      }
      // Hash only bytes that reached the file, so the hash always matches the piece's bytes [0, written).
      this.#hash.update(chunk);
      this.#written += chunk.length;
      this.#notify();
      if (this.#syncing === undefined && this.#written - this.#record.committed >= this.#commitEveryBytes) this.#commitInBackground(handle);
    });
  }

  /**
   * fdatasync of what is written so far, then its offset journalled, while the writes go on: a
   * stream is never held up by the disk, and a committed offset still never points past durable bytes.
   */
  #commitInBackground(handle: FileHandle): void {
    const upTo = this.#written;
    const generation = this.#generation;
    const syncing: Promise<void> = this.#io('sync', () => handle.datasync())
      .then(async () => {
        // A restart or a finish since then decides the record.
        const stale = (): boolean => generation !== this.#generation || this.#record.sha256 !== undefined || upTo <= this.#record.committed;
        if (stale()) return;
        // Journalled first: `committed` promises what a crash leaves, so it moves only once the index holds it.
        const record = { ...this.#record, committed: upTo };
        await this.#index.putPiece(record);
        if (!stale()) this.#record = record;
      })
      .catch((err: unknown) => {
        this.#syncError ??= err instanceof MeshmirrorError ? err : storeError(`cannot journal piece ${this.#describe()}`, err);
      })
      .finally(() => {
        if (this.#syncing === syncing) this.#syncing = undefined;
      });
    this.#syncing = syncing;
  }

  /** Waits for the background commit, if any, and fails with its failure. */
  async #settled(): Promise<void> {
    await this.#syncing;
    if (this.#syncError !== undefined) throw this.#syncError;
  }

  commit(): Promise<void> {
    return this.#serial(() => this.#commit());
  }

  restart(): Promise<void> {
    return this.#serial(async () => {
      this.#openHandle();
      // Nothing to erase: the file is shared with other pieces, and the piece's old bytes are simply
      // overwritten by the new ones, which the new hash and committed offset alone describe.
      this.#hash = createDigester();
      this.#written = 0;
      this.#generation += 1;
      this.#notify();
      const { sha256: _dropped, ...rest } = this.#record;
      this.#record = { ...rest, committed: 0 };
      await this.#index.putPiece(this.#record);
    });
  }

  finish(expected?: Digest): Promise<{ sha256: Digest }> {
    return this.#serial(async () => {
      await this.#settled();
      if (this.#record.sha256 !== undefined) {
        await this.#close();
        if (expected !== undefined && this.#record.sha256 !== expected) {
          throw new DigestMismatchError(expected, this.#record.sha256, `piece ${this.#describe()}`);
        }
        return { sha256: this.#record.sha256 };
      }
      if (this.#written !== this.length) {
        throw storeError(`piece ${this.#describe()} is incomplete: ${this.#written} of ${this.length} bytes`);
      }
      const sha256 = digestOf(this.#hash);
      if (expected !== undefined && sha256 !== expected) {
        // Wrong bytes are never journalled as finished: the piece starts over for whoever writes it next.
        const { sha256: _none, ...rest } = this.#record;
        this.#record = { ...rest, committed: 0 };
        this.#hash = createDigester();
        this.#written = 0;
        this.#generation += 1;
        await this.#index.putPiece(this.#record);
        await this.#close();
        throw new DigestMismatchError(expected, sha256, `piece ${this.#describe()}`);
      }
      const handle = this.#openHandle();
      await this.#io('sync', () => handle.datasync());
      this.#record = { ...this.#record, committed: this.length, sha256 };
      await this.#index.putPiece(this.#record);
      await this.#close();
      return { sha256 };
    });
  }

  close(): Promise<void> {
    // Not queued behind a stuck operation: closing is how a caller gives up on this writer.
    return this.#close();
  }

  async #commit(): Promise<void> {
    await this.#settled();
    if (this.#written === this.#record.committed) return;
    const handle = this.#openHandle();
    const written = this.#written;
    // Bytes first, journal second: a committed offset never points past durable bytes.
    await this.#io('sync', () => handle.datasync());
    const record = { ...this.#record, committed: written };
    await this.#index.putPiece(record);
    this.#record = record;
  }

  #close(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return this.#closing ?? Promise.resolve();
    this.#handle = undefined;
    this.#closed = true;
    this.#notify();
    // FileHandle.close waits for operations in flight. The piece is released only after that, so a
    // late write of this writer can never land under a new writer of the piece or a blob completion.
    // A background commit journals its offset before the handle goes.
    this.#closing = (this.#syncing ?? Promise.resolve())
      .then(() => handle.close())
      .catch(() => undefined)
      .finally(() => this.#onClose());
    return this.#closing;
  }

  #openHandle(): FileHandle {
    if (this.#handle === undefined) throw storeError(`piece ${this.#describe()} is closed`);
    return this.#handle;
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(op, op);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #io<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw storeError(`cannot ${what} ${this.#path}: ${reason}`, err);
    }
  }

  #describe(): string {
    return `${this.digest}@${this.offset}+${this.length}`;
  }
}
