import cliProgress from 'cli-progress';
import { formatBytes, formatDuration, type HostTrouble, type PieceEvent } from '@meshmirror/shared';
import type { AgentReport } from '../schedule/farm-scheduler.ts';

export type RunPhase = 'resolving' | 'fetching' | 'archiving' | 'pushing' | 'mirroring' | 'done';

/** What the run reports as it goes; the reporter derives rate and ETA itself. */
export interface ProgressState {
  phase: RunPhase;
  bytesDone: number;
  bytesTotal: number;
  imagesTotal: number;
  imagesDone: number;
  imagesFailed: number;
}

/**
 * What a fetch over the farm (or the farm of one: the coordinator's agent, `local`) tells about each
 * agent as it goes. The status server shows it; the progress line has no use for it.
 */
export type AgentProgress =
  /**
   * A fetch begins, over these agents: their reports, which the scheduler keeps current until the
   * fetch ends and which become the run's summary (read them, never write them).
   */
  | { type: 'agents'; reports: ReadonlyArray<Readonly<AgentReport>> }
  /** The agent started or stopped fetching a piece: its pieces in flight. */
  | { type: 'fetch-started' | 'fetch-ended'; agent: string }
  /** Body bytes arrived at the agent, as they arrive (negative: a piece started over dropped them). */
  | { type: 'received'; agent: string; bytes: number }
  /**
   * The agent's fetch of a piece from `registry` (the first of its sources) is over, fetched or,
   * with `code`, failed; `upstreamBytes` as its report counts them.
   */
  | { type: 'piece-ended'; agent: string; registry: string; upstreamBytes: number; code?: string };

export interface ProgressReporter {
  update(state: Partial<ProgressState>): void;
  /** Adds (or, after a restarted piece, subtracts) fetched bytes. */
  addBytes(delta: number): void;
  /** An agent's failed attempt: while its host keeps failing, the line says so. */
  noteRetry(event: Extract<PieceEvent, { type: 'retry' }>): void;
  /** Per agent of the fetch; a reporter that shows no agents leaves it out. */
  noteAgent?(event: AgentProgress): void;
  stop(): void;
}

export interface ProgressReporterOptions {
  /** Where progress goes (stderr by default, so stdout stays free for `--output json`). */
  stream?: NodeJS.WriteStream;
  /** 'bars' on a TTY, 'lines' elsewhere, 'none' to stay quiet. Default: decided by `stream.isTTY`. */
  mode?: 'bars' | 'lines' | 'none' | undefined;
  /** Interval between plain progress lines. */
  lineIntervalMs?: number;
  /** Hosts this process is backing off from (its `HostBackoff`), read at each refresh. */
  hostTroubles?: () => HostTrouble[];
  now?: () => number;
}

/** A host shows on the line once it has been failing this long (a single reset does not). */
const SHOW_WAITING_AFTER_MS = 2_000;
/** A remote agent's report of a failing host is dropped this long after its next try, unless renewed. */
const REMOTE_TROUBLE_GRACE_MS = 5_000;

/**
 * The hosts a run is waiting for: this process's own backoff, plus what agents report in their
 * retry events (a farm's agents back off on their own).
 */
export class HostWaits {
  readonly #local: (() => HostTrouble[]) | undefined;
  readonly #now: () => number;
  readonly #remote = new Map<string, HostTrouble>();

  constructor(local?: () => HostTrouble[], now: () => number = Date.now) {
    this.#local = local;
    this.#now = now;
  }

  noteRetry(event: Extract<PieceEvent, { type: 'retry' }>): void {
    if (event.host === undefined || event.failingForMs === undefined) return;
    const now = this.#now();
    const known = this.#remote.get(event.host);
    const failingSince = now - event.failingForMs;
    this.#remote.set(event.host, {
      host: event.host,
      failingSince: known === undefined ? failingSince : Math.min(known.failingSince, failingSince),
      nextTryAt: now + event.delayMs,
      unreachable: event.unreachable === true,
      code: event.code,
    });
  }

  /** Hosts failing for long enough to mention, longest first. */
  current(): HostTrouble[] {
    const now = this.#now();
    const byHost = new Map<string, HostTrouble>();
    for (const [host, trouble] of this.#remote) {
      if (now > trouble.nextTryAt + REMOTE_TROUBLE_GRACE_MS) this.#remote.delete(host);
      else byHost.set(host, trouble);
    }
    for (const trouble of this.#local?.() ?? []) {
      const known = byHost.get(trouble.host);
      if (known === undefined || trouble.failingSince < known.failingSince) byHost.set(trouble.host, trouble);
    }
    return [...byHost.values()].filter((t) => now - t.failingSince >= SHOW_WAITING_AFTER_MS).sort((a, b) => a.failingSince - b.failingSince);
  }
}

/** `waiting for quay.io: unreachable for 2m10s, next try in 20s` (a clause per host, at most two). */
export function waitingText(troubles: HostTrouble[], now: number): string {
  const seconds = (ms: number): string => formatDuration(Math.max(0, Math.round(ms / 1_000)) * 1_000);
  const clauses = troubles.slice(0, 2).map((t) => {
    const state = t.unreachable ? 'unreachable' : `failing (${t.code})`;
    const next = t.nextTryAt - now >= 1_000 ? `next try in ${seconds(t.nextTryAt - now)}` : 'trying now';
    return `waiting for ${t.host}: ${state} for ${seconds(now - t.failingSince)}, ${next}`;
  });
  if (troubles.length > 2) clauses.push(`and ${troubles.length - 2} more hosts`);
  return clauses.join('; ');
}

