/**
 * The farm-wide fetch: pieces wait in the coordinator's queue and go to an agent only while its
 * assigned bytes are less than a couple of seconds of its measured upstream rate, so faster agents
 * take more, an agent that finishes early simply takes the next unstarted piece (nothing unstarted
 * is parked on a slow agent, so there is nothing to steal back), and in the endgame an idle agent
 * duplicates a piece that a slow one would finish last. The writer pulls each finished piece from
 * a holder and checks it against the hash the fetching agent reported, and an agent that dies or
 * stops answering loses only its unreported work, which goes to the others.
 */
import pLimit from 'p-limit';
import { describeError, errorCode, throwIfAborted, type Agent, type Digest, type Logger, type PieceEvent, type PieceTask } from '@meshmirror/shared';
import type { MeshPiece, MeshSplit } from '../plan/mesh-plan.ts';
import type { ProgressReporter } from '../report/progress.ts';

/** A remote agent the scheduler can hand pieces to. */
export interface MeshFetcher {
  agent: Agent;
  /** How it is shown in reports: its address. */
  address: string;
  /** Pieces it fetches at once. */
  slots: number;
}

/** The writer's side: pulls a piece from a holder into its store and completes blobs. */
export interface MeshWriter {
  /** Resolves with the bytes received; `MM_DIGEST_MISMATCH` when they do not hash to `sha256`. */
  pull(holder: string, task: PieceTask, sha256: Digest, signal: AbortSignal): Promise<number>;
  /** Assembles and verifies a blob whose pieces are all in the writer's store. */
  completeBlob(digest: Digest, size: number, signal: AbortSignal): Promise<void>;
}

export interface AgentReport {
  agent: string;
  address: string;
  /** Body bytes this agent received from upstream registries, retries included. */
  upstreamBytes: number;
  /** Bytes the writer pulled from this agent. */
  servedBytes: number;
  /** Bytes this agent received from peers (only the writer pulls, so 0 for fetching agents). */
  peerBytes: number;
  piecesFetched: number;
  piecesFailed: number;
  /** Pieces whose bytes did not match the hash reported for them when pulled from this agent. */
  wrongPieces: number;
  /** Set when the agent was lost (died, stopped answering) or distrusted during the run. */
  lost?: string;
  distrusted?: string;
}

