/**
 * The soak's plan and its memory verdict, which `pnpm soak` runs for minutes: checked here in
 * milliseconds, so a change that leaves the CI sample without a kill or judges a leak flat shows up
 * with the unit tests.
 */
import { describe, expect, it } from 'vitest';
import { soakEvents } from './fault-plan.ts';
import { judgeFlatness, type Incarnation } from './process-sampler.ts';

const MINUTE = 60_000;
const MiB = 1024 * 1024;

describe('soakEvents', () => {
  it('gives the 3-minute CI sample every kind of fault while the run still goes', () => {
    const events = soakEvents(3 * MINUTE);
    const kinds = (kind: string) => events.filter((e) => e.kind === kind);
    expect(kinds('kill-coordinator')).toHaveLength(1);
    expect(kinds('kill-agent').length).toBeGreaterThanOrEqual(1);
    expect(kinds('outage')).toEqual([{ kind: 'outage', atMs: 99_000, forMs: 18_000 }]);
    expect(kinds('burst').length).toBeGreaterThanOrEqual(10);
    for (const e of events.filter((e) => e.kind !== 'burst')) expect(e.atMs).toBeLessThan(0.85 * 3 * MINUTE);
    // No agent is killed while the coordinator is down.
    const coordinator = kinds('kill-coordinator')[0]!.atMs;
    for (const e of kinds('kill-agent')) expect(Math.abs(e.atMs - coordinator)).toBeGreaterThanOrEqual(10_000);
  });

  it('takes upstream away for two minutes and kills an agent every four in a 20-minute soak', () => {
    const events = soakEvents(20 * MINUTE);
    expect(events.find((e) => e.kind === 'outage')).toMatchObject({ forMs: 2 * MINUTE });
    expect(events.filter((e) => e.kind === 'kill-agent').map((e) => e.atMs / MINUTE)).toEqual([2, 6, 10, 14]);
    expect(events.map((e) => e.atMs)).toEqual([...events.map((e) => e.atMs)].sort((a, b) => a - b));
  });
});

/** A process sampled every 2 s for `seconds`, its RSS and descriptors given by the second. */
function incarnation(seconds: number, rss: (s: number) => number, fds: (s: number) => number = () => 30): Incarnation {
  const samples = [];
  for (let s = 0; s <= seconds; s += 2) samples.push({ at: s * 1000, rssBytes: rss(s), hwmBytes: rss(s), fds: fds(s) });
  return { role: 'coordinator', pid: 1, startedAt: 0, samples };
}

describe('judgeFlatness', () => {
  const rule = { warmupMs: MINUTE, windDownMs: 30_000, minJudgedMs: MINUTE, maxRatio: 1.2 };

  it('passes memory that settles after its warm-up', () => {
    const verdict = judgeFlatness(
      incarnation(600, (s) => (s < 60 ? s * MiB : 150 * MiB + (s % 10) * MiB)),
      rule,
      600_000,
    );
    expect(verdict.flat).toBe(true);
    expect(verdict.rss!.ratio).toBeLessThan(1.1);
  });

  it('fails memory that keeps growing, and descriptors that pile up', () => {
    expect(
      judgeFlatness(
        incarnation(600, (s) => 100 * MiB + s * 100 * 1024),
        rule,
        600_000,
      ),
    ).toMatchObject({ flat: false });
    const leak = judgeFlatness(
      incarnation(
        600,
        () => 150 * MiB,
        (s) => 30 + Math.floor(s / 20),
      ),
      rule,
      600_000,
    );
    expect(leak.flat).toBe(false);
    expect(leak.fds!.lastThird).toBeGreaterThan(leak.fds!.firstThird);
  });

  it('passes descriptors that spike while many pieces are in motion, and leaves out the wind-down', () => {
    const verdict = judgeFlatness(
      incarnation(
        600,
        () => 150 * MiB,
        (s) => (s > 580 || (s > 500 && s < 520) ? 100 : 36),
      ),
      rule,
      600_000,
    );
    expect(verdict.flat).toBe(true);
    // The spike at 500–520 s counts in the highest figure; the wind-down's at 580 s in none.
    expect(verdict.fdsMax!.lastThird).toBe(100);
    expect(verdict.fds!.lastThird).toBe(36);
  });

  it('does not judge a process that lived too short, and says so', () => {
    expect(
      judgeFlatness(
        incarnation(140, () => 150 * MiB),
        rule,
        140_000,
      ),
    ).toMatchObject({ flat: true, skipped: expect.stringContaining('under 60 s') });
  });
});
