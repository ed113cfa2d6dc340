/**
 * The farm-wide fetch: carries out the `FarmScheduler`'s decisions. It starts each piece's fetch on
 * the agent the scheduler picked, passes the agent's events back, has the writer pull each finished
 * piece from a holder (checked against the hash the fetching agent reported) and assemble each blob
 * whose pieces are all in. The decisions themselves (who fetches what, endgame, distrust, lost
 * agents) live in the scheduler, without I/O.
 */
import {
  describeError,
  errorCode,
  MeshmirrorError,
  throwIfAborted,
  type AbortOptions,
  type Agent,
  type BlobHolding,
  type BlobRef,
  type Digest,
  type Logger,
  type PieceEvent,
  type PieceTask,
} from '@meshmirror/shared';
import { planMesh, type MeshSplit } from '../plan/mesh-plan.ts';
import type { MirrorPlan } from '../plan/plan.ts';
import type { AgentProgress, ProgressReporter } from '../report/progress.ts';
import { FarmScheduler, type AgentReport, type Decision } from '../schedule/farm-scheduler.ts';

export type { AgentReport } from '../schedule/farm-scheduler.ts';

/** An agent the scheduler can hand pieces to: a remote one, or the coordinator's own (a farm of one). */
export interface MeshFetcher {
  agent: Agent;
  /** How it is shown in reports: its address. */
  address: string;
  /** Pieces it fetches at once. */
  slots: number;
  /** Resolves when the agent answers; a lost agent that answers again is given work again in the same run. */
  probe?: (options: AbortOptions) => Promise<void>;
  /**
   * Its store is the writer's own (the coordinator's agent): what it fetched is already where the
   * writer needs it, so nothing is pulled, and a failure of the agent itself (its store) ends the run.
   */
  sharesWriterStore?: boolean;
}

/** A holder's copy of a piece: the piece's bytes from `from` on, hashing to `sha256`. */
export interface HolderCopy {
  from: number;
  /**
   * Known, or (a live pull) known once the holder has fetched its copy; undefined for the committed
   * start of a copy the holder never finished: kept unchecked, the blob's digest checks it.
   */
  sha256: Digest | Promise<Digest> | undefined;
}

/** The writer's side: pulls a piece from a holder into its store and completes blobs. */
export interface MeshWriter {
  /**
   * Pulls what the writer lacks of the piece from `holder`'s copy; resolves with the bytes received.
   * Rejects with `MM_DIGEST_MISMATCH` when the copy's bytes do not hash to its sha256 (the writer
   * dropped them); any other failure says in `data.committed` how many bytes of the piece it kept.
   */
  pull(holder: string, task: PieceTask, copy: HolderCopy, signal: AbortSignal): Promise<number>;
  /**
   * The same from a holder that is fetching its copy now: its bytes come as they arrive. A writer
   * that has it is given each piece while it is fetched, so a lost agent costs only what was in flight.
   */
  pullLive?(holder: string, task: PieceTask, copy: HolderCopy, signal: AbortSignal): Promise<number>;
  /** Assembles and verifies a blob whose pieces are all in the writer's store. */
  completeBlob(digest: Digest, size: number, signal: AbortSignal): Promise<void>;
}

/**
 * Where a run's blobs come from: a scheduler over fetchers, into the writer's store. A single host
 * is a farm of one (its fetchers are just `local`); a farm's are its agents, the coordinator's own
 * agent only writing.
 */
export interface BlobSupply {
  fetchers: MeshFetcher[];
  writer: MeshWriter;
  /** The coordinator's own agent as a fetcher (`sharesWriterStore`): it fetches again what came wrong. */
  local: MeshFetcher;
}

/** Whether any fetcher of the supply is another host (the summary then reports each agent). */
export function isFarm(supply: BlobSupply): boolean {
  return supply.fetchers.some((f) => f.sharesWriterStore !== true);
}

/**
 * What every fetcher of the supply holds of the planned blobs; the writer's own holdings stand for a
 * fetcher that shares its store. An agent that cannot answer is left out of this run (it is
 * reported lost when it is given work, or simply not asked).
 */
