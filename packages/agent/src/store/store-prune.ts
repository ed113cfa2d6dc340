/**
 * Garbage collection of a blob store: what was last used before a time goes. The store notes a
 * held blob's last use (written, or its bytes or size asked for) under `used:<digest>`; a blob being
 * fetched is judged by its partial file's modification time (every committed piece writes it); an
 * unfinished upload by the time its session was saved.
 *
 * Whoever calls this holds the store open, and so holds LevelDB's lock on its index: no mirror run
 * or agent can be using the store meanwhile.
 */
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, MeshmirrorError, throwIfAborted, type AbortOptions, type Digest, type Logger } from '@meshmirror/shared';
import { isFinished, type PieceRecord, type StoreIndex, type UploadSessionRecord } from './store-index.ts';

export interface StorePruneOptions extends AbortOptions {
  /** What was last used before this time (ms since the epoch) goes. */
  usedBefore: number;
  /** Count what would go and change nothing (not even the stamps of blobs that have no time yet). */
  dryRun?: boolean;
}

export interface PruneTally {
  count: number;
  bytes: number;
}

export interface StorePruneReport {
  /** Held blobs (`blobs/sha256`), by their last use. */
  blobs: {
    removed: PruneTally;
    kept: PruneTally;
    /**
     * Kept blobs that had no last-used time (held before meshmirror noted it): they count as used by
     * this prune, which stamps them, so a later prune judges them by their age from now.
     */
    unstamped: number;
  };
  /** Blobs being fetched (`partial/`): their partial files, by modification time, with their pieces. */
  partial: {
    removed: PruneTally;
    kept: PruneTally;
    /** Journalled pieces without a committed byte: forgotten whatever their age (they hold nothing). */
    emptyPieces: number;
  };
  /** Journalled sessions of unfinished uploads into target registries, by the time each was saved. */
  uploads: { removed: number; kept: number; unstamped: number };
}

export interface HeldBlob {
  digest: Digest;
  size: number;
  /** Last use in ms since the epoch; undefined when the blob was held before the store noted it. */
  usedAt: number | undefined;
}

/** Which held blobs go: last used before `usedBefore`. A blob with no time is kept (and stamped by the caller). */
export function selectBlobs(held: HeldBlob[], usedBefore: number): { remove: HeldBlob[]; keep: HeldBlob[]; unstamped: HeldBlob[] } {
  const remove: HeldBlob[] = [];
  const keep: HeldBlob[] = [];
  const unstamped: HeldBlob[] = [];
  for (const blob of held) {
    if (blob.usedAt === undefined) {
      unstamped.push(blob);
      keep.push(blob);
    } else if (blob.usedAt < usedBefore) {
      remove.push(blob);
    } else {
      keep.push(blob);
    }
  }
  return { remove, keep, unstamped };
}

/** A piece that has not one durable byte: forgetting it loses nothing. */
export function isEmptyPiece(piece: PieceRecord): boolean {
  return piece.committed === 0 && !isFinished(piece);
}

/**
 * What becomes of one blob's partial file and its pieces: all of it goes when the file was last
 * written before `usedBefore` or no piece has a committed byte; otherwise only its empty pieces go.
 */
export function selectPartial(pieces: PieceRecord[], modifiedAt: number, usedBefore: number): { removeFile: boolean; forget: PieceRecord[] } {
  const empty = pieces.filter(isEmptyPiece);
  if (modifiedAt < usedBefore || empty.length === pieces.length) return { removeFile: true, forget: pieces };
  return { removeFile: false, forget: empty };
}

/** Upload sessions saved before `usedBefore` go; a session with no time is kept (and stamped by the caller). */
export function selectUploads(
  sessions: Array<[string, UploadSessionRecord]>,
  usedBefore: number,
): { remove: string[]; keep: string[]; unstamped: Array<[string, UploadSessionRecord]> } {
  const remove: string[] = [];
  const keep: string[] = [];
  const unstamped: Array<[string, UploadSessionRecord]> = [];
  for (const [key, record] of sessions) {
    if (record.at === undefined) {
      unstamped.push([key, record]);
      keep.push(key);
    } else if (record.at < usedBefore) {
      remove.push(key);
    } else {
      keep.push(key);
    }
  }
  return { remove, keep, unstamped };
}

/** Index writes per batch: one sync each, and no batch grows with the store. */
const BATCH = 500;

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += BATCH) out.push(items.slice(i, i + BATCH));
  return out;
}

export interface StoreFolders {
  index: StoreIndex;
  blobsDir: string;
  partialDir: string;
  /** The time a blob without one is stamped with. */
  now: number;
  logger: Logger;
}

