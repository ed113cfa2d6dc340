/**
 * Which runs a `prune` of the coordinator's cache keeps, and from when on it keeps what was used.
 *
 * One process at a time has the cache's store open (LevelDB's lock), so everything a run read or
 * wrote in the store was used between the run's start and the start of the next process. Kept runs
 * are always the most recent ones; keeping every blob used since the oldest kept run began keeps
 * everything they used, and also what a later run of another configuration shared with them.
 */
import type { RunRecord } from '../run/run-journal.ts';

/** The runs kept by default when no run is newer than `--older-than`: the last one. */
export const DEFAULT_KEEP_RUNS = 1;
/** `--older-than` by default. */
export const DEFAULT_OLDER_THAN_MS = 30 * 24 * 60 * 60 * 1000;

export interface RunSelectionOptions {
  /** ms since the epoch. */
  now: number;
  /** Runs active within this long are kept. */
  olderThanMs: number;
  /** The most recent runs kept whatever their age. */
  keepRuns: number;
}

export type KeepReason = 'most recent' | 'recently active';

export interface RunSelection {
  /** Most recent first. */
  kept: Array<{ run: RunRecord; why: KeepReason }>;
  /** Most recent first. */
  removed: RunRecord[];
  /**
   * What the store last used before this time (ms since the epoch) goes: the start of the oldest
   * kept run, or `now - olderThanMs` when that is earlier.
   */
  usedSince: number;
}

/** A journal time; a time that does not parse counts as the oldest possible. */
function timeOf(iso: string | undefined): number {
  const t = iso === undefined ? Number.NaN : Date.parse(iso);
  return Number.isFinite(t) ? t : 0;
}

/** When the run last did anything the journal saw: started, was resumed, or finished. */
export function lastActive(run: RunRecord): number {
  return Math.max(timeOf(run.startedAt), timeOf(run.resumedAt), timeOf(run.finishedAt));
}

/**
 * Keeps the `keepRuns` most recently active runs and every run active since `now - olderThanMs`.
 * An unfinished run (interrupted, or a dry run) is judged the same way by its last start: a run in
 * progress holds the store, so `prune` cannot run beside it at all.
 */
export function selectRuns(runs: RunRecord[], options: RunSelectionOptions): RunSelection {
  const cutoff = options.now - options.olderThanMs;
  const byRecency = [...runs].sort((a, b) => lastActive(b) - lastActive(a) || b.runId.localeCompare(a.runId));
  const kept: RunSelection['kept'] = [];
  const removed: RunRecord[] = [];
  byRecency.forEach((run, i) => {
    if (i < options.keepRuns) kept.push({ run, why: 'most recent' });
    else if (lastActive(run) >= cutoff) kept.push({ run, why: 'recently active' });
    else removed.push(run);
  });
  const usedSince = Math.min(cutoff, ...kept.map((k) => timeOf(k.run.startedAt)));
  return { kept, removed, usedSince };
}