export interface MeshFetchOptions {
  split: MeshSplit;
  fetchers: MeshFetcher[];
  writer: MeshWriter;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
  /** Pulls at once from holders into the writer. Default 8. */
  parallelPulls?: number;
  /** How often one piece may be pulled or fetched before its blob is given up. Default 5. */
  maxAttempts?: number;
  /** Called when the writer holds a blob whole and verified. */
  onBlobHeld: (digest: Digest, size: number) => void;
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

interface PieceState {
  piece: MeshPiece;
  key: string;
  /** Agents fetching it now, each with the controller that cancels its assignment. */
  fetching: Map<string, AbortController>;
  /** Agents whose copy failed or vanished: not asked for it again. */
  refused: Set<string>;
  pulling: boolean;
  done: boolean;
  attempts: number;
  /** Bytes the first fetcher reported so far, and when it started. */
  received: number;
  startedAt: number;
}

interface AgentState {
  fetcher: MeshFetcher;
  name: string;
  inFlight: number;
  /** Bytes of its in-flight pieces that have not arrived yet. */
  pendingBytes: number;
  usable: boolean;
  report: AgentReport;
  /** Bytes it received from upstream, and the time it spent with pieces in flight: its rate. */
  receivedBytes: number;
  busyMs: number;
  busySince: number;
}

/** Wrong pieces after which an agent is neither asked for pieces nor given work for the rest of the run. */
const DISTRUST_AFTER_WRONG_PIECES = 3;
/**
 * Endgame: once nothing waits, an idle agent duplicates a piece only if the piece has run this long,
 * still needs at least as long again, and the idle agent would fetch all of it in a third of that.
 * Cautious on purpose: every duplicate costs upstream bytes.
 */
const ENDGAME_MIN_RUNNING_MS = 2_000;
const ENDGAME_MIN_REMAINING_MS = 5_000;
const ENDGAME_ADVANTAGE = 3;
/**
 * How much work an agent is given ahead: pieces until their outstanding bytes reach this many
 * milliseconds at its measured rate (at least MIN_PIECES_IN_FLIGHT pieces, at most its slots), or
 * UNMEASURED_WINDOW_BYTES before it has a rate. Short enough that a slow agent never sits on work a
 * fast one could do; long enough that small blobs still go out many at a time.
 */
const WORK_AHEAD_MS = 2_000;
const MIN_PIECES_IN_FLIGHT = 1;
const UNMEASURED_WINDOW_BYTES = 8 * 1024 * 1024;
/** An agent's rate counts once it has been busy this long. */
const RATE_AFTER_BUSY_MS = 500;

export async function meshFetch(options: MeshFetchOptions): Promise<MeshFetchOutcome> {
  const { split, writer, progress, signal } = options;
  const log = options.logger.child({ component: 'coordinator:mesh' });
  const maxAttempts = options.maxAttempts ?? 5;
  const outcome: MeshFetchOutcome = { failedBlobs: new Map(), upstreamBytes: 0, retries: 0, rangesIgnored: 0, pulledBytes: 0, agents: [] };
  const agents = new Map<string, AgentState>();
  for (const fetcher of options.fetchers) {
    const report: AgentReport = {
      agent: fetcher.agent.name,
      address: fetcher.address,
      upstreamBytes: 0,
      servedBytes: 0,
      peerBytes: 0,
      piecesFetched: 0,
      piecesFailed: 0,
      wrongPieces: 0,
    };
    agents.set(fetcher.agent.name, {
      fetcher,
      name: fetcher.agent.name,
      inFlight: 0,
      pendingBytes: 0,
      usable: true,
      report,
      receivedBytes: 0,
      busyMs: 0,
      busySince: 0,
    });
    outcome.agents.push(report);
  }
  const piecesLeft = new Map(split.piecesPerBlob);
  const states = split.pieces.map((piece): PieceState => ({
    piece,
    key: `${piece.task.digest}@${piece.task.offset}`,
    fetching: new Map(),
    refused: new Set(),
    pulling: false,
    done: false,
    attempts: 0,
    received: 0,
    startedAt: 0,
  }));
  // Waiting pieces, longest first; pieces an agent started in an earlier run wait for that agent.
  const queue: PieceState[] = [];
  const resumeQueues = new Map<string, PieceState[]>();
  for (const state of states) {
    if (state.piece.holders.size > 0) continue;
    const resumeOn = state.piece.resumeOn?.agent;
    if (resumeOn !== undefined && agents.has(resumeOn)) resumeQueues.set(resumeOn, [...(resumeQueues.get(resumeOn) ?? []), state]);
    else queue.push(state);
  }
  const active = new Set<PieceState>();
  const isWaiting = (s: PieceState): boolean => !s.done && !s.pulling && s.fetching.size === 0 && usableHolders(s).length === 0;
  const requeue = (state: PieceState): void => {
    queue.unshift(state);
    dispatch();
  };
  const pullLimit = pLimit(options.parallelPulls ?? 8);
  const run = new AbortController();
  const onAbort = (): void => run.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const pending = new Set<Promise<void>>();
  const track = (work: Promise<void>): void => {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  };
  progress?.update({ phase: 'fetching', bytesTotal: split.missingBytes, bytesDone: 0 });

  const usableHolders = (state: PieceState): string[] => [...state.piece.holders.keys()].filter((a) => agents.get(a)?.usable === true && !state.refused.has(a));

  const failBlob = (digest: Digest, code: string, message: string): void => {
    if (outcome.failedBlobs.has(digest)) return;
    outcome.failedBlobs.set(digest, { code, message });
    for (const s of states) {
      if (s.piece.task.digest !== digest) continue;
      s.done = true;
      for (const controller of s.fetching.values()) controller.abort();
    }
  };

  const giveUp = (state: PieceState, code: string, message: string): void => {
    log.warn({ piece: state.key, attempts: state.attempts, code }, `piece given up: ${message}`);
    failBlob(state.piece.task.digest, code, message);
  };

  /** Marks an agent unusable and moves its work to the others. */
  const lose = (agent: AgentState, why: string, distrust = false): void => {
    if (!agent.usable) return;
    agent.usable = false;
    if (distrust) agent.report.distrusted = why;
    else agent.report.lost = why;
    log.warn(
      { agent: agent.name, address: agent.fetcher.address, why },
      distrust ? 'agent distrusted; its work moves to the others' : 'agent lost; its work moves to the others',
    );
    for (const s of active) s.fetching.get(agent.name)?.abort();
    // Pieces it would have resumed are fetched by the others from the start.
    queue.push(...(resumeQueues.get(agent.name) ?? []));
    resumeQueues.delete(agent.name);
  };

  const afterPull = async (state: PieceState): Promise<void> => {
    state.done = true;
    const { digest, blobSize } = state.piece.task;
    const left = (piecesLeft.get(digest) ?? 1) - 1;
    piecesLeft.set(digest, left);
    if (left > 0 || outcome.failedBlobs.has(digest)) return;
    try {
      await writer.completeBlob(digest, blobSize, run.signal);
      options.onBlobHeld(digest, blobSize);
    } catch (err) {
      if (run.signal.aborted) return;
      // Every piece matched the hash its fetcher reported, so upstream itself sent these bytes.
      log.error({ digest, code: errorCode(err), err: describeError(err) }, 'assembled blob failed verification');
      failBlob(digest, errorCode(err), describeError(err));
    }
  };

  const pull = (state: PieceState): void => {
    if (state.pulling || state.done) return;
    if (usableHolders(state).length === 0) {
      // Every copy is gone (its holder died or sent wrong bytes): fetch it again.
      state.piece.holders.clear();
      requeue(state);
      return;
    }
    state.pulling = true;
    track(
      pullLimit(async () => {
        try {
          const holders = usableHolders(state);
          if (state.done || run.signal.aborted || holders.length === 0) return;
          // Spread pulls over holders: the least-served first.
          const holder = holders.sort((a, b) => (agents.get(a)?.report.servedBytes ?? 0) - (agents.get(b)?.report.servedBytes ?? 0))[0]!;
          const sha256 = state.piece.holders.get(holder)!;
          state.attempts += 1;
          try {
            const bytes = await writer.pull(holder, state.piece.task, sha256, run.signal);
            const agent = agents.get(holder);
            if (agent !== undefined) agent.report.servedBytes += bytes;
            outcome.pulledBytes += bytes;
            await afterPull(state);
          } catch (err) {
            if (run.signal.aborted) return;
            const code = errorCode(err);
            const agent = agents.get(holder);
            state.refused.add(holder);
            state.piece.holders.delete(holder);
            if (code === 'MM_DIGEST_MISMATCH' && agent !== undefined) {
              agent.report.wrongPieces += 1;
              log.error(
                { agent: holder, piece: state.key, err: describeError(err) },
                'agent sent bytes that do not match the hash reported for them; not asked for this piece again',
              );
              // One bad copy may be its disk's fault; an agent that keeps sending wrong bytes gets no more work.
              if (agent.report.wrongPieces >= DISTRUST_AFTER_WRONG_PIECES) lose(agent, `sent wrong bytes for ${agent.report.wrongPieces} pieces`, true);
              // Its copy is no use to anyone.
              void agent.fetcher.agent.evict([state.piece.task.digest]).catch(() => undefined);
            } else {
              log.warn({ agent: holder, piece: state.key, code, err: describeError(err) }, 'pull from agent failed');
            }
            if (state.attempts >= maxAttempts) giveUp(state, code, `pulled ${state.attempts} times: ${describeError(err)}`);
          }
        } finally {
          state.pulling = false;
        }
        if (!state.done && !run.signal.aborted) pull(state);
      }),
    );
  };

  /** Upstream bytes per ms while it had pieces in flight; undefined until it has been busy a while. */
  const rateOf = (agent: AgentState): number | undefined => {
    const busy = agent.busyMs + (agent.inFlight > 0 ? Date.now() - agent.busySince : 0);
    return busy >= RATE_AFTER_BUSY_MS && agent.receivedBytes > 0 ? agent.receivedBytes / busy : undefined;
  };

  /** Whether the agent should be given another piece now. */
  const hasRoom = (agent: AgentState): boolean => {
    if (agent.inFlight >= agent.fetcher.slots) return false;
    if (agent.inFlight < MIN_PIECES_IN_FLIGHT) return true;
    const rate = rateOf(agent);
    return agent.pendingBytes < (rate === undefined ? UNMEASURED_WINDOW_BYTES : rate * WORK_AHEAD_MS);
  };

  const onEvent = (agent: AgentState, state: PieceState, event: PieceEvent): void => {
    switch (event.type) {
      case 'progress':
        agent.receivedBytes += event.bytes;
        if (state.fetching.size <= 1) {
          state.received += event.bytes;
          progress?.addBytes(event.bytes);
        }
        break;
      case 'retry':
        outcome.retries += 1;
        progress?.noteRetry(event);
        log.warn({ agent: agent.name, digest: event.digest, offset: event.offset, attempt: event.attempt, code: event.code }, event.message);
        break;
      case 'range-ignored':
        outcome.rangesIgnored += 1;
        break;
      case 'piece-done': {
        outcome.upstreamBytes += event.upstreamBytes;
        agent.report.upstreamBytes += event.upstreamBytes;
        agent.report.piecesFetched += 1;
        state.piece.holders.set(agent.name, event.sha256);
        break;
      }
      case 'piece-failed':
        outcome.upstreamBytes += event.upstreamBytes;
        agent.report.upstreamBytes += event.upstreamBytes;
        agent.report.piecesFailed += 1;
        // The agent already retried as the retry settings allow: the blob cannot be had now.
        log.warn({ agent: agent.name, piece: state.key, code: event.code }, `piece failed: ${event.message}`);
        failBlob(state.piece.task.digest, event.code, event.message);
        break;
      case 'blob-held':
        break;
    }
  };

  const startFetch = (agent: AgentState, state: PieceState): void => {
    const controller = new AbortController();
    state.fetching.set(agent.name, controller);
    active.add(state);
    if (state.fetching.size === 1) {
      state.startedAt = Date.now();
      state.received = state.piece.resumeOn?.agent === agent.name ? state.piece.resumeOn.committed : 0;
    }
    state.attempts += 1;
    if (agent.inFlight === 0) agent.busySince = Date.now();
    agent.inFlight += 1;
    // What this agent still has to bring in for the piece, counted down as its bytes arrive.
    let outstanding = state.piece.task.length - (state.piece.resumeOn?.agent === agent.name ? state.piece.resumeOn.committed : 0);
    agent.pendingBytes += outstanding;
    const callSignal = AbortSignal.any([run.signal, controller.signal]);
    const eventOf = (event: PieceEvent): void => {
      if (event.type === 'progress') {
        const counted = Math.min(outstanding, event.bytes);
        outstanding -= counted;
        agent.pendingBytes -= counted;
      }
      onEvent(agent, state, event);
    };
    track(
      agent.fetcher.agent
        .fetchPieces([state.piece.task], { signal: callSignal, onEvent: eventOf })
        .then(
          () => undefined,
          (err: unknown) => {
            if (run.signal.aborted || controller.signal.aborted) return;
            const code = errorCode(err);
            // The agent itself failed (died, stopped answering, its store broke): not this piece's fault.
            lose(agent, `${code}: ${describeError(err)}`);
          },
        )
        .finally(() => {
          agent.inFlight -= 1;
          if (agent.inFlight === 0) agent.busyMs += Date.now() - agent.busySince;
          agent.pendingBytes -= outstanding;
          state.fetching.delete(agent.name);
          if (state.fetching.size === 0) active.delete(state);
          if (state.piece.holders.has(agent.name)) {
            // First copy in: the other fetchers of an endgame duplicate stop.
            for (const other of state.fetching.values()) other.abort();
            pull(state);
          } else if (!state.done && !state.pulling && state.fetching.size === 0 && usableHolders(state).length === 0) {
            if (state.attempts >= maxAttempts) giveUp(state, 'MM_AGENT_LOST', `fetched ${state.attempts} times, by agents that were lost`);
            else requeue(state);
          }
          dispatch();
        }),
    );
  };

  /**
   * Places waiting pieces while agents have room: first the pieces each agent started in an earlier
   * run, then, longest piece first, on the agent that would finish its outstanding bytes soonest
   * (over its measured rate). Pieces stay in the coordinator's queue until an agent has room, so an
   * agent that finishes early takes the next one and a slow one is not waited on.
   */
  function dispatch(): void {
    if (run.signal.aborted) return;
    const usable = [...agents.values()].filter((a) => a.usable);
    if (usable.length === 0) {
      for (const s of [...queue, ...[...resumeQueues.values()].flat()]) if (isWaiting(s)) giveUp(s, 'MM_AGENT_LOST', 'no agent is left to fetch it');
      queue.length = 0;
      resumeQueues.clear();
      return;
    }
    for (const agent of usable) {
      const own = resumeQueues.get(agent.name) ?? [];
      while (hasRoom(agent) && own.length > 0) {
        const state = own.shift()!;
        if (isWaiting(state)) startFetch(agent, state);
      }
    }
    const rates = new Map(usable.map((a) => [a.name, rateOf(a)]));
    const known = [...rates.values()].filter((r) => r !== undefined);
    const typical = known.length > 0 ? known.reduce((x, y) => x + y, 0) / known.length : 1;
    for (let i = 0; i < queue.length;) {
      const state = queue[i]!;
      if (!isWaiting(state)) {
        queue.splice(i, 1);
        continue;
      }
      let best: AgentState | undefined;
      let bestFinish = Number.POSITIVE_INFINITY;
      for (const agent of usable) {
        if (!hasRoom(agent) || state.refused.has(agent.name)) continue;
        const finish = (agent.pendingBytes + state.piece.task.length) / (rates.get(agent.name) ?? typical);
        if (finish < bestFinish) {
          best = agent;
          bestFinish = finish;
        }
      }
      if (best === undefined) {
        if (!usable.some(hasRoom)) break;
        i += 1; // every agent with room has failed this piece; it waits for one that has not
        continue;
      }
      queue.splice(i, 1);
      startFetch(best, state);
    }
    endgame();
  }

  /** Once nothing waits, an idle agent duplicates the piece that would otherwise finish last. */
  function endgame(): void {
    if (queue.some(isWaiting)) return;
    const now = Date.now();
    for (const agent of agents.values()) {
      const rate = rateOf(agent);
      if (!agent.usable || agent.inFlight > 0 || rate === undefined) continue;
      // The piece whose current fetcher will take longest, if this agent would clearly beat it.
      let best: { state: PieceState; remainingMs: number } | undefined;
      for (const s of active) {
        if (s.done || s.pulling || s.piece.holders.size > 0 || s.fetching.size !== 1 || s.fetching.has(agent.name) || s.refused.has(agent.name)) continue;
        // Judged only once the piece has run long enough for its rate to mean something.
        if (now - s.startedAt < ENDGAME_MIN_RUNNING_MS) continue;
        // The piece is done by the time its fetcher has brought in everything it still owes: the
        // fetcher's own rate says when. (One piece's rate alone misleads: pieces sharing a link
        // take turns, and a starved one speeds up as soon as the others finish.)
        const fetcher = agents.get([...s.fetching.keys()][0] ?? '');
        const fetcherRate = fetcher === undefined ? undefined : rateOf(fetcher);
        const pieceRate = s.received / (now - s.startedAt);
        const remainingMs =
          fetcher !== undefined && fetcherRate !== undefined
            ? fetcher.pendingBytes / fetcherRate
            : pieceRate > 0
              ? (s.piece.task.length - s.received) / pieceRate
              : Number.POSITIVE_INFINITY;
        if (best === undefined || remainingMs > best.remainingMs) best = { state: s, remainingMs };
      }
      if (best === undefined) continue;
      const mineMs = best.state.piece.task.length / rate;
      if (best.remainingMs < ENDGAME_MIN_REMAINING_MS || mineMs * ENDGAME_ADVANTAGE > best.remainingMs) continue;
      log.info({ agent: agent.name, piece: best.state.key, remainingMs: Math.round(best.remainingMs) }, 'endgame: duplicating a slow piece');
      startFetch(agent, best.state);
    }
  }

  try {
    for (const state of states) if (state.piece.holders.size > 0) pull(state);
    dispatch();
    // A slow piece is re-checked for the endgame every second while anything is in flight.
    const tick = setInterval(() => dispatch(), 1_000);
    try {
      while (pending.size > 0) await Promise.race(pending);
    } finally {
      clearInterval(tick);
    }
    throwIfAborted(signal);
  } finally {
    run.abort();
    signal?.removeEventListener('abort', onAbort);
  }
  for (const s of states) {
    if (!s.done && !outcome.failedBlobs.has(s.piece.task.digest)) giveUp(s, 'MM_AGENT_LOST', 'no agent could fetch it');
  }
  return outcome;
}
