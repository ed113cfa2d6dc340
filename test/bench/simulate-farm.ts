/**
 * `pnpm bench:simulate` (root): the real FarmScheduler driven in simulated time by
 * packages/coordinator/src/schedule/farm-simulator.ts, at sizes no machine here can run for real.
 *
 * - A release-sized plan: 190 components × 9 releases (about 3,000 unique blobs: base layers shared
 *   by every image, a runtime layer per component that changes every third release, an application
 *   layer that changes in 40% of releases, a config per image, and six blobs of 2–6 GiB), split into
 *   the farm's 16 MiB pieces by the real planner.
 * - 100 agents with upstream rates drawn log-normal (median 50 Mbit/s, σ 0.8, 5 Mbit/s to 1 Gbit/s),
 *   20 slots each, 100 ms to a registry's first byte; a writer at 10 Gbit/s and at 1 Gbit/s; with
 *   and without agents failing (ten die or go silent during the run, seven of them come back 20–90 s
 *   later, one more sends wrong bytes); and once with the registry capping the farm at 4 Gbit/s.
 * - The scheduler's CPU time per `decide()` for farms of 10, 25, 50 and 100 agents over plans of
 *   1,000 to 8,000 pieces.
 *
 * Seeded (BENCH_SEED, default 23): the same seed gives the same farm, plan and outcome. Prints each
 * run against its lower bound and the verdict per target: completion within 1.15× the bound,
 * upstream bytes within 1.01× unique without failures, scheduling cost per decision no worse than
 * linear in agents × pieces.
 */
import { createHash } from 'node:crypto';
import type { Digest, RepositoryLocation } from '@meshmirror/shared';
import { formatBytes } from '@meshmirror/shared';
import { planMesh, type MeshSplit } from '../../packages/coordinator/src/plan/mesh-plan.ts';
import type { MirrorPlan, PlanBlob } from '../../packages/coordinator/src/plan/plan.ts';
import { farmLowerBound, simulateFarm, type FarmSimulationResult, type SimulatedAgent } from '../../packages/coordinator/src/schedule/farm-simulator.ts';

const MB = 1_000_000;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const Mbit = 125_000;
const Gbit = 1_000 * Mbit;
/** The CLI's DEFAULT_FARM_PIECE_SIZE (a farm splits blobs into 16 MiB pieces). */
const PIECE_SIZE = 16 * MiB;
const seed = Number(process.env['BENCH_SEED'] ?? 23);
const COMPLETION_TARGET = 1.15;
const UPSTREAM_TARGET = 1.01;

/** mulberry32: a small seeded PRNG, so every run of the bench sees the same farm. */
function random(seedValue: number): () => number {
  let a = seedValue >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function logNormal(rand: () => number, median: number, sigma: number): number {
  const normal = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return median * Math.exp(sigma * normal);
}

const clamp = (x: number, low: number, high: number): number => Math.min(high, Math.max(low, x));

function farmOf(count: number, rand: () => number): SimulatedAgent[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `agent-${String(i + 1).padStart(3, '0')}`,
    rate: clamp(logNormal(rand, 50 * Mbit, 0.8), 5 * Mbit, Gbit),
  }));
}

const source: RepositoryLocation = { registry: 'quay.io', repository: 'openshift-release-dev/ocp-v4.0-art-dev' };

const digestOf = (name: string): Digest => `sha256:${createHash('sha256').update(name).digest('hex')}`;

/** 190 components × 9 releases, as described at the top. */
function releasePlan(rand: () => number): MirrorPlan {
  const blobs = new Map<Digest, PlanBlob>();
  const add = (name: string, size: number): void => {
    const digest = digestOf(name);
    blobs.set(digest, { digest, size: Math.round(size), sources: [source], images: [] });
  };
  for (let generation = 0; generation < 3; generation++) {
    add(`base-os-${generation}`, logNormal(rand, 80 * MB, 0.2));
    add(`base-tools-${generation}`, logNormal(rand, 25 * MB, 0.3));
  }
  for (let c = 0; c < 190; c++) {
    const big = c < 2;
    for (let version = 0; version < 3; version++) add(`c${c}-runtime-${version}`, clamp(logNormal(rand, 40 * MB, 0.8), MB, 2 * GiB));
    for (let release = 0; release < 9; release++) {
      if (big ? release % 3 === 0 : release === 0 || rand() < 0.4) {
        add(`c${c}-app-${release}`, big ? (2 + 4 * rand()) * GiB : clamp(logNormal(rand, 12 * MB, 1.2), 100_000, 1.5 * GiB));
      }
      add(`c${c}-config-${release}`, clamp(logNormal(rand, 8_000, 0.5), 1_000, 100_000));
    }
  }
  const uniqueBytes = [...blobs.values()].reduce((sum, b) => sum + b.size, 0);
  return { images: [], blobs, uniqueBytes };
}

