/**
 * A farm in simulated time around the real `FarmScheduler`: agents whose upstream links have given
 * rates, a registry that may cap what the whole farm gets, and a writer whose LAN rate all its pulls
 * share. The scheduler is driven as `meshFetch` drives it (the same calls in the same order), so what
 * a simulation shows is what the farm would decide; bytes move as fluid flows, each link shared
 * evenly by what crosses it (max-min fair), so a run of an hour takes seconds and nothing sleeps.
 *
 * Outside the scheduler, mesh-fetch and the agents time a few things themselves; this file mirrors
 * them with the same constants: the 1 s tick (endgame; lost agents asked every 2 s whether they are
 * back, three seconds to answer), a holder asked whether it is there when a pull from it broke off,
 * a live pull stopped when its fetch ends without a copy, each agent's progress every 250 ms, an
 * agent given up after 5 s without a heartbeat, a pull from a peer given up after 10 s without bytes.
 *
 * Not modelled: retries against the registry, request latency beyond a fixed delay per request,
 * TCP slow start, agents' own LAN links (only the writer's is shared), the time the writer takes to
 * assemble and hash a blob, and an outage shorter than the time it takes to notice: a flow caught by
 * an outage fails as it would had the agent stayed away.
 */
import type { Digest, Logger } from '@meshmirror/shared';
import type { MeshPiece, MeshSplit } from '../plan/mesh-plan.ts';
import { FarmScheduler, type AgentReport, type Decision } from './farm-scheduler.ts';

/** An agent goes away at `at` (ms from the start) and, with `back`, answers again then with its store as it was. */
export interface SimulatedOutage {
  at: number;
  /**
   * `dies`: its process ends and its connections reset, so the coordinator hears at once;
   * `silent`: it stops answering (a hung host, a cut cable), noticed when heartbeats are missed.
   */
  how: 'dies' | 'silent';
  back?: number;
}

export interface SimulatedAgent {
  name: string;
  /** Bytes per second of its link to the upstream registry. */
  rate: number;
  /** Pieces it fetches at once (a farm's `--parallel-images` × `--parallel-layers`: 20 by default). */
  slots?: number;
  outages?: SimulatedOutage[];
  /** Its first this many copies do not match the hash it reported for them (Infinity: all of them). */
  wrongPieces?: number;
}

export interface FarmSimulationOptions {
  /** The plan as `planMesh` builds it; the scheduler marks its pieces, so a split serves one simulation. */
  split: MeshSplit;
  agents: SimulatedAgent[];
  /** Bytes per second the writer takes in from the agents, shared by all its pulls. */
  writerRate: number;
  /** Bytes per second the upstream registry serves the whole farm. Default: no cap. */
  registryRate?: number;
  /** Delay before a fetch's first byte (request and registry response), ms. Default 0. */
  upstreamLatencyMs?: number;
  /** Delay before a pull's first byte, ms. Default 0. */
  lanLatencyMs?: number;
  /** The writer pulls each piece while it is fetched (mesh-fetch with a writer that has `pullLive`). Default true. */
  streams?: boolean;
  /** As in `FarmSchedulerOptions`. */
  parallelPulls?: number;
  maxAttempts?: number;
  /** A run still going at this simulated time is stopped and reported unfinished. Default: 20× the lower bound plus ten minutes. */
  limitMs?: number;
  logger?: Logger;
}

/** The fastest any farm could do it, and which limit sets it. */
export interface FarmLowerBound {
  ms: number;
  /** Bytes nobody holds over the farm's upstream rate (the agents that are up, capped by the registry). */
  upstreamMs: number;
  /** Every byte the writer lacks over the writer's LAN rate. */
  writerMs: number;
  /** The longest piece over the fastest agent's rate: one agent fetches a piece. */
  pieceMs: number;
}

/** What the scheduler cost the coordinator, measured around the real calls. */
export interface SchedulerCost {
  /** `decide()` calls, and the decisions they returned. */
  decides: number;
  decisions: number;
  /** CPU time (user and system) and wall time inside `decide()`. */
  decideCpuMs: number;
  decideWallMs: number;
  maxDecideWallMs: number;
  /** Every scheduler call (events, progress and decide), wall time. */
  calls: number;
  callsWallMs: number;
}

