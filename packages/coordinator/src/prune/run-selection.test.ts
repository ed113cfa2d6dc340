import { describe, expect, it } from 'vitest';
import type { RunRecord } from '../run/run-journal.ts';
import { lastActive, selectRuns } from './run-selection.ts';

const DAY = 24 * 60 * 60 * 1000;
const NOW = Date.parse('2025-06-30T12:00:00.000Z');

function run(id: string, startedDaysAgo: number, options: { finishedDaysAgo?: number; resumedDaysAgo?: number; state?: RunRecord['state'] } = {}): RunRecord {
  const at = (days: number): string => new Date(NOW - days * DAY).toISOString();
  return {
    runId: id,
    key: `key-${id}`,
    startedAt: at(startedDaysAgo),
    ...(options.resumedDaysAgo === undefined ? {} : { resumedAt: at(options.resumedDaysAgo) }),
    ...(options.finishedDaysAgo === undefined ? {} : { finishedAt: at(options.finishedDaysAgo) }),
    state: options.state ?? (options.finishedDaysAgo === undefined ? 'running' : 'complete'),
  };
}

const ids = (runs: RunRecord[]): string[] => runs.map((r) => r.runId);

describe('selectRuns', () => {
  it('keeps the n most recent runs when none is newer than --older-than, and what was used since the oldest of them began', () => {
    const runs = [run('a', 90, { finishedDaysAgo: 89 }), run('c', 40, { finishedDaysAgo: 40 }), run('b', 60, { finishedDaysAgo: 59 })];
    const one = selectRuns(runs, { now: NOW, olderThanMs: 30 * DAY, keepRuns: 1 });
    expect(one.kept).toEqual([{ run: runs[1], why: 'most recent' }]);
    expect(ids(one.removed)).toEqual(['b', 'a']);
    expect(one.usedSince).toBe(NOW - 40 * DAY);

    const two = selectRuns(runs, { now: NOW, olderThanMs: 30 * DAY, keepRuns: 2 });
    expect(ids(two.kept.map((k) => k.run))).toEqual(['c', 'b']);
    expect(two.usedSince).toBe(NOW - 60 * DAY);
  });

  it('keeps every run active within --older-than besides the most recent, and never keeps less than --older-than covers', () => {
    const runs = [run('old', 50, { finishedDaysAgo: 50 }), run('recent', 20, { finishedDaysAgo: 20 }), run('last', 2, { finishedDaysAgo: 2 })];
    const s = selectRuns(runs, { now: NOW, olderThanMs: 30 * DAY, keepRuns: 1 });
    expect(s.kept).toEqual([
      { run: runs[2], why: 'most recent' },
      { run: runs[1], why: 'recently active' },
    ]);
    expect(ids(s.removed)).toEqual(['old']);
    // The kept runs began 20 days ago, later than the 30-day cutoff: the cutoff decides.
    expect(s.usedSince).toBe(NOW - 30 * DAY);
  });

  it('judges a run by its last activity: a run started long ago but resumed or finished lately is recent, and counts from its start', () => {
    const runs = [run('resumed', 100, { resumedDaysAgo: 3, state: 'running' }), run('done', 10, { finishedDaysAgo: 9 }), run('long', 80, { finishedDaysAgo: 5 })];
    expect(lastActive(runs[0]!)).toBe(NOW - 3 * DAY);
    const s = selectRuns(runs, { now: NOW, olderThanMs: 0, keepRuns: 2 });
    expect(ids(s.kept.map((k) => k.run))).toEqual(['resumed', 'long']);
    expect(ids(s.removed)).toEqual(['done']);
    expect(s.usedSince).toBe(NOW - 100 * DAY);
  });

  it('an unfinished run is judged like the others (a run in progress holds the store and prune cannot run at all)', () => {
    const runs = [run('interrupted', 45), run('later', 35, { finishedDaysAgo: 35 })];
    const s = selectRuns(runs, { now: NOW, olderThanMs: 30 * DAY, keepRuns: 1 });
    expect(ids(s.kept.map((k) => k.run))).toEqual(['later']);
    expect(ids(s.removed)).toEqual(['interrupted']);
  });

  it('--keep-runs 0 --older-than 0 keeps no run and nothing used before now', () => {
    const s = selectRuns([run('a', 1, { finishedDaysAgo: 1 })], { now: NOW, olderThanMs: 0, keepRuns: 0 });
    expect(s.kept).toEqual([]);
    expect(s.usedSince).toBe(NOW);
    expect(selectRuns([], { now: NOW, olderThanMs: 7 * DAY, keepRuns: 1 })).toEqual({ kept: [], removed: [], usedSince: NOW - 7 * DAY });
  });

  it('a journal time that does not parse counts as the oldest: such a run kept keeps everything', () => {
    const broken: RunRecord = { runId: 'x', key: 'k', startedAt: 'yesterday', state: 'complete' };
    const s = selectRuns([broken], { now: NOW, olderThanMs: DAY, keepRuns: 1 });
    expect(s.kept).toHaveLength(1);
    expect(s.usedSince).toBe(0);
  });
});
