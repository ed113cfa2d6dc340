/**
 * `meshmirror prune [--cache-dir DIR | --data DIR] [--older-than 30d] [--keep-runs N] [--dry-run]`:
 * garbage collection of the coordinator's cache (runs decide what stays) or of a farm agent's data
 * folder (age alone: an agent has no runs).
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLogger, describeError, MeshmirrorError, parseDuration, type LogLevel } from '@meshmirror/shared';
import { StoreInUseError } from '@meshmirror/agent';
import { pruneAgentData, pruneCache, pruneSummaryText } from '../../prune/prune-store.ts';
import { DEFAULT_KEEP_RUNS, DEFAULT_OLDER_THAN_MS } from '../../prune/run-selection.ts';
import { withInterruptSignal } from '../interrupt.ts';
import { ExitCode } from '../exit-codes.ts';

export interface PruneFlags {
  cacheDir?: string;
  data?: string;
  /** `--older-than`, as typed (days allowed: `30d`). */
  olderThan?: string;
  keepRuns?: number;
  dryRun?: boolean;
  output: string;
  logLevel: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** `30d`, `12h`, `1d12h`, `90m`, `0`: a Go duration, with days allowed in front. */
export function parseAge(text: string): number {
  const days = /^\s*(\d+(?:\.\d+)?)d(.*)$/.exec(text);
  try {
    if (days === null) return parseDuration(text);
    const rest = days[2]!.trim();
    return Number(days[1]) * DAY_MS + (rest === '' ? 0 : parseDuration(rest));
  } catch (err) {
    throw new MeshmirrorError('MM_USAGE', `--older-than: ${describeError(err)} (days are written 30d)`, { cause: err });
  }
}

export async function runPruneCommand(flags: PruneFlags): Promise<number> {
  if (flags.output !== 'text' && flags.output !== 'json') throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  if (flags.cacheDir !== undefined && flags.data !== undefined) {
    throw new MeshmirrorError('MM_USAGE', '--cache-dir (a coordinator cache) and --data (an agent data folder) exclude each other: prune one store at a time');
  }
  if (flags.data !== undefined && flags.keepRuns !== undefined) {
    throw new MeshmirrorError('MM_USAGE', '--keep-runs is for --cache-dir: an agent keeps no runs, only what it used within --older-than');
  }
  const olderThanMs = flags.olderThan === undefined ? DEFAULT_OLDER_THAN_MS : parseAge(flags.olderThan);
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const dir = resolve(flags.data ?? flags.cacheDir ?? join(homedir(), '.meshmirror'));
  const options = { olderThanMs, dryRun: flags.dryRun === true, logger };
  let summary;
  try {
    summary = await withInterruptSignal((signal) =>
      flags.data !== undefined ? pruneAgentData(dir, { ...options, signal }) : pruneCache(dir, { ...options, keepRuns: flags.keepRuns ?? DEFAULT_KEEP_RUNS, signal }),
    );
  } catch (err) {
    if (!(err instanceof StoreInUseError)) throw err;
    process.stderr.write(`meshmirror: the store at ${dir} is in use by a running meshmirror (a mirror run or an agent); stop it or prune later\n`);
    return ExitCode.StoreInUse;
  }
  process.stdout.write(`${flags.output === 'json' ? JSON.stringify(summary, null, 2) : pruneSummaryText(summary)}\n`);
  return 0;
}
