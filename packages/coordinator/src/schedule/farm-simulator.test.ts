import { describe, expect, it } from 'vitest';
import { planMesh } from '../plan/mesh-plan.ts';
import { planOf } from '../plan/plan-fixture.ts';
import { DISTRUST_AFTER_WRONG_PIECES } from './farm-scheduler.ts';
import { farmLowerBound, simulateFarm, type FarmSimulationOptions, type SimulatedAgent } from './farm-simulator.ts';

const MB = 1_000_000;
const MiB = 1024 * 1024;
const PIECE = 16 * MiB;

/** A fresh farm-wide plan (nothing held anywhere) of blobs of these sizes, in 16 MiB pieces. */
function splitOf(sizes: number[]) {
  return planMesh(planOf(sizes), [], new Map(), PIECE);
}

function agents(rates: number[], extra: Partial<SimulatedAgent> = {}): SimulatedAgent[] {
  return rates.map((rate, i) => ({ name: `agent-${i + 1}`, rate, ...extra }));
}

function simulate(options: Omit<FarmSimulationOptions, 'writerRate'> & { writerRate?: number }) {
  const result = simulateFarm({ writerRate: 1_000 * MB, ...options });
  // Every run ends on its own, with every blob whole in the writer.
  expect(result.finished).toBe(true);
  expect([...result.failedBlobs]).toEqual([]);
  expect(result.completedBlobs).toBe(result.blobs);
  // Every byte came from upstream at least once, and reached the writer.
  expect(result.upstreamBytes).toBeGreaterThan(result.uniqueBytes - 1);
  expect(result.lanBytes).toBeGreaterThan(result.uniqueBytes - 1);
  return result;
}

const extraUpstream = (r: { upstreamBytes: number; uniqueBytes: number }): number => r.upstreamBytes - r.uniqueBytes;