/** Runs a prune over an open store's index and folders (see `BlobStore.prune`). */
export async function pruneStoreFolders(folders: StoreFolders, options: StorePruneOptions): Promise<StorePruneReport> {
  const { index, logger } = folders;
  const { usedBefore, signal } = options;
  const dryRun = options.dryRun === true;
  const sizes = new Map<Digest, number>();
  for await (const [digest, record] of index.heldRecords()) sizes.set(digest, record.size);
  const usedAt = new Map<Digest, number>();
  const orphanNotes: Digest[] = [];
  for await (const [digest, at] of index.usedTimes()) {
    if (sizes.has(digest)) usedAt.set(digest, at);
    else orphanNotes.push(digest);
  }
  throwIfAborted(signal);
  const blobs = selectBlobs(
    [...sizes].map(([digest, size]) => ({ digest, size, usedAt: usedAt.get(digest) })),
    usedBefore,
  );
  const tally = (list: Array<{ size: number }>): PruneTally => ({ count: list.length, bytes: list.reduce((n, b) => n + b.size, 0) });

  // Partial files, grouped with their pieces (repair at open already matched the two up).
  const piecesOf = new Map<Digest, PieceRecord[]>();
  for await (const piece of index.pieceRecords()) piecesOf.set(piece.digest, [...(piecesOf.get(piece.digest) ?? []), piece]);
  const partialRemoved: PruneTally = { count: 0, bytes: 0 };
  const partialKept: PruneTally = { count: 0, bytes: 0 };
  let emptyPieces = 0;
  const partialPlan: Array<{ digest: Digest; removeFile: boolean; forget: PieceRecord[] }> = [];
  for (const [digest, pieces] of piecesOf) {
    throwIfAborted(signal);
    const file = join(folders.partialDir, digestHex(digest));
    const info = await stat(file).catch(() => undefined);
    // Sparse: the bytes a partial file takes are its allocated blocks, not its length.
    const bytes = info === undefined ? 0 : Math.min(info.size, info.blocks * 512);
    const verdict = selectPartial(pieces, info?.mtimeMs ?? 0, usedBefore);
    if (verdict.removeFile) {
      partialRemoved.count += 1;
      partialRemoved.bytes += bytes;
    } else {
      partialKept.count += 1;
      partialKept.bytes += bytes;
    }
    emptyPieces += verdict.forget.filter(isEmptyPiece).length;
    if (verdict.forget.length > 0) partialPlan.push({ digest, ...verdict });
  }

  const sessions: Array<[string, UploadSessionRecord]> = [];
  for await (const entry of index.uploadSessions()) sessions.push(entry);
  const uploads = selectUploads(sessions, usedBefore);

  const report: StorePruneReport = {
    blobs: { removed: tally(blobs.remove), kept: tally(blobs.keep), unstamped: blobs.unstamped.length },
    partial: { removed: partialRemoved, kept: partialKept, emptyPieces },
    uploads: { removed: uploads.remove.length, kept: uploads.keep.length, unstamped: uploads.unstamped.length },
  };
  if (dryRun) return report;

  for (const batch of chunks(blobs.unstamped)) {
    await index.putUsedAt(
      batch.map((b) => b.digest),
      folders.now,
    );
  }
  await index.deleteUsedTimes(orphanNotes);
  // The record goes first, then the file: a crash in between leaves a file that the next open
  // verifies and adopts again, never a held mark without its bytes.
  for (const batch of chunks(blobs.remove)) {
    throwIfAborted(signal);
    await index.deleteHeldBlobs(batch.map((b) => b.digest));
    for (const blob of batch) await removeFile(join(folders.blobsDir, digestHex(blob.digest)));
  }
  for (const { digest, removeFile: whole, forget } of partialPlan) {
    throwIfAborted(signal);
    await index.deletePieces(forget);
    if (whole) await removeFile(join(folders.partialDir, digestHex(digest)));
  }
  for (const batch of chunks([
    ...uploads.remove.map((key): [string, undefined] => [key, undefined]),
    ...uploads.unstamped.map(([key, r]): [string, UploadSessionRecord] => [key, { ...r, at: folders.now }]),
  ])) {
    await index.rewriteUploadSessions(batch);
  }
  logger.info({ usedBefore: new Date(usedBefore).toISOString(), blobs: report.blobs, partial: report.partial, uploads: report.uploads }, 'pruned the store');
  return report;
}

async function removeFile(path: string): Promise<void> {
  try {
    await rm(path, { force: true });
  } catch (err) {
    throw new MeshmirrorError('MM_STORE', `cannot remove ${path}`, { cause: err });
  }
}
