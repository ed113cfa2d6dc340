/**
 * `meshmirror prune`: garbage collection of the coordinator's cache (runs decide what stays) and
 * of a farm agent's data folder (age alone decides: an agent has no runs).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes, MeshmirrorError, throwIfAborted, type Logger } from '@meshmirror/shared';
import { createBlobStore, type BlobStore, type PruneTally, type StorePruneReport } from '@meshmirror/agent';
import { RunJournal, type RunRecord } from '../run/run-journal.ts';
import { selectRuns, type KeepReason } from './run-selection.ts';

export interface PruneRun {
  runId: string;
  state: RunRecord['state'];
  startedAt: string;
  finishedAt?: string;
  /** Image outcomes the journal holds for it (none for a run that never finished). */
  images: number;
  /** Kept runs: why. */
  why?: KeepReason;
}

export interface PruneSummary {
  /** `cache`: a coordinator's `--cache-dir`; `agent`: a farm agent's `--data` folder. */
  kind: 'cache' | 'agent';
  dir: string;
  dryRun: boolean;
  /** What the store last used before this (ISO time) was removed. */
  usedSince: string;
  /** Runs of the journal (a cache only). */
  runs?: { kept: PruneRun[]; removed: PruneRun[] };
  blobs: StorePruneReport['blobs'];
  partial: StorePruneReport['partial'];
  /** Upload sessions of the store and, in a cache, of the run journal (disk to mirror). */
  uploads: StorePruneReport['uploads'];
  /** Bytes of blobs and partial files removed (or, with `dryRun`, that would be). */
  freedBytes: number;
}

export interface PruneOptions {
  olderThanMs: number;
  dryRun: boolean;
  logger: Logger;
  signal?: AbortSignal;
}

async function isFolder(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}

/** Opens the store for pruning; the open takes LevelDB's lock, so a store in use is refused here. */
async function openStore(dir: string, logger: Logger, signal?: AbortSignal): Promise<BlobStore> {
  const store = createBlobStore({ dir, logger: logger.child({ component: 'prune:store' }) });
  await store.open(signal === undefined ? {} : { signal });
  return store;
}

const NO_STORE: StorePruneReport = {
  blobs: { removed: { count: 0, bytes: 0 }, kept: { count: 0, bytes: 0 }, unstamped: 0 },
  partial: { removed: { count: 0, bytes: 0 }, kept: { count: 0, bytes: 0 }, emptyPieces: 0 },
  uploads: { removed: 0, kept: 0, unstamped: 0 },
};

function summaryOf(kind: PruneSummary['kind'], dir: string, options: PruneOptions, usedSince: number, report: StorePruneReport): PruneSummary {
  return {
    kind,
    dir,
    dryRun: options.dryRun,
    usedSince: new Date(usedSince).toISOString(),
    blobs: report.blobs,
    partial: report.partial,
    uploads: report.uploads,
    freedBytes: report.blobs.removed.bytes + report.partial.removed.bytes,
  };
}

/**
 * Prunes the coordinator's cache: keeps the `keepRuns` most recent runs and every run active within
 * `olderThanMs`, keeps what the store used since the oldest kept run began (see `selectRuns`), and
 * removes the rest with the journal records of the runs not kept.
 */