export async function supplyHoldings(
  supply: BlobSupply,
  writerHoldings: BlobHolding[],
  wanted: BlobRef[],
  log: Logger,
  signal?: AbortSignal,
): Promise<Map<string, BlobHolding[]>> {
  const answers = await Promise.all(
    supply.fetchers.map(async (f) => {
      if (f.sharesWriterStore === true) return [f.agent.name, writerHoldings] as const;
      try {
        return [f.agent.name, await f.agent.holdings(wanted, signal === undefined ? {} : { signal })] as const;
      } catch (err) {
        if (signal?.aborted === true) throw err;
        log.warn({ agent: f.agent.name, address: f.address, err: describeError(err) }, 'agent did not report its holdings; planning without them');
        return undefined;
      }
    }),
  );
  return new Map(answers.filter((a) => a !== undefined));
}

/**
 * A farm of one over the coordinator's own agent: fetches the blobs of `plan` into the writer's
 * store, resuming from `holdings` (what that store holds of them). Used where the copies elsewhere
 * in the farm cannot be used: blobs that came wrong, or whose agents were lost.
 */
export function fetchLocally(
  supply: Pick<BlobSupply, 'local' | 'writer'>,
  plan: MirrorPlan,
  holdings: BlobHolding[],
  pieceSize: number,
  options: Omit<MeshFetchOptions, 'split' | 'fetchers' | 'writer'>,
): Promise<MeshFetchOutcome> {
  const split = planMesh(plan, holdings, new Map([[supply.local.agent.name, holdings]]), pieceSize);
  return meshFetch({ ...options, split, fetchers: [supply.local], writer: supply.writer });
}

export interface MeshFetchOptions {
  split: MeshSplit;
  fetchers: MeshFetcher[];
  /**
   * Takes every finished piece into the writer's store. Without one, each blob stays with the agent
   * that fetched it (whole: one piece per blob) and `onBlobHeld` names that agent.
   */
  writer?: MeshWriter;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
  /** Pulls at once from holders into the writer. Default 8 per agent (see PULLS_PER_AGENT). */
  parallelPulls?: number;
  /** How often one piece may be pulled or fetched before its blob is given up. Default 5. */
  maxAttempts?: number;
  /** Called when the writer holds a blob whole and verified; without a writer, when `holder` does. */
  onBlobHeld: (digest: Digest, size: number, holder?: string) => void;
  /** Called when a blob cannot be had in this run (its images can be reported now). */
  onBlobFailed?: (digest: Digest, code: string, message: string) => void;
}

export interface MeshFetchOutcome {
  failedBlobs: Map<Digest, { code: string; message: string }>;
  upstreamBytes: number;
  retries: number;
  rangesIgnored: number;
  /** Bytes the writer pulled from agents. */
  pulledBytes: number;
  agents: AgentReport[];
}

/** How often the endgame is looked at again, and lost agents are asked whether they are back, while anything is in flight. */
const TICK_MS = 1_000;
/** Pull failures after which the holder is asked whether it is still there. */
const BROKEN_OFF = new Set(['MM_STALL', 'MM_NETWORK', 'MM_TRUNCATED', 'MM_AGENT_LOST']);
/** Between two questions to a lost agent, and how long it has to answer one. */
const PROBE_EVERY_MS = 2_000;
const PROBE_TIMEOUT_MS = 3_000;