export interface FarmSimulationResult {
  /** Simulated ms until the fetch was over (nothing in flight), or until `limitMs`. */
  completionMs: number;
  finished: boolean;
  bound: FarmLowerBound;
  /** Bytes nobody held: each must cross the upstream links once. */
  uniqueBytes: number;
  /** Bytes that did cross them (duplicates from the endgame and from lost agents included). */
  upstreamBytes: number;
  /** Bytes that crossed the writer's LAN link (pulls that failed included). */
  lanBytes: number;
  endgameFetches: number;
  blobs: number;
  completedBlobs: number;
  failedBlobs: Map<Digest, { code: string; message: string }>;
  agents: Array<{ name: string; rate: number; upstreamBytes: number; report: AgentReport }>;
  cost: SchedulerCost;
}

// As in mesh-fetch.ts (not exported there).
const TICK_MS = 1_000;
const BROKEN_OFF = new Set(['MM_STALL', 'MM_NETWORK', 'MM_TRUNCATED', 'MM_AGENT_LOST']);
const PROBE_EVERY_MS = 2_000;
const PROBE_TIMEOUT_MS = 3_000;
/** The agent's DEFAULT_PROGRESS_INTERVAL_MS. */
const PROGRESS_EVERY_MS = 250;
/** The control protocol's DEFAULT_LOST_AFTER_MS: five missed heartbeats. */
const LOST_AFTER_MS = 5_000;
/** The CLI's PEER_PULL_STALL_MS. */
const PEER_STALL_MS = 10_000;
/** A question answered, or refused, on the farm's LAN. */
const LAN_ANSWER_MS = 1;
const DEFAULT_SLOTS = 20;
/** Flows closer than this to their end are at it (float error over GiB of bytes). */
const EPS_MS = 1e-6;
const EPS_BYTES = 1e-3;

export function simulateFarm(options: FarmSimulationOptions): FarmSimulationResult {
  return new FarmSimulation(options).run();
}

/**
 * The lower bound of a run: unique bytes over the rate of the agents that are up (integrated over
 * their outages), all bytes over the writer's rate, the longest piece over the fastest agent.
 */
export function farmLowerBound(options: Pick<FarmSimulationOptions, 'split' | 'agents' | 'writerRate' | 'registryRate'>): FarmLowerBound {
  const cap = options.registryRate ?? Number.POSITIVE_INFINITY;
  const times = [0, ...options.agents.flatMap((a) => (a.outages ?? []).flatMap((o) => (o.back === undefined ? [o.at] : [o.at, o.back])))];
  const edges = [...new Set(times)].sort((x, y) => x - y);
  const upAt = (t: number): number =>
    options.agents.filter((a) => !(a.outages ?? []).some((o) => o.at <= t && t < (o.back ?? Number.POSITIVE_INFINITY))).reduce((sum, a) => sum + a.rate, 0);
  let left = options.split.missingBytes;
  let upstreamMs = left > 0 ? Number.POSITIVE_INFINITY : 0;
  for (let i = 0; i < edges.length && left > 0; i++) {
    const start = edges[i]!;
    const end = edges[i + 1] ?? Number.POSITIVE_INFINITY;
    const rate = Math.min(cap, upAt(start)) / 1_000;
    if (rate > 0 && left <= rate * (end - start)) {
      upstreamMs = start + left / rate;
      left = 0;
    } else if (rate > 0) left -= rate * (end - start);
  }
  const writerBytes = options.split.pieces.reduce((sum, p) => sum + p.task.length, 0);
  const fastest = Math.min(
    cap,
    options.agents.reduce((max, a) => Math.max(max, a.rate), 0),
  );
  const longest = options.split.pieces.reduce((max, p) => (p.holders.size === 0 ? Math.max(max, p.task.length) : max), 0);
  const bound = {
    upstreamMs,
    writerMs: (writerBytes / options.writerRate) * 1_000,
    pieceMs: longest === 0 ? 0 : (longest / fastest) * 1_000,
  };
  return { ms: Math.max(bound.upstreamMs, bound.writerMs, bound.pieceMs), ...bound };
}

type AgentState = 'up' | 'dead' | 'silent';
type Failure = { code: string; message: string };