export async function pruneCache(cacheDir: string, options: PruneOptions & { keepRuns: number }): Promise<PruneSummary> {
  const storeDir = join(cacheDir, 'store');
  const journalDir = join(cacheDir, 'journal');
  const [hasStore, hasJournal] = await Promise.all([isFolder(storeDir), isFolder(journalDir)]);
  if (!hasStore && !hasJournal) throw new MeshmirrorError('MM_USAGE', `${cacheDir} is not a meshmirror cache: it has no store/ and no journal/`);
  const now = Date.now();
  // The store first: a mirror run opens its store before its journal, so a run in progress is
  // refused here before anything is read.
  const store = hasStore ? await openStore(storeDir, options.logger, options.signal) : undefined;
  try {
    const journal = hasJournal ? await RunJournal.open(journalDir) : undefined;
    try {
      const runs = (await journal?.runs()) ?? [];
      const selection = selectRuns(runs, { now, olderThanMs: options.olderThanMs, keepRuns: options.keepRuns });
      const line = async (run: RunRecord, why?: KeepReason): Promise<PruneRun> => ({
        runId: run.runId,
        state: run.state,
        startedAt: run.startedAt,
        ...(run.finishedAt === undefined ? {} : { finishedAt: run.finishedAt }),
        images: (await journal?.images(run))?.length ?? 0,
        ...(why === undefined ? {} : { why }),
      });
      const kept = await Promise.all(selection.kept.map((k) => line(k.run, k.why)));
      const removed = await Promise.all(selection.removed.map((run) => line(run)));
      throwIfAborted(options.signal);
      const report = store === undefined ? NO_STORE : await store.prune({ usedBefore: selection.usedSince, dryRun: options.dryRun, ...abortable(options.signal) });
      const journalUploads = (await journal?.pruneUploadSessions(selection.usedSince, { now, dryRun: options.dryRun })) ?? { removed: 0, kept: 0, unstamped: 0 };
      if (!options.dryRun) await journal?.forgetRuns(selection.removed);
      const uploads = {
        removed: report.uploads.removed + journalUploads.removed,
        kept: report.uploads.kept + journalUploads.kept,
        unstamped: report.uploads.unstamped + journalUploads.unstamped,
      };
      return { ...summaryOf('cache', cacheDir, options, selection.usedSince, { ...report, uploads }), runs: { kept, removed } };
    } finally {
      await journal?.close();
    }
  } finally {
    await store?.close();
  }
}

/** Prunes a farm agent's data folder: what its store has not used within `olderThanMs` goes. */
export async function pruneAgentData(dataDir: string, options: PruneOptions): Promise<PruneSummary> {
  const storeDir = join(dataDir, 'store');
  if (await isFolder(join(dataDir, 'journal'))) {
    throw new MeshmirrorError('MM_USAGE', `${dataDir} holds a run journal: it is a coordinator's cache; prune it with --cache-dir ${dataDir}`);
  }
  if (!(await isFolder(storeDir))) throw new MeshmirrorError('MM_USAGE', `${dataDir} is not an agent's data folder: it has no store/`);
  const usedSince = Date.now() - options.olderThanMs;
  const store = await openStore(storeDir, options.logger, options.signal);
  try {
    const report = await store.prune({ usedBefore: usedSince, dryRun: options.dryRun, ...abortable(options.signal) });
    return summaryOf('agent', dataDir, options, usedSince, report);
  } finally {
    await store.close();
  }
}

function abortable(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}

function tallyText(t: PruneTally, noun: string): string {
  return `${t.count} ${noun}${t.count === 1 ? '' : 's'} (${formatBytes(t.bytes)})`;
}

/** The prune summary a person reads. */
export function pruneSummaryText(summary: PruneSummary): string {
  const verb = summary.dryRun ? 'would remove' : 'removed';
  const what = summary.kind === 'cache' ? 'cache' : 'agent data folder';
  const lines = [`${summary.dryRun ? 'prune (dry run)' : 'pruned'} ${what} ${summary.dir}: ${verb} what was last used before ${summary.usedSince}`];
  if (summary.runs !== undefined) {
    const { kept, removed } = summary.runs;
    lines.push(`  runs: ${kept.length} kept, ${removed.length} ${summary.dryRun ? 'would be forgotten' : 'forgotten'}`);
    for (const r of kept) lines.push(`    kept ${r.runId} (${r.why}; ${r.state}, ${r.images} images, started ${r.startedAt})`);
    for (const r of removed) lines.push(`    ${summary.dryRun ? 'would forget' : 'forgot'} ${r.runId} (${r.state}, ${r.images} images, started ${r.startedAt})`);
  }
  const { blobs, partial, uploads } = summary;
  lines.push(`  blobs: ${verb} ${tallyText(blobs.removed, 'blob')}, kept ${tallyText(blobs.kept, 'blob')}`);
  if (blobs.unstamped > 0) {
    lines.push(`    ${blobs.unstamped} kept blobs had no last-used time (held before meshmirror noted it): counted as used now`);
  }
  lines.push(
    `  partial blobs: ${verb} ${tallyText(partial.removed, 'file')}, kept ${tallyText(partial.kept, 'file')}; ${partial.emptyPieces} empty pieces ${summary.dryRun ? 'would be ' : ''}forgotten`,
  );
  lines.push(`  upload sessions: ${verb} ${uploads.removed}, kept ${uploads.kept}`);
  lines.push(`${summary.dryRun ? 'would free' : 'freed'} ${formatBytes(summary.freedBytes)}`);
  return lines.join('\n');
}