/** Bytes per second over a sliding window, so the rate follows the transfer instead of its whole history. */
class RateWindow {
  private readonly samples: Array<{ at: number; bytes: number }> = [];
  private readonly windowMs: number;

  constructor(windowMs: number) {
    this.windowMs = windowMs;
  }

  record(bytes: number, at = Date.now()): void {
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && at - (this.samples[0]?.at ?? at) > this.windowMs) this.samples.shift();
  }

  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || last.at - first.at < 500) return 0;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

export function createProgressReporter(options: ProgressReporterOptions = {}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const mode = options.mode ?? (stream.isTTY === true ? 'bars' : 'lines');
  const state: ProgressState = { phase: 'resolving', bytesDone: 0, bytesTotal: 0, imagesTotal: 0, imagesDone: 0, imagesFailed: 0 };
  const rate = new RateWindow(10_000);
  const now = options.now ?? Date.now;
  const waits = new HostWaits(options.hostTroubles, now);
  const waiting = (): string => waitingText(waits.current(), now());
  const sampler = setInterval(() => rate.record(state.bytesDone), 1000);
  sampler.unref();

  const describe = (): { rate: string; eta: string } => {
    const r = rate.rate();
    const left = state.bytesTotal - state.bytesDone;
    return {
      rate: `${formatBytes(Math.max(0, r))}/s`,
      eta: r > 0 && left > 0 ? formatDuration((left / r) * 1000) : left <= 0 ? '0s' : '-',
    };
  };

  if (mode === 'none') {
    return {
      update: (s) => Object.assign(state, s),
      addBytes: (d) => void (state.bytesDone += d),
      noteRetry: (event) => waits.noteRetry(event),
      stop: () => clearInterval(sampler),
    };
  }

  if (mode === 'bars') {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: '{phase} |{bar}| {percentage}% {bytesDone}/{bytesTotal} {speed} ETA {etaText} | images {imagesDone}/{imagesTotal} done, {imagesFailed} failed{waiting}',
        hideCursor: true,
        clearOnComplete: false,
        fps: 5,
        barsize: 30,
        formatValue: (v: number) => String(v),
      },
      cliProgress.Presets.shades_classic,
    );
    const payload = () => ({
      phase: state.phase.padEnd(9),
      bytesDone: formatBytes(state.bytesDone),
      bytesTotal: formatBytes(state.bytesTotal),
      speed: describe().rate,
      etaText: describe().eta,
      imagesDone: state.imagesDone,
      imagesTotal: state.imagesTotal,
      imagesFailed: state.imagesFailed,
      waiting: ((text) => (text === '' ? '' : ` | ${text}`))(waiting()),
    });
    bar.start(Math.max(1, state.bytesTotal), state.bytesDone, payload());
    const refresh = (): void => {
      bar.setTotal(Math.max(1, state.bytesTotal));
      bar.update(Math.min(state.bytesDone, Math.max(1, state.bytesTotal)), payload());
    };
    // While nothing moves (an outage), the waiting clause still counts up.
    const ticker = setInterval(refresh, 1_000);
    ticker.unref();
    return {
      update: (s) => {
        Object.assign(state, s);
        refresh();
      },
      addBytes: (d) => {
        state.bytesDone += d;
        refresh();
      },
      noteRetry: (event) => {
        waits.noteRetry(event);
        refresh();
      },
      stop: () => {
        if (!bar.isActive) return;
        clearInterval(sampler);
        clearInterval(ticker);
        refresh();
        bar.stop();
      },
    };
  }

  // Off a TTY: a line every few seconds while something changes, and at least every 30 s when
  // nothing does, so a log shows both progress and that the run is alive.
  let lastLine = '';
  let lastLineAt = 0;
  const line = (force: boolean, skipUnchanged = false): void => {
    const { rate: r, eta } = describe();
    const pct = state.bytesTotal > 0 ? ` (${Math.floor((100 * state.bytesDone) / state.bytesTotal)}%)` : '';
    const wait = waiting();
    const text =
      `progress: ${state.phase} ${formatBytes(state.bytesDone)} / ${formatBytes(state.bytesTotal)}${pct}, ${r}, ETA ${eta}; ` +
      `images ${state.imagesDone}/${state.imagesTotal} done, ${state.imagesFailed} failed${wait === '' ? '' : `; ${wait}`}\n`;
    const unchanged = text.replace(/, [^,]*\/s, ETA [^;]*;/, '') === lastLine.replace(/, [^,]*\/s, ETA [^;]*;/, '');
    if (unchanged && (skipUnchanged || (!force && Date.now() - lastLineAt < 30_000))) return;
    lastLine = text;
    lastLineAt = Date.now();
    stream.write(text);
  };
  const timer = setInterval(() => line(false), options.lineIntervalMs ?? 5000);
  timer.unref();
  let lastPhase = state.phase;
  let stopped = false;
  return {
    update: (s) => {
      Object.assign(state, s);
      if (state.phase !== lastPhase) {
        lastPhase = state.phase;
        line(true);
      }
    },
    addBytes: (d) => void (state.bytesDone += d),
    noteRetry: (event) => waits.noteRetry(event),
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(sampler);
      clearInterval(timer);
      line(true, true);
    },
  };
}