interface SimAgent {
  spec: SimulatedAgent;
  /** Bytes per ms. */
  rate: number;
  state: AgentState;
  /** Copies it holds, by piece key: whether their bytes are wrong. */
  store: Map<string, boolean>;
  wrongCopies: number;
  upstreamBytes: number;
  /** Its fetches moving bytes now (set with the rates). */
  movingFetches: number;
  fetches: Set<Fetch>;
  pulls: Set<Pull>;
}

/** An agent's fetch of a piece (or of the piece's rest, from `from`) from upstream. */
interface Fetch {
  agent: SimAgent;
  key: string;
  piece: MeshPiece;
  /** Where its copy starts in the piece, and the bytes of it the agent had from an earlier run. */
  from: number;
  resumed: number;
  goal: number;
  received: number;
  /** Received bytes not yet reported to the coordinator. */
  unreported: number;
  /** When its first byte comes (request latency), and whether that time has come. */
  startsAt: number;
  started: boolean;
  /** Moving bytes (or about to): one of the flows the links are shared by. */
  moving: boolean;
  rate: number;
  eta: number;
  /** Every byte is in and its hash reported; the copy is wrong if the agent sends wrong bytes. */
  done: boolean;
  wrong: boolean;
  ended: boolean;
}

/** The writer's pull of a piece from a holder, from what the writer already has. */
interface Pull {
  holder: SimAgent;
  key: string;
  piece: MeshPiece;
  /** The fetch it follows (a live pull). */
  live: Fetch | undefined;
  start: number;
  pos: number;
  startsAt: number;
  started: boolean;
  rate: number;
  eta: number;
  ended: boolean;
}

interface Timed {
  at: number;
  seq: number;
  run: () => void;
}

/** Timed events, earliest first; equal times in the order they were scheduled. */
class EventQueue {
  readonly #heap: Timed[] = [];
  #seq = 0;

  get nextAt(): number {
    return this.#heap[0]?.at ?? Number.POSITIVE_INFINITY;
  }

  push(at: number, run: () => void): void {
    const heap = this.#heap;
    heap.push({ at, seq: this.#seq++, run });
    for (let i = heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  pop(): Timed | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    heap[0] = last;
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < heap.length && before(heap[l]!, heap[least]!)) least = l;
      if (r < heap.length && before(heap[r]!, heap[least]!)) least = r;
      if (least === i) break;
      [heap[i], heap[least]] = [heap[least]!, heap[i]!];
      i = least;
    }
    return top;
  }
}

function before(x: Timed, y: Timed): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

const fetchId = (agent: string, key: string): string => `${agent}\n${key}`;

class FarmSimulation {
  readonly #o: FarmSimulationOptions;
  readonly #scheduler: FarmScheduler;
  readonly #bound: FarmLowerBound;
  readonly #limitMs: number;
  #now = 0;
  readonly #events = new EventQueue();
  readonly #agents = new Map<string, SimAgent>();
  readonly #pieces = new Map<string, MeshPiece>();
  /** As mesh-fetch keeps them: running fetches and live pulls by agent and piece. */
  readonly #fetches = new Map<string, Fetch>();
  readonly #livePulls = new Map<string, Pull>();
  /** Flows moving bytes (or about to), whose rates the links set. */
  readonly #movingFetches = new Set<Fetch>();
  readonly #movingPulls = new Set<Pull>();
  /** Whether flows started or stopped since rates were last set, and the earliest edge of a flow then. */
  #dirty = true;
  #nextFlowAt = Number.POSITIVE_INFINITY;
  /** Bytes of each piece the writer holds from its start. */
  readonly #writerHas = new Map<string, number>();
  /** Fetches, pulls and holder checks not yet settled: the run is over when none is left (mesh-fetch's `pending`). */
  #pending = 0;
  readonly #checking = new Set<string>();
  readonly #probes = new Map<string, { at: number; out: boolean }>();
  #upstreamBytes = 0;
  #lanBytes = 0;
  #endgameFetches = 0;
  #completedBlobs = 0;
  readonly #cost: SchedulerCost = { decides: 0, decisions: 0, decideCpuMs: 0, decideWallMs: 0, maxDecideWallMs: 0, calls: 0, callsWallMs: 0 };