/** `count` blobs of one piece each (log-normal sizes up to the piece size): a plan of exactly `count` pieces. */
function piecesPlan(count: number, rand: () => number): MirrorPlan {
  const blobs = new Map<Digest, PlanBlob>();
  for (let i = 0; i < count; i++) {
    const digest = digestOf(`piece-${count}-${i}`);
    blobs.set(digest, { digest, size: Math.round(clamp(logNormal(rand, 4 * MiB, 1), 10_000, PIECE_SIZE)), sources: [source], images: [] });
  }
  return { images: [], blobs, uniqueBytes: [...blobs.values()].reduce((sum, b) => sum + b.size, 0) };
}

const splitOf = (plan: MirrorPlan): MeshSplit => planMesh(plan, [], new Map(), PIECE_SIZE);

/** Ten agents go away between 10% and 60% of the bound (half die, half go silent), seven come back 20–90 s later; one more sends wrong bytes. */
function withFailures(agents: SimulatedAgent[], boundMs: number, rand: () => number): SimulatedAgent[] {
  const out = agents.map((a) => ({ ...a }));
  const picked = new Set<number>();
  while (picked.size < 11) picked.add(Math.floor(rand() * out.length));
  [...picked].forEach((index, i) => {
    const agent = out[index]!;
    if (i === 10) {
      agent.wrongPieces = Number.POSITIVE_INFINITY;
      return;
    }
    const at = Math.round(boundMs * (0.1 + 0.5 * rand()));
    const back = i < 7 ? { back: at + Math.round(20_000 + 70_000 * rand()) } : {};
    agent.outages = [{ at, how: i % 2 === 0 ? 'dies' : 'silent', ...back }];
  });
  return out;
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

const seconds = (ms: number): string => `${(ms / 1_000).toFixed(1)} s`;
const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
const boundBy = (r: FarmSimulationResult): string => {
  const { upstreamMs, writerMs, pieceMs } = r.bound;
  return r.bound.ms === upstreamMs ? 'upstream' : r.bound.ms === writerMs ? 'writer' : r.bound.ms === pieceMs ? 'one piece' : '?';
};

const started = performance.now();
const plan = releasePlan(random(seed));
const agents = farmOf(100, random(seed + 1));
const firstSplit = splitOf(plan);
const combined = agents.reduce((sum, a) => sum + a.rate, 0);
const largest = Math.max(...[...plan.blobs.values()].map((b) => b.size));
console.log(
  `bench:simulate: seed ${seed}; plan: ${plan.blobs.size} unique blobs, ${formatBytes(plan.uniqueBytes)}, ${firstSplit.pieces.length} pieces of at most ${formatBytes(PIECE_SIZE)}, largest blob ${formatBytes(largest)}`,
);
const sortedRates = agents.map((a) => a.rate).sort((x, y) => x - y);
console.log(
  `bench:simulate: 100 agents, ${(combined / Gbit).toFixed(2)} Gbit/s together; slowest ${(sortedRates[0]! / Mbit).toFixed(1)}, median ${(sortedRates[50]! / Mbit).toFixed(1)}, fastest ${(sortedRates.at(-1)! / Mbit).toFixed(1)} Mbit/s`,
);

interface Case {
  label: string;
  writerRate: number;
  failures: boolean;
  registryRate?: number;
}
const cases: Case[] = [
  { label: 'writer 10 Gbit/s', writerRate: 10 * Gbit, failures: false },
  { label: 'writer 1 Gbit/s', writerRate: Gbit, failures: false },
  { label: 'writer 10 Gbit/s, failures', writerRate: 10 * Gbit, failures: true },
  { label: 'writer 1 Gbit/s, failures', writerRate: Gbit, failures: true },
  { label: 'writer 10 Gbit/s, registry 4 Gbit/s', writerRate: 10 * Gbit, failures: false, registryRate: 4 * Gbit },
];
const results: Array<{ c: Case; r: FarmSimulationResult; wallMs: number }> = [];
for (const c of cases) {
  const base = { writerRate: c.writerRate, upstreamLatencyMs: 100, lanLatencyMs: 1, ...(c.registryRate === undefined ? {} : { registryRate: c.registryRate }) };
  const farm = c.failures ? withFailures(agents, farmLowerBound({ ...base, split: firstSplit, agents }).ms, random(seed + 2)) : agents;
  const t0 = performance.now();
  const r = simulateFarm({ ...base, split: splitOf(plan), agents: farm });
  results.push({ c, r, wallMs: performance.now() - t0 });
}

console.log('');
console.log('Release-sized plan, 100 agents (completion against the lower bound: the farm that is up, the writer, one piece)');
table([
  [
    'run',
    'completion',
    'lower bound',
    'bound by',
    'ratio',
    'upstream / unique',
    'endgame copies',
    'lost / back / distrusted',
    'failed blobs',
    'decides',
    'CPU per decide',
    'wall',
  ],
  ...results.map(({ c, r, wallMs }) => [
    c.label,
    seconds(r.completionMs),
    seconds(r.bound.ms),
    boundBy(r),
    (r.completionMs / r.bound.ms).toFixed(3),
    (r.upstreamBytes / r.uniqueBytes).toFixed(4),
    String(r.endgameFetches),
    `${r.agents.filter((a) => a.report.lost !== undefined).length} / ${r.agents.filter((a) => (a.report.readmitted ?? 0) > 0).length} / ${r.agents.filter((a) => a.report.distrusted !== undefined).length}`,
    String(r.failedBlobs.size),
    String(r.cost.decides),
    `${((r.cost.decideCpuMs / r.cost.decides) * 1_000).toFixed(0)} µs`,
    seconds(wallMs),
  ]),
]);

// Scheduling cost: farms of 10–100 agents over plans of 1,000–8,000 pieces.
const farmSizes = [10, 25, 50, 100];
const pieceCounts = [1_000, 2_000, 4_000, 8_000];
const costs: Array<{ agents: number; pieces: number; perDecideUs: number; decides: number; cpuMs: number; simulatedMs: number }> = [];
for (const pieces of pieceCounts) {
  const piecePlan = piecesPlan(pieces, random(seed + pieces));
  for (const count of farmSizes) {
    const r = simulateFarm({ split: splitOf(piecePlan), agents: agents.slice(0, count), writerRate: 10 * Gbit, upstreamLatencyMs: 100, lanLatencyMs: 1 });
    if (!r.finished || r.failedBlobs.size > 0) throw new Error(`the ${count}-agent run over ${pieces} pieces did not finish`);
    costs.push({
      agents: count,
      pieces,
      perDecideUs: (r.cost.decideCpuMs / r.cost.decides) * 1_000,
      decides: r.cost.decides,
      cpuMs: r.cost.decideCpuMs,
      simulatedMs: r.completionMs,
    });
  }
}
console.log('');
console.log('Scheduler CPU per decide() (µs), by agents (columns) and pieces (rows); in brackets, per agent × 1,000 pieces');
table([
  ['pieces', ...farmSizes.map((n) => `${n} agents`)],
  ...pieceCounts.map((pieces) => [
    String(pieces),
    ...farmSizes.map((n) => {
      const c = costs.find((x) => x.agents === n && x.pieces === pieces)!;
      return `${c.perDecideUs.toFixed(1)} (${((c.perDecideUs / (n * pieces)) * 1_000).toFixed(2)})`;
    }),
  ]),
]);
console.log('');
console.log('Scheduler CPU over a whole run against its simulated time');
table([
  ['pieces', ...farmSizes.map((n) => `${n} agents`)],
  ...pieceCounts.map((pieces) => [
    String(pieces),
    ...farmSizes.map((n) => {
      const c = costs.find((x) => x.agents === n && x.pieces === pieces)!;
      return `${(c.cpuMs / 1_000).toFixed(2)} s / ${seconds(c.simulatedMs)} (${c.decides})`;
    }),
  ]),
]);

// Least squares of log(cost per decide) on log(agents × pieces): 1 is linear.
const xs = costs.map((c) => Math.log(c.agents * c.pieces));
const ys = costs.map((c) => Math.log(c.perDecideUs));
const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const mx = mean(xs);
const my = mean(ys);
const slope = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0);
const worstGrowth = Math.max(
  ...costs.map((c) => {
    const smallest = costs[0]!;
    return c.perDecideUs / smallest.perDecideUs / ((c.agents * c.pieces) / (smallest.agents * smallest.pieces));
  }),
);

console.log('');
const completionOk = results.every(({ r }) => r.completionMs <= COMPLETION_TARGET * r.bound.ms);
const clean = results.filter(({ c }) => !c.failures);
const upstreamOk = clean.every(({ r }) => r.upstreamBytes <= UPSTREAM_TARGET * r.uniqueBytes);
const worstCompletion = Math.max(...results.map(({ r }) => r.completionMs / r.bound.ms));
const worstUpstream = Math.max(...clean.map(({ r }) => r.upstreamBytes / r.uniqueBytes));
console.log(`completion / lower bound, worst run: ${worstCompletion.toFixed(3)} (target <= ${COMPLETION_TARGET}: ${verdict(completionOk)})`);
console.log(`upstream / unique without failures, worst run: ${worstUpstream.toFixed(4)} (target <= ${UPSTREAM_TARGET}: ${verdict(upstreamOk)})`);
console.log(
  `scheduling cost per decide against agents × pieces: slope ${slope.toFixed(2)} on log-log, worst growth ${worstGrowth.toFixed(2)}× of linear from the smallest case (target: no worse than linear: ${verdict(slope <= 1 && worstGrowth <= 1.5)})`,
);
console.log(`bench:simulate: ${seconds(performance.now() - started)} in all`);
