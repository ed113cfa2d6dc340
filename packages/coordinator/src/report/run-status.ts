/**
 * The run's live state for `--status`, kept in one place: what the run tells its progress reporter
 * (phase, bytes, images, retries), what the fetch tells about each agent, and at the end the run's
 * summary. `/api/run`, `/metrics` and the live page are views of it, so they agree with each other;
 * the per-agent figures are the scheduler's own reports, so they agree with the summary too. Time
 * comes from an injected clock, and the owner calls `sample()` every second for the throughput chart.
 */
import type { PieceEvent } from '@meshmirror/shared';
import type { AgentReport } from '../schedule/farm-scheduler.ts';
import type { AgentProgress, ProgressReporter, ProgressState } from './progress.ts';
import type { MirrorSummary, MirrorToMirrorSummary, PushSummary } from './summaries.ts';

/** What any mirror mode returns at its end. */
export type RunSummary = MirrorSummary | PushSummary | MirrorToMirrorSummary;

/** An agent as `/api/run` shows it: its report so far, with what is in flight and arriving now. */
export interface AgentStatus extends AgentReport {
  piecesInFlight: number;
  /** Body bytes that arrived at it so far, counted as they arrive (its report counts upstream bytes when each piece ends). */
  receivedBytes: number;
}

/** The run's end, from its summary. */
export interface RunResult {
  mode: 'mirror to disk' | 'disk to mirror' | 'mirror to mirror';
  /** `done`: archived, or pushed (those an earlier run pushed included). */
  images: { requested: number; done: number; failed: number };
  /** The failed images with their reasons, the first MAX_FAILED_SHOWN of `images.failed`. */
  failedImages: Array<{ source: string; code?: string; reason?: string }>;
  /** `upstream`: body bytes from the source registries; `pulled`: from agents into the writer; `pushed`: sent to the target. */
  bytes: { unique: number; upstream: number; pulled?: number; pushed?: number };
  retries: number;
  durationMs: number;
  warnings: number;
}

/** Bytes per second over each interval between two samples, per agent and for the whole run (`bytesDone`). */
export interface Throughput {
  agents: string[];
  points: Array<{ t: number; run: number; agents: number[] }>;
}

export interface RunStatusJson extends ProgressState {
  startedAt: string;
  elapsedSeconds: number;
  /** `bytesDone` over the time since the run started, and the time left at that rate. */
  bytesPerSecond: number;
  etaSeconds: number | null;
  retries: number;
  /** Body bytes from upstream registries (counted when each piece ends), and bytes the writer pulled from agents. */
  upstreamBytes: number;
  servedBytes: number;
  pieces: { inFlight: number; fetched: number; failed: number; wrong: number };
  registries: Array<{ registry: string; upstreamBytes: number }>;
  retriesByHost: Array<{ host: string; code: string; count: number }>;
  pieceFailures: Array<{ code: string; count: number }>;
  agents: AgentStatus[];
  throughput: Throughput;
  finished: boolean;
  result?: RunResult;
}

/** Failed images listed in the result; the count says how many there are in all. */
export const MAX_FAILED_SHOWN = 200;
/** Samples kept for the throughput chart: beyond this, every other one is dropped (the chart gets coarser, never longer). */
const MAX_SAMPLES = 240;

interface Sample {
  at: number;
  run: number;
  agents: Map<string, number>;
}