  constructor(options: FarmSimulationOptions) {
    this.#o = options;
    this.#bound = farmLowerBound(options);
    this.#limitMs = options.limitMs ?? 20 * this.#bound.ms + 600_000;
    for (const spec of options.agents) {
      this.#agents.set(spec.name, {
        spec,
        rate: spec.rate / 1_000,
        state: 'up',
        store: new Map(),
        wrongCopies: 0,
        upstreamBytes: 0,
        movingFetches: 0,
        fetches: new Set(),
        pulls: new Set(),
      });
    }
    for (const piece of options.split.pieces) {
      const key = `${piece.task.digest}@${piece.task.offset}`;
      this.#pieces.set(key, piece);
      // Copies from earlier runs: the agents serve them.
      for (const agent of [...piece.holders.keys(), ...(piece.unchecked ?? [])]) this.#agents.get(agent)?.store.set(key, false);
    }
    this.#scheduler = new FarmScheduler({
      split: options.split,
      agents: options.agents.map((a) => ({ name: a.name, address: a.name, slots: a.slots ?? DEFAULT_SLOTS, streams: options.streams ?? true })),
      now: () => this.#now,
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.parallelPulls === undefined ? {} : { parallelPulls: options.parallelPulls }),
      ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
    });
  }

  run(): FarmSimulationResult {
    for (const agent of this.#agents.values()) {
      for (const outage of agent.spec.outages ?? []) this.#events.push(outage.at, () => this.#goAway(agent, outage));
    }
    this.#step();
    this.#setRates();
    this.#events.push(TICK_MS, () => this.#tick());
    this.#events.push(PROGRESS_EVERY_MS, () => this.#reportProgress());
    let finished = true;
    while (this.#pending > 0) {
      const flowAt = this.#nextFlowAt;
      const at = Math.min(flowAt, this.#events.nextAt);
      if (at > this.#limitMs) {
        finished = false;
        break;
      }
      this.#advance(at);
      if (flowAt <= at) this.#settleFlows();
      // Everything that happens at this instant, before the links are shared out again.
      while (this.#events.nextAt <= this.#now) this.#events.pop()!.run();
      this.#setRates();
    }
    this.#call(() => this.#scheduler.finish());
    const blobs = new Set(this.#o.split.pieces.map((p) => p.task.digest));
    for (const b of this.#o.split.assemble) blobs.add(b.digest);
    return {
      completionMs: this.#now,
      finished,
      bound: this.#bound,
      uniqueBytes: this.#o.split.missingBytes,
      upstreamBytes: this.#upstreamBytes,
      lanBytes: this.#lanBytes,
      endgameFetches: this.#endgameFetches,
      blobs: blobs.size,
      completedBlobs: this.#completedBlobs,
      failedBlobs: this.#scheduler.failedBlobs,
      agents: this.#scheduler.reports.map((report) => {
        const a = this.#agents.get(report.agent)!;
        return { name: report.agent, rate: a.spec.rate, upstreamBytes: a.upstreamBytes, report };
      }),
      cost: this.#cost,
    };
  }

  // --- the scheduler, timed ---

  #call<T>(work: () => T): T {
    const started = performance.now();
    try {
      return work();
    } finally {
      this.#cost.calls += 1;
      this.#cost.callsWallMs += performance.now() - started;
    }
  }

  #decide(): Decision[] {
    const cpu = process.cpuUsage();
    const started = performance.now();
    const out = this.#scheduler.decide();
    const wall = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const c = this.#cost;
    c.decides += 1;
    c.decisions += out.length;
    c.decideWallMs += wall;
    c.decideCpuMs += (used.user + used.system) / 1_000;
    c.maxDecideWallMs = Math.max(c.maxDecideWallMs, wall);
    c.calls += 1;
    c.callsWallMs += wall;
    return out;
  }

  /** mesh-fetch's `step()`: carries out what the scheduler decides now. */
  #step(): void {
    for (const d of this.#decide()) {
      switch (d.kind) {
        case 'fetch':
          this.#startFetch(d);
          break;
        case 'cancel':
          this.#cancel(d.agent, d.key);
          break;
        case 'pull':
          this.#startPull(d);
          break;
        case 'complete':
          // Assembling takes the writer no simulated time.
          this.#completedBlobs += 1;
          break;
        case 'held':
        case 'failed':
          break;
        case 'evict': {
          const agent = this.#agents.get(d.agent);
          if (agent?.state === 'up') for (const key of [...agent.store.keys()]) if (key.startsWith(`${d.digest}@`)) agent.store.delete(key);
          break;
        }
      }
    }
  }

  /** The tick: lost agents asked whether they are back, then a step (the endgame is looked at again). */
  #tick(): void {
    this.#probeLost();
    this.#step();
    this.#events.push(this.#now + TICK_MS, () => this.#tick());
  }

  /** Each agent reports the bytes its fetches received since the last report. */
  #reportProgress(): void {
    for (const f of this.#movingFetches) this.#flushProgress(f);
    this.#events.push(this.#now + PROGRESS_EVERY_MS, () => this.#reportProgress());
  }

  #flushProgress(f: Fetch): void {
    if (f.unreported <= 0 || f.agent.state !== 'up') return;
    const bytes = f.unreported;
    f.unreported = 0;
    this.#call(() => this.#scheduler.fetchProgress(f.agent.spec.name, f.key, bytes));
  }

  // --- fetches ---

  #startFetch(d: Extract<Decision, { kind: 'fetch' }>): void {
    const agent = this.#agents.get(d.agent);
    const piece = this.#pieces.get(d.key);
    if (agent === undefined || piece === undefined) return;
    const from = d.task.offset - piece.task.offset;
    const resumed = from === 0 && piece.resumeOn?.agent === d.agent ? piece.resumeOn.committed : 0;
    const f: Fetch = {
      agent,
      key: d.key,
      piece,
      from,
      resumed,
      goal: d.task.length - resumed,
      received: 0,
      unreported: 0,
      startsAt: this.#now + (this.#o.upstreamLatencyMs ?? 0),
      started: false,
      moving: false,
      rate: 0,
      eta: Number.POSITIVE_INFINITY,
      done: false,
      wrong: false,
      ended: false,
    };
    if (d.endgame) this.#endgameFetches += 1;
    this.#fetches.set(fetchId(d.agent, d.key), f);
    agent.fetches.add(f);
    this.#pending += 1;
    if (agent.state === 'dead') this.#events.push(this.#now, () => this.#fetchEnded(f, { code: 'MM_AGENT_LOST', message: 'cannot reach agent' }));
    else if (agent.state === 'silent') this.#events.push(this.#now + LOST_AFTER_MS, () => this.#fetchEnded(f, { code: 'MM_AGENT_LOST', message: 'stopped answering' }));
    else this.#moveFetch(f);
  }

  /** Every byte of the fetch is in: the agent reports its last progress and the piece's hash. */
  #fetchDone(f: Fetch): void {
    f.received = f.goal;
    f.done = true;
    this.#haltFetch(f);
    this.#flushProgress(f);
    const spec = f.agent.spec;
    f.wrong = f.agent.wrongCopies < (spec.wrongPieces ?? 0);
    if (f.wrong) f.agent.wrongCopies += 1;
    f.agent.store.set(f.key, f.wrong);
    this.#call(() => this.#scheduler.fetchDone(spec.name, f.key, f.piece.task.digest, f.received));
    // A live pull that kept up has every byte now.
    const live = this.#livePulls.get(fetchId(spec.name, f.key));
    if (live !== undefined && !live.ended && live.pos >= f.from + f.resumed + f.goal - EPS_BYTES - f.rate * EPS_MS) live.pos = f.piece.task.length;
    // The agent's fetch call resolves after its last event.
    this.#events.push(this.#now, () => this.#fetchEnded(f));
  }

  /** A fetch is cancelled (its piece came in elsewhere, its blob failed, its agent was lost). */
  #cancel(agent: string, key: string): void {
    const f = this.#fetches.get(fetchId(agent, key));
    if (f === undefined || f.done || f.ended) return;
    this.#haltFetch(f);
    this.#events.push(this.#now, () => this.#fetchEnded(f));
  }

  /** mesh-fetch's end of a fetch call: the scheduler hears, a step follows, a live pull without a copy is stopped. */
  #fetchEnded(f: Fetch, agentError?: Failure): void {
    if (f.ended) return;
    f.ended = true;
    this.#pending -= 1;
    this.#haltFetch(f);
    f.agent.fetches.delete(f);
    const id = fetchId(f.agent.spec.name, f.key);
    if (this.#fetches.get(id) === f) this.#fetches.delete(id);
    this.#call(() => this.#scheduler.fetchEnded(f.agent.spec.name, f.key, agentError));
    this.#step();
    if (!f.done) {
      const live = this.#livePulls.get(id);
      if (live?.live === f) this.#abortPull(live);
    }
  }

  // --- pulls into the writer ---

  #startPull(d: Extract<Decision, { kind: 'pull' }>): void {
    const holder = this.#agents.get(d.holder);
    const piece = this.#pieces.get(d.key);
    if (holder === undefined || piece === undefined) return;
    const id = fetchId(d.holder, d.key);
    const have = this.#writerHas.get(d.key) ?? 0;
    const live = d.live ? this.#fetches.get(id) : undefined;
    const p: Pull = {
      holder,
      key: d.key,
      piece,
      live,
      start: have,
      pos: have,
      startsAt: this.#now + (this.#o.lanLatencyMs ?? 0),
      started: false,
      rate: 0,
      eta: Number.POSITIVE_INFINITY,
      ended: false,
    };
    holder.pulls.add(p);
    this.#pending += 1;
    if (d.live) this.#livePulls.set(id, p);
    const fail = (at: number, code: string, message: string): void => this.#events.push(at, () => this.#pullEnded(p, { code, message }));
    if (d.live && live === undefined) fail(this.#now, 'MM_USAGE', `no live pull from ${d.holder}`);
    else if (have < d.from) fail(this.#now, 'MM_NOT_FOUND', `the writer holds ${have} bytes, the holder's copy starts at ${d.from}`);
    else if (holder.state === 'dead') fail(this.#now, 'MM_NETWORK', 'connection refused');
    else if (holder.state === 'silent') fail(this.#now + PEER_STALL_MS, 'MM_STALL', 'no bytes from the holder');
    else if (!d.live && !holder.store.has(d.key)) fail(this.#now, 'MM_NOT_FOUND', 'the holder has no copy');
    else this.#movePull(p);
  }

  #abortPull(p: Pull): void {
    if (p.ended) return;
    this.#haltPull(p);
    this.#events.push(this.#now, () => this.#pullEnded(p, { code: 'MM_ABORTED', message: 'operation aborted' }));
  }

  /** mesh-fetch's end of a pull: the writer checks the copy's hash; the scheduler hears; a broken pull has its holder checked. */
  #pullEnded(p: Pull, failure?: Failure): void {
    if (p.ended) return;
    p.ended = true;
    this.#pending -= 1;
    this.#haltPull(p);
    p.holder.pulls.delete(p);
    const holder = p.holder.spec.name;
    const id = fetchId(holder, p.key);
    if (this.#livePulls.get(id) === p) this.#livePulls.delete(id);
    const bytes = p.pos - p.start;
    const wrong = failure === undefined && (p.live?.wrong ?? p.holder.store.get(p.key) === true);
    if (failure === undefined && !wrong) {
      this.#writerHas.set(p.key, p.piece.task.length);
      this.#call(() => this.#scheduler.pullDone(holder, p.key, bytes));
    } else if (failure === undefined) {
      // The writer drops what does not hash to what the holder reported.
      this.#writerHas.set(p.key, 0);
      this.#call(() => this.#scheduler.pullFailed(holder, p.key, 'MM_DIGEST_MISMATCH', `bytes of piece ${p.key} from ${holder} do not match their hash`));
    } else {
      this.#writerHas.set(p.key, p.pos);
      this.#call(() => this.#scheduler.pullFailed(holder, p.key, failure.code, failure.message, p.pos));
      if (BROKEN_OFF.has(failure.code)) this.#checkHolder(p.holder);
    }
    this.#step();
  }

  // --- agents going and coming ---

  #goAway(agent: SimAgent, outage: SimulatedOutage): void {
    const dies = outage.how === 'dies';
    agent.state = dies ? 'dead' : 'silent';
    for (const f of agent.fetches) {
      if (f.done || f.ended) continue;
      this.#haltFetch(f);
      const failure = { code: 'MM_AGENT_LOST', message: dies ? 'stream reset' : 'stopped answering' };
      this.#events.push(dies ? this.#now : this.#now + LOST_AFTER_MS, () => this.#fetchEnded(f, failure));
    }
    for (const p of agent.pulls) {
      if (p.ended || !this.#movingPulls.has(p)) continue;
      this.#haltPull(p);
      const failure = dies ? { code: 'MM_NETWORK', message: 'connection reset' } : { code: 'MM_STALL', message: 'no bytes from the holder' };
      this.#events.push(dies ? this.#now : this.#now + PEER_STALL_MS, () => this.#pullEnded(p, failure));
    }
    if (outage.back !== undefined) {
      this.#events.push(outage.back, () => {
        agent.state = 'up';
      });
    }
  }

  /** The agent's answer to `hello`: at once when it is up or its host refuses the connection, never when it is silent. */
  #probe(agent: SimAgent, answer: (ok: boolean) => void): void {
    const ok = agent.state === 'up';
    this.#events.push(this.#now + (agent.state === 'silent' ? PROBE_TIMEOUT_MS : LAN_ANSWER_MS), () => answer(ok));
  }

  /** mesh-fetch's `checkHolder`: a pull broke off; a holder that does not answer is lost and every pull from it stopped. */
  #checkHolder(holder: SimAgent): void {
    const name = holder.spec.name;
    if (this.#checking.has(name)) return;
    this.#checking.add(name);
    this.#pending += 1;
    this.#probe(holder, (ok) => {
      this.#checking.delete(name);
      this.#pending -= 1;
      if (ok) return;
      this.#call(() => this.#scheduler.lose(name, 'MM_AGENT_LOST: a pull from it broke off and it does not answer'));
      for (const p of holder.pulls) this.#abortPull(p);
      this.#step();
    });
  }

  /** mesh-fetch's `probeLost`: each lost agent is asked every two seconds whether it is back. */
  #probeLost(): void {
    for (const name of this.#call(() => this.#scheduler.lostAgents())) {
      const agent = this.#agents.get(name);
      const last = this.#probes.get(name);
      if (agent === undefined || last?.out === true || (last !== undefined && this.#now - last.at < PROBE_EVERY_MS)) continue;
      const state = { at: this.#now, out: true };
      this.#probes.set(name, state);
      this.#probe(agent, (ok) => {
        state.out = false;
        if (!ok || !this.#call(() => this.#scheduler.readmit(name))) return;
        this.#probes.delete(name);
        this.#step();
      });
    }
  }

  // --- bytes on the links ---

  /** Where a live pull's holder has got to in the piece. */
  #available(p: Pull): number {
    const f = p.live;
    return f === undefined || f.done ? p.piece.task.length : f.from + f.resumed + f.received;
  }

  // Flows start and stop only through these, so rates are set again only when something changed.
  #moveFetch(f: Fetch): void {
    this.#movingFetches.add(f);
    f.moving = true;
    this.#dirty = true;
  }

  #haltFetch(f: Fetch): void {
    f.moving = false;
    if (this.#movingFetches.delete(f)) this.#dirty = true;
  }

  #movePull(p: Pull): void {
    this.#movingPulls.add(p);
    this.#dirty = true;
  }

  #haltPull(p: Pull): void {
    if (this.#movingPulls.delete(p)) this.#dirty = true;
  }

  /** Moves bytes at the current rates up to `at`; no flow starts, ends or catches up in between. */
  #advance(at: number): void {
    const dt = at - this.#now;
    if (dt > 0) {
      for (const f of this.#movingFetches) {
        if (!f.started) continue;
        const bytes = Math.min(f.rate * dt, f.goal - f.received);
        f.received += bytes;
        f.unreported += bytes;
        f.agent.upstreamBytes += bytes;
        this.#upstreamBytes += bytes;
      }
      for (const p of this.#movingPulls) {
        if (!p.started) continue;
        const bytes = Math.max(0, Math.min(p.rate * dt, this.#available(p) - p.pos));
        p.pos += bytes;
        this.#lanBytes += bytes;
      }
    }
    this.#now = at;
  }

  /** Flows at an edge: fetches and pulls starting or done, live pulls that caught up with their fetch. */
  #settleFlows(): void {
    const due = this.#now + EPS_MS;
    this.#dirty = true;
    for (const f of this.#movingFetches) if (f.started && f.eta <= due) this.#fetchDone(f);
    for (const p of this.#movingPulls) {
      if (!p.started || p.eta > due) continue;
      p.pos = this.#available(p);
      if (p.pos < p.piece.task.length) continue; // caught up with its fetch: it goes on at the fetch's pace
      this.#haltPull(p);
      this.#events.push(this.#now, () => this.#pullEnded(p));
    }
  }

  /**
   * Max-min fair rates: each agent's link shared evenly by its fetches and the registry's cap by
   * all of them; the writer's link by every pull, a live pull that caught up with its fetch going
   * no faster than the fetch. Sets each flow's next edge, and the earliest of them.
   */
  #setRates(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    const now = this.#now;
    let next = Number.POSITIVE_INFINITY;
    for (const a of this.#agents.values()) a.movingFetches = 0;
    for (const f of this.#movingFetches) {
      if (!f.started && f.startsAt <= now) f.started = true;
      if (f.started) f.agent.movingFetches += 1;
    }
    let upstreamLevel = Number.POSITIVE_INFINITY;
    if (this.#o.registryRate !== undefined) {
      const shares = [...this.#agents.values()].filter((a) => a.movingFetches > 0).map((a) => ({ cap: a.rate / a.movingFetches, count: a.movingFetches }));
      upstreamLevel = waterLevel(shares, this.#o.registryRate / 1_000);
    }
    for (const f of this.#movingFetches) {
      if (!f.started) {
        f.rate = 0;
        f.eta = f.startsAt;
      } else {
        f.rate = Math.min(f.agent.rate / f.agent.movingFetches, upstreamLevel);
        f.eta = now + (f.goal - f.received) / f.rate;
      }
      next = Math.min(next, f.eta);
    }

    // Only a live pull that caught up has a cap of its own; the others share what is left evenly.
    const capped: number[] = [];
    let uncapped = 0;
    for (const p of this.#movingPulls) {
      if (!p.started && p.startsAt <= now) p.started = true;
      if (!p.started) continue;
      const f = p.live;
      if (f !== undefined && !f.done && p.pos >= this.#available(p) - EPS_BYTES) capped.push(this.#fetchRate(f));
      else uncapped += 1;
    }
    const lanLevel = evenLevel(Float64Array.from(capped).sort(), this.#o.writerRate / 1_000, uncapped);
    for (const p of this.#movingPulls) {
      if (!p.started) {
        p.rate = 0;
        p.eta = p.startsAt;
      } else {
        const f = p.live;
        if (f !== undefined && !f.done) {
          // It ends with its fetch; before that it may catch up with it.
          const behind = this.#available(p) - p.pos;
          const fetchRate = this.#fetchRate(f);
          p.rate = behind > EPS_BYTES ? lanLevel : Math.min(fetchRate, lanLevel);
          p.eta = behind > EPS_BYTES && p.rate > fetchRate ? now + behind / (p.rate - fetchRate) : Number.POSITIVE_INFINITY;
        } else {
          p.rate = lanLevel;
          p.eta = now + (p.piece.task.length - p.pos) / p.rate;
        }
      }
      next = Math.min(next, p.eta);
    }
    this.#nextFlowAt = next;
  }

  #fetchRate(f: Fetch): number {
    return f.started && f.moving ? f.rate : 0;
  }
}

/**
 * The level that shares `capacity` max-min fairly among flows each limited to `cap` (`count` alike):
 * every flow gets min(cap, level). Infinity when every flow gets its cap.
 */
function waterLevel(flows: Array<{ cap: number; count: number }>, capacity: number): number {
  if (capacity === Number.POSITIVE_INFINITY) return capacity;
  const sorted = flows.sort((x, y) => x.cap - y.cap);
  let left = capacity;
  let n = sorted.reduce((sum, f) => sum + f.count, 0);
  for (const f of sorted) {
    if (f.cap * n > left) return left / n;
    left -= f.cap * f.count;
    n -= f.count;
  }
  return Number.POSITIVE_INFINITY;
}

/** The same for flows of one each, their caps sorted (the writer's pulls: there are thousands). */
function evenLevel(caps: Float64Array, capacity: number, uncapped: number): number {
  let left = capacity;
  let n = caps.length + uncapped;
  for (const cap of caps) {
    if (cap * n > left) return left / n;
    left -= cap;
    n -= 1;
  }
  return n > 0 ? left / n : Number.POSITIVE_INFINITY;
}