export async function meshFetch(options: MeshFetchOptions): Promise<MeshFetchOutcome> {
  const { split, writer, progress, signal } = options;
  const log = options.logger.child({ component: 'coordinator:mesh' });
  const fetchers = new Map(options.fetchers.map((f) => [f.agent.name, f]));
  const scheduler = new FarmScheduler({
    split,
    agents: options.fetchers.map((f) => ({
      name: f.agent.name,
      address: f.address,
      slots: f.slots,
      streams: writer?.pullLive !== undefined && f.sharesWriterStore !== true,
    })),
    deliver: writer === undefined ? 'holders' : 'writer',
    logger: log,
    ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
    ...(options.parallelPulls === undefined ? {} : { parallelPulls: options.parallelPulls }),
  });
  const totals = { upstreamBytes: 0, retries: 0, rangesIgnored: 0 };
  const run = new AbortController();
  /** A failure that ends the run (the writer's store), boxed so that even `undefined` thrown counts. */
  let fatal: { error: unknown } | undefined;
  const stop = (err: unknown): void => {
    fatal ??= { error: err };
    run.abort(err);
  };
  const onAbort = (): void => run.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const pending = new Set<Promise<void>>();
  const track = (work: Promise<void>): void => {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  };
  /** Each running fetch's controller, by agent and piece. */
  const fetches = new Map<string, AbortController>();
  const fetchId = (agent: string, key: string): string => `${agent}\n${key}`;
  progress?.update({ phase: 'fetching', bytesTotal: split.missingBytes, bytesDone: 0 });
  const tell = (event: AgentProgress): void => progress?.noteAgent?.(event);
  tell({ type: 'agents', reports: scheduler.reports });

  /** The fetch was stopped by this side (a cancel, the run's end): what it reports now is only counted. */
  const stopped = (agent: string, key: string): boolean => run.signal.aborted || fetches.get(fetchId(agent, key))?.signal.aborted === true;

  const onEvent = (agent: string, key: string, registry: string, event: PieceEvent): void => {
    if (event.type === 'piece-done' || event.type === 'piece-failed' || event.type === 'piece-cancelled') {
      totals.upstreamBytes += event.upstreamBytes;
      if (event.type === 'piece-cancelled' || stopped(agent, key)) {
        scheduler.fetchStopped(agent, event.upstreamBytes, event.type === 'piece-done' ? 'fetched' : event.type === 'piece-failed' ? 'failed' : 'cancelled');
        tell({ type: 'piece-ended', agent, registry, upstreamBytes: event.upstreamBytes });
        return;
      }
    }
    switch (event.type) {
      case 'progress':
        if (scheduler.fetchProgress(agent, key, event.bytes)) progress?.addBytes(event.bytes);
        tell({ type: 'received', agent, bytes: event.bytes });
        break;
      case 'retry':
        totals.retries += 1;
        progress?.noteRetry(event);
        log.warn({ agent, digest: event.digest, offset: event.offset, attempt: event.attempt, code: event.code }, event.message);
        break;
      case 'range-ignored':
        totals.rangesIgnored += 1;
        log.warn({ agent, digest: event.digest, offset: event.offset }, 'registry ignored Range (200 to a ranged request); bytes before the resume point were skipped');
        break;
      case 'piece-done':
        scheduler.fetchDone(agent, key, event.sha256, event.upstreamBytes);
        tell({ type: 'piece-ended', agent, registry, upstreamBytes: event.upstreamBytes });
        copies.get(fetchId(agent, key))?.resolve(event.sha256);
        break;
      case 'piece-failed':
        // Another agent's store failing (a full disk) is that agent's trouble: the piece goes elsewhere.
        // The writer's own store failing ends the run (its fetch stops with the error).
        if (event.code === 'MM_STORE' && fetchers.get(agent)?.sharesWriterStore !== true) scheduler.storeFailed(agent, key, event.message, event.upstreamBytes);
        else scheduler.fetchFailed(agent, key, event.code, event.message, event.upstreamBytes);
        tell({ type: 'piece-ended', agent, registry, upstreamBytes: event.upstreamBytes, code: event.code });
        break;
      case 'blob-held':
        break;
    }
  };

  /** The sha256 of each running fetch's copy, for a live pull of it: settled when the fetch reports it, or ends without. */
  const copies = new Map<string, { promise: Promise<Digest>; resolve: (sha256: Digest) => void; reject: (err: unknown) => void }>();
  /** Live pulls, by the fetch they follow: one whose fetch ends without a copy is stopped (what arrived is kept). */
  const livePulls = new Map<string, AbortController>();
  const startFetch = (d: Extract<Decision, { kind: 'fetch' }>, fetcher: MeshFetcher): void => {
    const controller = new AbortController();
    fetches.set(fetchId(d.agent, d.key), controller);
    const copy = Promise.withResolvers<Digest>();
    copy.promise.catch(() => undefined);
    copies.set(fetchId(d.agent, d.key), copy);
    const callSignal = AbortSignal.any([run.signal, controller.signal]);
    const registry = d.task.sources[0]?.registry ?? '';
    tell({ type: 'fetch-started', agent: d.agent });
    track(
      fetcher.agent
        .fetchPieces([d.task], { signal: callSignal, onEvent: (event) => onEvent(d.agent, d.key, registry, event) })
        .then(
          () => undefined,
          // A fetch we cancelled says nothing about the agent; any other failure is the agent's own.
          (err: unknown) => {
            if (run.signal.aborted || controller.signal.aborted) return undefined;
            // The writer's own store failed: nothing more can be written in this run.
            if (fetcher.sharesWriterStore === true) stop(err);
            return { code: errorCode(err), message: describeError(err) };
          },
        )
        .then((agentError) => {
          fetches.delete(fetchId(d.agent, d.key));
          copy.reject(new MeshmirrorError('MM_AGENT_LOST', `${fetcher.address} stopped fetching the piece before it was whole`));
          // Settled already when the fetch reported its copy; otherwise nothing more will come.
          void copy.promise.catch(() => livePulls.get(fetchId(d.agent, d.key))?.abort());
          copies.delete(fetchId(d.agent, d.key));
          scheduler.fetchEnded(d.agent, d.key, agentError);
          tell({ type: 'fetch-ended', agent: d.agent });
          step();
        }),
    );
  };

  /** Pulls in flight, by holder, so a holder found gone has all of them stopped at once. */
  const pullsFrom = new Map<string, Set<AbortController>>();
  /** Holders being asked whether they are still there after a pull from them broke off. */
  const checking = new Set<string>();

  /**
   * A pull that stalled or broke may mean the holder is gone (killed, partitioned): ask it, and if
   * it does not answer within seconds, lose it, so every piece it holds is pulled elsewhere or
   * fetched again now rather than each waiting out its own stall.
   */
  const checkHolder = (holder: string): void => {
    const probe = fetchers.get(holder)?.probe;
    if (probe === undefined || checking.has(holder)) return;
    checking.add(holder);
    track(
      probe({ signal: AbortSignal.any([run.signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) }).then(
        () => {
          checking.delete(holder);
        },
        (err: unknown) => {
          checking.delete(holder);
          if (run.signal.aborted) return;
          scheduler.lose(holder, `MM_AGENT_LOST: a pull from it broke off and it does not answer (${describeError(err)})`);
          for (const pull of pullsFrom.get(holder) ?? []) pull.abort();
          step();
        },
      ),
    );
  };

  const startPull = (d: Extract<Decision, { kind: 'pull' }>): void => {
    if (fetchers.get(d.holder)?.sharesWriterStore === true) {
      // Already in the writer's store: nothing moves.
      track(
        Promise.resolve().then(() => {
          scheduler.pullDone(d.holder, d.key, 0);
          step();
        }),
      );
      return;
    }
    const controller = new AbortController();
    const mine = pullsFrom.get(d.holder) ?? new Set<AbortController>();
    pullsFrom.set(d.holder, mine.add(controller));
    const pullSignal = AbortSignal.any([run.signal, controller.signal]);
    if (d.live) livePulls.set(fetchId(d.holder, d.key), controller);
    const copy = copies.get(fetchId(d.holder, d.key));
    const pulling =
      writer === undefined
        ? Promise.reject(new MeshmirrorError('MM_USAGE', 'no writer to pull into'))
        : d.live && writer.pullLive !== undefined && copy !== undefined
          ? writer.pullLive(d.holder, d.task, { from: d.from, sha256: copy.promise }, pullSignal)
          : d.live
            ? Promise.reject(new MeshmirrorError('MM_USAGE', `no live pull from ${d.holder}`))
            : writer.pull(d.holder, d.task, { from: d.from, sha256: d.sha256 }, pullSignal);
    track(
      pulling
        .then(
          (bytes) => {
            scheduler.pullDone(d.holder, d.key, bytes);
          },
          (err: unknown) => {
            if (run.signal.aborted) return;
            const code = errorCode(err);
            scheduler.pullFailed(d.holder, d.key, code, describeError(err), committedOf(err));
            if (BROKEN_OFF.has(code)) checkHolder(d.holder);
          },
        )
        .finally(() => {
          mine.delete(controller);
          if (livePulls.get(fetchId(d.holder, d.key)) === controller) livePulls.delete(fetchId(d.holder, d.key));
          step();
        }),
    );
  };

  const complete = (d: Extract<Decision, { kind: 'complete' }>): void => {
    if (writer === undefined) return;
    track(
      writer.completeBlob(d.digest, d.size, run.signal).then(
        () => options.onBlobHeld(d.digest, d.size),
        (err: unknown) => {
          if (run.signal.aborted) return;
          scheduler.blobFailed(d.digest, errorCode(err), describeError(err));
          step();
        },
      ),
    );
  };

  /** When each lost agent was last asked whether it is back, and whether an answer is awaited. */
  const probes = new Map<string, { at: number; out: boolean }>();
  const probeLost = (): void => {
    const now = Date.now();
    for (const name of scheduler.lostAgents()) {
      const probe = fetchers.get(name)?.probe;
      const last = probes.get(name);
      if (probe === undefined || last?.out === true || (last !== undefined && now - last.at < PROBE_EVERY_MS)) continue;
      const state = { at: now, out: true };
      probes.set(name, state);
      // Not tracked: a run whose work is done does not wait for an agent that is away.
      void probe({ signal: AbortSignal.any([run.signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) }).then(
        () => {
          state.out = false;
          if (run.signal.aborted || !scheduler.readmit(name)) return;
          probes.delete(name);
          step();
        },
        () => {
          state.out = false;
        },
      );
    }
  };

  /** Carries out what the scheduler decides now. */
  function step(): void {
    if (run.signal.aborted) return;
    for (const d of scheduler.decide()) {
      switch (d.kind) {
        case 'fetch': {
          const fetcher = fetchers.get(d.agent);
          if (fetcher !== undefined) startFetch(d, fetcher);
          break;
        }
        case 'cancel':
          fetches.get(fetchId(d.agent, d.key))?.abort();
          break;
        case 'pull':
          startPull(d);
          break;
        case 'complete':
          complete(d);
          break;
        case 'held':
          options.onBlobHeld(d.digest, d.size, d.holder);
          break;
        case 'failed':
          options.onBlobFailed?.(d.digest, d.code, d.message);
          break;
        case 'evict':
          // The agent's copy is no use to anyone; whether it managed to drop it changes nothing here.
          void fetchers
            .get(d.agent)
            ?.agent.evict([d.digest])
            .catch(() => undefined);
          break;
      }
    }
  }

  try {
    step();
    // A slow piece is re-checked for the endgame every second while anything is in flight.
    const tick = setInterval(() => {
      probeLost();
      step();
    }, TICK_MS);
    try {
      while (pending.size > 0) await Promise.race(pending);
    } finally {
      clearInterval(tick);
    }
    throwIfAborted(signal);
    if (fatal !== undefined) throw fatal.error;
  } finally {
    run.abort();
    signal?.removeEventListener('abort', onAbort);
  }
  scheduler.finish();
  return { failedBlobs: scheduler.failedBlobs, ...totals, pulledBytes: scheduler.pulledBytes, agents: scheduler.reports };
}

/** How many bytes of the piece the writer kept from a pull that failed (see `MeshWriter.pull`). */
function committedOf(err: unknown): number | undefined {
  const data = err instanceof MeshmirrorError ? (err.data as { committed?: unknown } | undefined) : undefined;
  return typeof data?.committed === 'number' ? data.committed : undefined;
}