export class RunStatus {
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #state: ProgressState = { phase: 'resolving', bytesDone: 0, bytesTotal: 0, imagesTotal: 0, imagesDone: 0, imagesFailed: 0 };
  /** Each fetch's agent reports, live; an agent in several fetches (a repair pass) adds up. */
  readonly #reportSets: Array<ReadonlyArray<Readonly<AgentReport>>> = [];
  readonly #inFlight = new Map<string, number>();
  readonly #received = new Map<string, number>();
  /** Upstream bytes by registry, then agent. */
  readonly #upstream = new Map<string, Map<string, number>>();
  readonly #retries = new Map<string, { host: string; code: string; count: number }>();
  readonly #pieceFailures = new Map<string, number>();
  readonly #samples: Sample[] = [];
  readonly #listeners = new Set<() => void>();
  #result: RunResult | undefined;
  #imageFailures = new Map<string, number>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#startedAt = now();
  }

  get finished(): boolean {
    return this.#result !== undefined;
  }

  /** Called after every change; returns the call that stops it. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The reporter the run drives (beside the progress line); `stop` leaves the state as it is. */
  reporter(): ProgressReporter {
    return {
      update: (next) => {
        Object.assign(this.#state, next);
        this.#changed();
      },
      addBytes: (delta) => {
        this.#state.bytesDone += delta;
        this.#changed();
      },
      noteRetry: (event) => this.noteRetry(event),
      noteAgent: (event) => this.noteAgent(event),
      stop: () => undefined,
    };
  }

  noteRetry(event: Extract<PieceEvent, { type: 'retry' }>): void {
    const host = event.host ?? 'unknown';
    const key = `${host}\n${event.code}`;
    const known = this.#retries.get(key);
    if (known === undefined) this.#retries.set(key, { host, code: event.code, count: 1 });
    else known.count += 1;
    this.#changed();
  }

  noteAgent(event: AgentProgress): void {
    switch (event.type) {
      case 'agents':
        this.#reportSets.push(event.reports);
        break;
      case 'fetch-started':
        addTo(this.#inFlight, event.agent, 1);
        break;
      case 'fetch-ended':
        addTo(this.#inFlight, event.agent, -1);
        break;
      case 'received':
        // What arrived stays arrived: a piece that starts over drops bytes from its progress, not from here.
        if (event.bytes > 0) addTo(this.#received, event.agent, event.bytes);
        break;
      case 'piece-ended': {
        const byAgent = this.#upstream.get(event.registry) ?? new Map<string, number>();
        this.#upstream.set(event.registry, byAgent);
        addTo(byAgent, event.agent, event.upstreamBytes);
        if (event.code !== undefined) addTo(this.#pieceFailures, event.code, 1);
        break;
      }
    }
    this.#changed();
  }

  /** The run is over: its summary is the final word on images and totals. */
  finish(summary: RunSummary): void {
    const result = resultOf(summary);
    this.#result = result;
    this.#imageFailures = new Map();
    for (const outcome of summary.outcomes) if (outcome.state === 'failed') addTo(this.#imageFailures, outcome.code ?? 'unknown', 1);
    Object.assign(this.#state, { phase: 'done', imagesTotal: result.images.requested, imagesDone: result.images.done, imagesFailed: result.images.failed });
    this.sample();
  }

  /** Records every agent's bytes so far, for the throughput chart. */
  sample(): void {
    const agents = new Map([...this.agents()].map((a) => [a.agent, a.receivedBytes]));
    this.#samples.push({ at: this.#now(), run: this.#state.bytesDone, agents });
    if (this.#samples.length > MAX_SAMPLES) {
      // Rates between the samples kept stay true averages: the samples are running totals.
      const last = this.#samples[this.#samples.length - 1]!;
      const kept = this.#samples.filter((_, i) => i % 2 === 0);
      if (kept[kept.length - 1] !== last) kept.push(last);
      this.#samples.splice(0, this.#samples.length, ...kept);
    }
    this.#changed();
  }

  /** Every agent of the run's fetches, with its report summed over them. */
  agents(): AgentStatus[] {
    const byName = new Map<string, AgentStatus>();
    for (const reports of this.#reportSets) {
      for (const report of reports) {
        const known = byName.get(report.agent);
        const live = { piecesInFlight: this.#inFlight.get(report.agent) ?? 0, receivedBytes: this.#received.get(report.agent) ?? 0 };
        if (known === undefined) {
          byName.set(report.agent, { ...report, ...live });
          continue;
        }
        // A later fetch over the same agent (the repair pass): its figures add up, its state is the current one.
        known.address = report.address;
        known.upstreamBytes += report.upstreamBytes;
        known.servedBytes += report.servedBytes;
        known.peerBytes += report.peerBytes;
        known.piecesFetched += report.piecesFetched;
        known.piecesFailed += report.piecesFailed;
        known.piecesCancelled += report.piecesCancelled;
        known.wrongPieces += report.wrongPieces;
        const readmitted = (known.readmitted ?? 0) + (report.readmitted ?? 0);
        if (readmitted > 0) known.readmitted = readmitted;
        for (const key of ['lost', 'distrusted'] as const) {
          if (report[key] === undefined) delete known[key];
          else known[key] = report[key];
        }
      }
    }
    return [...byName.values()];
  }

  /** Upstream bytes by registry and agent. */
  upstream(): Array<{ registry: string; agent: string; bytes: number }> {
    return [...this.#upstream].flatMap(([registry, byAgent]) => [...byAgent].map(([agent, bytes]) => ({ registry, agent, bytes })));
  }

  retries(): Array<{ host: string; code: string; count: number }> {
    return [...this.#retries.values()].map((r) => ({ ...r }));
  }

  /** Failures by kind and error code: pieces as they fail, images once the run is over. */
  failures(): Array<{ kind: 'piece' | 'image'; code: string; count: number }> {
    return [
      ...[...this.#pieceFailures].map(([code, count]) => ({ kind: 'piece' as const, code, count })),
      ...[...this.#imageFailures].map(([code, count]) => ({ kind: 'image' as const, code, count })),
    ];
  }

  get state(): Readonly<ProgressState> {
    return this.#state;
  }

  get result(): RunResult | undefined {
    return this.#result;
  }

  json(): RunStatusJson {
    const elapsedSeconds = (this.#now() - this.#startedAt) / 1000;
    const { bytesDone, bytesTotal } = this.#state;
    const rate = elapsedSeconds > 0 ? bytesDone / elapsedSeconds : 0;
    const left = bytesTotal - bytesDone;
    const agents = this.agents();
    const sum = (pick: (a: AgentStatus) => number): number => agents.reduce((n, a) => n + pick(a), 0);
    const registries = new Map<string, number>();
    for (const { registry, bytes } of this.upstream()) addTo(registries, registry, bytes);
    return {
      ...this.#state,
      startedAt: new Date(this.#startedAt).toISOString(),
      elapsedSeconds,
      bytesPerSecond: Math.round(rate),
      etaSeconds: this.finished ? 0 : rate > 0 && left > 0 ? Math.round(left / rate) : null,
      retries: [...this.#retries.values()].reduce((n, r) => n + r.count, 0),
      upstreamBytes: [...registries.values()].reduce((n, b) => n + b, 0),
      servedBytes: sum((a) => a.servedBytes),
      pieces: { inFlight: sum((a) => a.piecesInFlight), fetched: sum((a) => a.piecesFetched), failed: sum((a) => a.piecesFailed), wrong: sum((a) => a.wrongPieces) },
      registries: [...registries].map(([registry, upstreamBytes]) => ({ registry, upstreamBytes })),
      retriesByHost: this.retries(),
      pieceFailures: [...this.#pieceFailures].map(([code, count]) => ({ code, count })),
      agents,
      throughput: this.#throughput(agents.map((a) => a.agent)),
      finished: this.finished,
      ...(this.#result === undefined ? {} : { result: this.#result }),
    };
  }

  #throughput(names: string[]): Throughput {
    const points: Throughput['points'] = [];
    for (let i = 1; i < this.#samples.length; i++) {
      const before = this.#samples[i - 1]!;
      const after = this.#samples[i]!;
      const seconds = (after.at - before.at) / 1000;
      if (seconds <= 0) continue;
      const rate = (from: number, to: number): number => Math.max(0, Math.round((to - from) / seconds));
      points.push({
        t: Math.round((after.at - this.#startedAt) / 100) / 10,
        run: rate(before.run, after.run),
        agents: names.map((name) => rate(before.agents.get(name) ?? 0, after.agents.get(name) ?? 0)),
      });
    }
    return { agents: names, points };
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }
}

function addTo(map: Map<string, number>, key: string, delta: number): void {
  map.set(key, (map.get(key) ?? 0) + delta);
}

/** The figures a person compares across modes, from whichever summary the run returned. */
export function resultOf(summary: RunSummary): RunResult {
  const failedImages = summary.outcomes
    .filter((o) => o.state === 'failed')
    .slice(0, MAX_FAILED_SHOWN)
    .map((o) => ({ source: o.source, ...(o.code === undefined ? {} : { code: o.code }), ...(o.reason === undefined ? {} : { reason: o.reason }) }));
  const common = { failedImages, retries: summary.retries, durationMs: summary.durationMs, warnings: summary.warnings.length };
  if ('archive' in summary) {
    return {
      mode: 'mirror to disk',
      images: { requested: summary.images.requested, done: summary.images.archived, failed: summary.images.failed },
      bytes: { unique: summary.bytes.unique, upstream: summary.bytes.fetched, ...(summary.bytes.pulled === undefined ? {} : { pulled: summary.bytes.pulled }) },
      ...common,
    };
  }
  const images = { requested: summary.images.requested, done: summary.images.pushed, failed: summary.images.failed };
  if ('mode' in summary) {
    return { mode: 'mirror to mirror', images, bytes: { unique: summary.bytes.unique, upstream: summary.fetch.fetched, pushed: summary.bytes.sent }, ...common };
  }
  return { mode: 'disk to mirror', images, bytes: { unique: summary.bytes.unique, upstream: 0, pushed: summary.bytes.sent }, ...common };
}