describe('simulateFarm', () => {
  it('equal agents finish near the lower bound and fetch each byte once', () => {
    const sizes = [3_000 * MB, 900 * MB, ...Array.from({ length: 60 }, (_, i) => ((i % 7) + 1) * 5 * MB)];
    const r = simulate({ split: splitOf(sizes), agents: agents([10 * MB, 10 * MB, 10 * MB, 10 * MB]) });
    const unique = sizes.reduce((a, b) => a + b, 0);
    expect(r.uniqueBytes).toBe(unique);
    // Four agents at 10 MB/s: the upstream links set the bound.
    expect(r.bound.upstreamMs).toBeCloseTo((unique / (40 * MB)) * 1_000, 6);
    expect(r.bound.ms).toBe(r.bound.upstreamMs);
    expect(r.completionMs).toBeGreaterThanOrEqual(r.bound.ms);
    expect(r.completionMs / r.bound.ms).toBeLessThan(1.1);
    expect(r.upstreamBytes / r.uniqueBytes).toBeLessThanOrEqual(1.01);
    // Every byte reached the writer once.
    expect(r.lanBytes).toBeCloseTo(unique, 0);
    expect(r.cost.decides).toBeGreaterThan(0);
  });

  it('a writer slower than the farm sets the pace, and the run ends near its bound', () => {
    const sizes = Array.from({ length: 40 }, (_, i) => ((i % 5) + 1) * 8 * MB);
    const r = simulate({ split: splitOf(sizes), agents: agents([20 * MB, 20 * MB, 20 * MB, 20 * MB]), writerRate: 25 * MB });
    expect(r.bound.ms).toBe(r.bound.writerMs);
    expect(r.completionMs / r.bound.ms).toBeLessThan(1.05);
    expect(r.upstreamBytes / r.uniqueBytes).toBeLessThanOrEqual(1.01);
  });

  it('a slow agent gets less, and the farm still ends near its bound', () => {
    const sizes = Array.from({ length: 80 }, (_, i) => ((i % 4) + 1) * 6 * MB);
    const r = simulate({ split: splitOf(sizes), agents: agents([10 * MB, 10 * MB, 10 * MB, MB]) });
    const slow = r.agents.find((a) => a.name === 'agent-4')!;
    const fast = r.agents.filter((a) => a.name !== 'agent-4');
    for (const a of fast) expect(slow.upstreamBytes).toBeLessThan(a.upstreamBytes / 4);
    expect(r.completionMs / r.bound.ms).toBeLessThan(1.15);
    expect(r.upstreamBytes / r.uniqueBytes).toBeLessThanOrEqual(1.01);
  });

  it('the endgame: idle fast agents duplicate the pieces of crawling agents, at the cost of the partial copies of the crawlers', () => {
    const sizes = Array.from({ length: 40 }, () => PIECE);
    const r = simulate({
      split: splitOf(sizes),
      agents: [...agents([20 * MB, 20 * MB, 20 * MB]), { name: 'crawl-1', rate: 0.5 * MB }, { name: 'crawl-2', rate: 0.4 * MB }],
    });
    const crawlers = r.agents.filter((a) => a.name.startsWith('crawl'));
    // Before their rates were known each crawler was given its first window, two pieces (a quarter of
    // an even share of 640 MiB over five agents is 32 MiB); each came in first from a fast agent, and
    // the crawlers' fetches were cancelled.
    expect(r.endgameFetches).toBe(4);
    for (const c of crawlers) expect(c.report.piecesFetched).toBe(0);
    expect(extraUpstream(r)).toBeCloseTo(
      crawlers.reduce((sum, c) => sum + c.upstreamBytes, 0),
      0,
    );
    expect(r.completionMs / r.bound.ms).toBeLessThan(1.1);
  });

  it('an agent lost mid-piece costs only the bytes it had not forwarded to the writer', () => {
    const sizes = Array.from({ length: 24 }, () => PIECE);
    const farm = (streams: boolean) =>
      simulate({
        split: splitOf(sizes),
        agents: [...agents([8 * MB, 8 * MB]), { name: 'victim', rate: 8 * MB, outages: [{ at: 7_000, how: 'dies' }] }],
        streams,
      });
    // What it cost: the bytes it received that never reached the writer (a broken pull's kept bytes count as served).
    const unforwarded = (r: ReturnType<typeof farm>): number => {
      const victim = r.agents.find((a) => a.name === 'victim')!;
      expect(victim.report.lost).toMatch(/MM_AGENT_LOST/);
      return victim.upstreamBytes - victim.report.servedBytes;
    };
    // The writer kept up with each piece as it arrived: nothing is fetched twice.
    const streaming = farm(true);
    expect(unforwarded(streaming)).toBeLessThan(1);
    expect(extraUpstream(streaming)).toBeLessThan(1);
    // Pulled only once fetched, the pieces it had in flight are fetched again, and nothing else.
    const afterwards = farm(false);
    expect(unforwarded(afterwards)).toBeGreaterThan(MiB);
    expect(extraUpstream(afterwards)).toBeCloseTo(unforwarded(afterwards), 0);
  });

  it('an agent that goes silent is noticed, and one that comes back is readmitted and given work', () => {
    const sizes = Array.from({ length: 40 }, () => PIECE);
    const run = (back?: number) =>
      simulate({
        split: splitOf(sizes),
        agents: [...agents([10 * MB, 10 * MB]), { name: 'away', rate: 10 * MB, outages: [{ at: 3_000, how: 'silent', ...(back === undefined ? {} : { back }) }] }],
      });
    const gone = run();
    expect(gone.agents.find((a) => a.name === 'away')!.report.lost).toMatch(/stopped answering/);
    const returned = run(12_000);
    const away = returned.agents.find((a) => a.name === 'away')!;
    expect(away.report.readmitted).toBe(1);
    expect(away.report.lost).toBeUndefined();
    // It fetched more after its return than it had before it went away.
    const before = gone.agents.find((a) => a.name === 'away')!.upstreamBytes;
    expect(away.upstreamBytes).toBeGreaterThan(before + 4 * PIECE);
    expect(returned.completionMs).toBeLessThan(gone.completionMs);
  });

  it('wrong bytes: each piece is fetched again elsewhere, and the agent is distrusted after three', () => {
    const sizes = Array.from({ length: 30 }, () => 8 * MB);
    const r = simulate({ split: splitOf(sizes), agents: [...agents([10 * MB, 10 * MB]), { name: 'liar', rate: 10 * MB, wrongPieces: Number.POSITIVE_INFINITY }] });
    const liar = r.agents.find((a) => a.name === 'liar')!;
    // Distrusted at the third; pulls from it already under way end wrong too.
    expect(liar.report.wrongPieces).toBeGreaterThanOrEqual(DISTRUST_AFTER_WRONG_PIECES);
    expect(liar.report.distrusted).toBe(`sent wrong bytes for ${DISTRUST_AFTER_WRONG_PIECES} pieces`);
    expect(liar.report.readmitted).toBeUndefined();
    // Its three wrong pieces came again from upstream, and no more than the pieces it held or had in flight.
    expect(extraUpstream(r)).toBeGreaterThan(DISTRUST_AFTER_WRONG_PIECES * 8 * MB - 1);
    expect(extraUpstream(r)).toBeLessThanOrEqual(liar.upstreamBytes);
  });

  it('fetches no more than 1% twice without failures, over skewed agents, a registry cap and request latency', () => {
    const sizes = [2_000 * MB, ...Array.from({ length: 150 }, (_, i) => (((i * 37) % 50) + 1) * MB), ...Array.from({ length: 50 }, () => 20_000)];
    const rates = [40, 25, 12, 12, 8, 5, 3, 1].map((r) => r * MB);
    const options = { split: splitOf(sizes), agents: agents(rates), registryRate: 80 * MB, upstreamLatencyMs: 100, lanLatencyMs: 1 };
    const r = simulate(options);
    expect(r.upstreamBytes / r.uniqueBytes).toBeLessThanOrEqual(1.01);
    expect(r.bound).toEqual(farmLowerBound({ ...options, split: splitOf(sizes), writerRate: 1_000 * MB }));
    expect(r.bound.ms).toBe(r.bound.upstreamMs); // the registry's 80 MB/s, below the agents' 106
    expect(r.completionMs / r.bound.ms).toBeLessThan(1.15);
  });
});
