/**
 * The farm's scheduler, as decisions without I/O: which agent fetches which piece and when, which
 * holder the writer pulls a finished piece from, when a slow piece is worth duplicating, and when an
 * agent is lost or no longer trusted. The driver (`meshFetch`) reports what happened (progress, a
 * piece done, a pull that failed, an agent gone) and carries out what `decide()` returns. Time comes
 * from an injected clock, so every decision is unit-tested with fake agents.
 *
 * Pieces wait in the scheduler's queue and go to an agent only while its assigned bytes are less
 * than a couple of seconds at its measured upstream rate, so faster agents take more, an agent that
 * finishes early simply takes the next unstarted piece (nothing unstarted is parked on a slow agent,
 * so there is nothing to steal back), and in the endgame an idle agent duplicates a piece that a slow
 * one would finish last. An agent that dies or stops answering loses only its unreported work.
 */
import { MeshmirrorError, type BlobRef, type Digest, type Logger, type PieceTask } from '@meshmirror/shared';
import type { MeshPiece, MeshSplit } from '../plan/mesh-plan.ts';

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
  /**
   * Fetches stopped by the coordinator before they were whole (the losing copy of an endgame
   * duplicate, a piece of a blob that failed, a lost agent's); their bytes count in `upstreamBytes`.
   */
  piecesCancelled: number;
  /** Pieces whose bytes did not match the hash reported for them when pulled from this agent. */
  wrongPieces: number;
  /** Set when the agent was lost (died, stopped answering) or distrusted during the run. */
  lost?: string;
  distrusted?: string;
  /** Times it came back after being lost and was given work again in the same run. */
  readmitted?: number;
}

/** What the scheduler asks the driver to do. */
export type Decision =
  /** Start fetching a piece from upstream on an agent (`endgame`: a second copy of a slow piece). */
  | { kind: 'fetch'; agent: string; key: string; task: PieceTask; endgame: boolean }
  /** Stop an agent's fetch of a piece (another copy came in, its blob failed, the agent was lost). */
  | { kind: 'cancel'; agent: string; key: string }
  /**
   * Pull what the writer lacks of a piece from `holder`, whose copy is the piece's bytes from `from`
   * on, checked against `sha256`. `live`: the holder is fetching its copy right now, and its bytes
   * go to the writer as they arrive (the sha256 comes with the fetch's end). No `sha256`: the
   * holder's copy is the committed start of one it never finished, kept unchecked (the blob's
   * digest checks it).
   */
  | { kind: 'pull'; key: string; task: PieceTask; holder: string; from: number; live: false; sha256: Digest | undefined }
  | { kind: 'pull'; key: string; task: PieceTask; holder: string; from: number; live: true }
  /** Every piece of the blob is in the writer: assemble and verify it. */
  | ({ kind: 'complete' } & BlobRef)
  /** `deliver: 'holders'`: the blob is whole on `holder`, which the sink takes it from. */
  | ({ kind: 'held'; holder: string } & BlobRef)
  /** The blob cannot be had in this run (say so now: its images are done with). */
  | { kind: 'failed'; digest: Digest; code: string; message: string }
  /** The agent's copy of the blob is wrong: drop it. */
  | { kind: 'evict'; agent: string; digest: Digest };

export interface SchedulerAgent {
  name: string;
  address: string;
  /** Pieces it fetches at once. */
  slots: number;
  /** The writer can pull a piece from it while it fetches it (a remote agent, and a writer that can). */
  streams?: boolean;
}

export interface FarmSchedulerOptions {
  split: Pick<MeshSplit, 'pieces' | 'piecesPerBlob'> & Partial<Pick<MeshSplit, 'assemble'>>;
  agents: SchedulerAgent[];
  /** How often one piece may be pulled or fetched before its blob is given up. Default 5. */
  maxAttempts?: number;
  /** Pulls into the writer at once. Default PULLS_PER_AGENT for each agent. */
  parallelPulls?: number;
  /**
   * Where finished blobs go: pulled piece by piece into the writer (the default), or left with the
   * agent that holds them (`holders`: the sink takes each blob from its holder, as mirror to mirror's
   * agents push what they fetched). With `holders` every piece must be a whole blob.
   */
  deliver?: 'writer' | 'holders';
  logger?: Logger;
  /** Epoch ms; injected so tests drive time. */
  now?: () => number;
}

interface PieceState {
  piece: MeshPiece;
  key: string;
  /** Agents fetching it now. */
  fetching: Set<string>;
  /** Agents whose copy failed or vanished: not asked for it again. */
  refused: Set<string>;
  /** Waiting for a pull slot, or being pulled. */
  queuedForPull: boolean;
  pulling: boolean;
  done: boolean;
  attempts: number;
  /** Bytes the first fetcher reported so far, and when it started. */
  received: number;
  startedAt: number;
  /**
   * Bytes of the piece the writer holds from a pull that broke off (its holder was lost mid-piece):
   * the next fetch brings only the rest.
   */
  writerHas: number;
  /** Where each agent's copy starts in the piece (it was asked for the bytes from there on). */
  copyFrom: Map<string, number>;
  /** The agent a live pull is running from. */
  live: string | undefined;
}

/** An agent's pieces from one source host: each host has its own room, so a host that is down holds back only its own pieces. */
interface Lane {
  inFlight: number;
  /** Bytes of these pieces that have not arrived yet. */
  pendingBytes: number;
}

interface AgentState {
  name: string;
  /** Pieces it fetches at once from each source host. */
  slots: number;
  streams: boolean;
  /** Its pieces in flight, by source host; the agent's totals are their sums. */
  lanes: Map<string, Lane>;
  usable: boolean;
  report: AgentReport;
  /** Bytes it received from upstream, and the time it spent with pieces in flight: its rate. */
  receivedBytes: number;
  busyMs: number;
  busySince: number;
  /** Its own store failed (a full disk): it takes no more work in this run. */
  storeFailed?: string;
}

/** Wrong pieces after which an agent is neither asked for pieces nor given work for the rest of the run. */
export const DISTRUST_AFTER_WRONG_PIECES = 3;
/**
 * Endgame: once nothing waits, an idle agent duplicates a piece only if the piece has run this long,
 * still needs at least as long again, and the idle agent would fetch all of it in a third of that.
 * Cautious on purpose: every duplicate costs upstream bytes.
 */
export const ENDGAME_MIN_RUNNING_MS = 2_000;
export const ENDGAME_MIN_REMAINING_MS = 5_000;
export const ENDGAME_ADVANTAGE = 3;
/**
 * How much work an agent is given ahead: pieces until their outstanding bytes reach this many
 * milliseconds at its measured rate (at least MIN_PIECES_IN_FLIGHT pieces, at most its slots), or,
 * before it has a rate, an UNMEASURED_SHARE-th of its even share of the bytes to fetch, within
 * UNMEASURED_MIN_WINDOW_BYTES..UNMEASURED_WINDOW_BYTES. Short enough that a slow agent never sits on
 * work a fast one could do; long enough that small blobs still go out many at a time, and that an
 * agent's link stays busy while its first rate is measured. (With 8 MiB, a farm of three at
 * 200 Mbit/s ran one 14 MiB piece per agent, and each agent's intake fell by two thirds when that
 * piece ended: the next had to be asked for and start from nothing.)
 */
export const WORK_AHEAD_MS = 2_000;
const MIN_PIECES_IN_FLIGHT = 1;
export const UNMEASURED_WINDOW_BYTES = 32 * 1024 * 1024;
export const UNMEASURED_MIN_WINDOW_BYTES = 8 * 1024 * 1024;
export const UNMEASURED_SHARE = 4;
/**
 * Pulls into the writer at once, per agent of the farm: the writer must take finished pieces in as
 * fast as the agents together bring them from upstream, or they sit on the agents (and die with a
 * lost one), so the default grows with the farm instead of staying at 8. (bench:mesh at 200 Mbit/s
 * on the 2-core machine, three agents: 13.3 s with 8, 10.7 s and 15.7 s with 24; that machine is
 * CPU-bound there, so the runs say little either way.)
 */
export const PULLS_PER_AGENT = 8;
/** An agent's rate counts once it has been busy this long. */
const RATE_AFTER_BUSY_MS = 500;

const fetchId = (agent: string, key: string): string => `${agent}\n${key}`;

export class FarmScheduler {
  readonly failedBlobs = new Map<Digest, { code: string; message: string }>();
  readonly reports: AgentReport[] = [];
  /** Bytes the writer pulled from agents. */
  pulledBytes = 0;

  readonly #log: Logger | undefined;
  readonly #now: () => number;
  readonly #maxAttempts: number;
  readonly #parallelPulls: number;
  readonly #deliverToHolders: boolean;
  /** Bytes an agent is given ahead before it has a rate (see UNMEASURED_WINDOW_BYTES). */
  readonly #unmeasuredWindow: number;
  readonly #agents = new Map<string, AgentState>();
  readonly #pieces = new Map<string, PieceState>();
  readonly #piecesLeft: Map<Digest, number>;
  /**
   * Waiting pieces by source host, each longest first; pieces an agent started in an earlier run
   * wait for that agent.
   */
  readonly #queues = new Map<string, PieceState[]>();
  readonly #resumeQueues = new Map<string, PieceState[]>();
  /** Pieces being fetched. */
  readonly #active = new Set<PieceState>();
  /** Pieces with a verified copy somewhere, waiting for a pull slot. */
  readonly #toPull: PieceState[] = [];
  #pullsInFlight = 0;
  /** What this agent still has to bring in for a piece, counted down as its bytes arrive. */
  readonly #outstanding = new Map<string, number>();
  /** Decisions made by events (cancels, evictions, blob completions), handed out by the next `decide()`. */
  #outbox: Decision[] = [];

  constructor(options: FarmSchedulerOptions) {
    this.#log = options.logger;
    this.#now = options.now ?? Date.now;
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#parallelPulls = options.parallelPulls ?? PULLS_PER_AGENT * Math.max(1, options.agents.length);
    this.#piecesLeft = new Map(options.split.piecesPerBlob);
    this.#deliverToHolders = options.deliver === 'holders';
    if (this.#deliverToHolders) {
      const split = options.split.pieces.find((p) => p.task.offset !== 0 || p.task.length !== p.task.blobSize);
      if (split !== undefined) throw new MeshmirrorError('MM_USAGE', `blob ${split.task.digest} is split into pieces; delivery to holders needs whole blobs`);
    }
    for (const agent of options.agents) {
      const report: AgentReport = {
        agent: agent.name,
        address: agent.address,
        upstreamBytes: 0,
        servedBytes: 0,
        peerBytes: 0,
        piecesFetched: 0,
        piecesFailed: 0,
        piecesCancelled: 0,
        wrongPieces: 0,
      };
      this.#agents.set(agent.name, {
        name: agent.name,
        slots: agent.slots,
        streams: agent.streams === true,
        lanes: new Map(),
        usable: true,
        report,
        receivedBytes: 0,
        busyMs: 0,
        busySince: 0,
      });
      this.reports.push(report);
    }
    /** Bytes the agents fetch from upstream: every piece nobody holds a copy of yet. */
    let toFetch = 0;
    for (const piece of options.split.pieces) {
      const state: PieceState = {
        piece,
        key: `${piece.task.digest}@${piece.task.offset}`,
        fetching: new Set(),
        refused: new Set(),
        queuedForPull: false,
        pulling: false,
        done: false,
        attempts: 0,
        received: 0,
        startedAt: 0,
        writerHas: 0,
        copyFrom: new Map(),
        live: undefined,
      };
      this.#pieces.set(state.key, state);
      if (piece.holders.size > 0 || (piece.unchecked?.size ?? 0) > 0) {
        this.#wantPull(state);
        continue;
      }
      toFetch += piece.task.length;
      const resumeOn = piece.resumeOn?.agent;
      if (resumeOn !== undefined && this.#agents.has(resumeOn)) this.#resumeQueues.set(resumeOn, [...(this.#resumeQueues.get(resumeOn) ?? []), state]);
      else this.#enqueue(state);
    }
    const share = Math.ceil(toFetch / (Math.max(1, options.agents.length) * UNMEASURED_SHARE));
    this.#unmeasuredWindow = Math.min(UNMEASURED_WINDOW_BYTES, Math.max(UNMEASURED_MIN_WINDOW_BYTES, share));
    // Blobs whose every piece the writer already holds (a run stopped before it assembled them).
    for (const blob of options.split.assemble ?? []) this.#outbox.push({ kind: 'complete', digest: blob.digest, size: blob.size });
  }

  /** What to do now: cancels and completions that events produced, pulls that have a slot, and pieces for agents with room. */
  decide(): Decision[] {
    const out = this.#outbox;
    this.#outbox = [];
    this.#startPulls(out);
    this.#dispatch(out);
    this.#endgame(out);
    // What deciding itself produced (a piece given up: its blob's cancels and failure).
    out.push(...this.#outbox);
    this.#outbox = [];
    return out;
  }

  /** Nothing in flight and nothing that could start: the fetch is over. */
  get idle(): boolean {
    return this.#active.size === 0 && this.#pullsInFlight === 0 && this.#toPull.length === 0 && this.#outbox.length === 0;
  }

  /** The piece is given up unless it is done or its blob already failed; call once the driver has nothing in flight. */
  finish(): void {
    for (const s of this.#pieces.values()) {
      if (!s.done && !this.failedBlobs.has(s.piece.task.digest)) this.#giveUp(s, 'MM_AGENT_LOST', 'no agent could fetch it');
    }
    this.#outbox = [];
  }

  // --- what the agents report while fetching ---

  /** Body bytes arrived at `agent` for the piece; true when they count toward the run's progress (its first fetcher's). */
  fetchProgress(agent: string, key: string, bytes: number): boolean {
    const a = this.#agents.get(agent);
    const s = this.#pieces.get(key);
    if (a === undefined || s === undefined) return false;
    a.receivedBytes += bytes;
    const id = fetchId(agent, key);
    const outstanding = this.#outstanding.get(id) ?? 0;
    const counted = Math.min(outstanding, bytes);
    this.#outstanding.set(id, outstanding - counted);
    this.#laneOf(a, s).pendingBytes -= counted;
    if (s.fetching.size > 1) return false;
    s.received += bytes;
    return true;
  }

  /** The agent holds the piece, verified against `sha256` by itself. */
  fetchDone(agent: string, key: string, sha256: Digest, upstreamBytes: number): void {
    const a = this.#agents.get(agent);
    const s = this.#pieces.get(key);
    if (a === undefined || s === undefined) return;
    a.report.upstreamBytes += upstreamBytes;
    a.report.piecesFetched += 1;
    s.piece.holders.set(agent, sha256);
  }

  /** The agent retried as the retry settings allow: the blob cannot be had now. */
  fetchFailed(agent: string, key: string, code: string, message: string, upstreamBytes: number): void {
    const a = this.#agents.get(agent);
    const s = this.#pieces.get(key);
    if (a === undefined || s === undefined) return;
    a.report.upstreamBytes += upstreamBytes;
    a.report.piecesFailed += 1;
    this.#log?.warn({ agent, piece: key, code }, `piece failed: ${message}`);
    this.#failBlob(s.piece.task.digest, code, message);
  }

  /**
   * The last word on a fetch that was stopped (cancelled, or its agent stopping itself): the bytes it
   * received count upstream, and the piece counts as the agent says it ended (one it finished just
   * before the cancel counts as fetched), but nothing else changes: the piece's fate was decided when
   * the fetch was stopped.
   */
  fetchStopped(agent: string, upstreamBytes: number, ended: 'fetched' | 'failed' | 'cancelled'): void {
    const a = this.#agents.get(agent);
    if (a === undefined) return;
    a.report.upstreamBytes += upstreamBytes;
    if (ended === 'fetched') a.report.piecesFetched += 1;
    else if (ended === 'failed') a.report.piecesFailed += 1;
    else a.report.piecesCancelled += 1;
  }

  /**
   * The agent could not keep the piece because its own store failed (a full disk): the agent, not
   * the piece, is at fault. The agent is lost for the rest of the run (a store that is full stays
   * full) and the piece goes to the others when the fetch ends.
   */
  storeFailed(agent: string, key: string, message: string, upstreamBytes: number): void {
    const a = this.#agents.get(agent);
    if (a === undefined) return;
    a.report.upstreamBytes += upstreamBytes;
    a.report.piecesFailed += 1;
    a.storeFailed = message;
    this.#pieces.get(key)?.refused.add(agent);
    this.lose(agent, `its store failed: ${message}`);
  }

  /**
   * The agent's fetch of the piece is over. `agentError`: the agent itself failed (died, stopped
   * answering, its store broke), not the piece; leave it out for a fetch that was cancelled.
   */
  fetchEnded(agent: string, key: string, agentError?: { code: string; message: string }): void {
    const a = this.#agents.get(agent);
    const s = this.#pieces.get(key);
    if (a === undefined || s === undefined) return;
    if (agentError !== undefined) this.lose(agent, `${agentError.code}: ${agentError.message}`);
    const id = fetchId(agent, key);
    const lane = this.#laneOf(a, s);
    lane.inFlight -= 1;
    lane.pendingBytes -= this.#outstanding.get(id) ?? 0;
    if (inFlightOf(a) === 0) a.busyMs += this.#now() - a.busySince;
    this.#outstanding.delete(id);
    s.fetching.delete(agent);
    if (s.fetching.size === 0) this.#active.delete(s);
    if (s.piece.holders.has(agent)) {
      // First copy in: the other fetchers of an endgame duplicate stop.
      for (const other of s.fetching) this.#outbox.push({ kind: 'cancel', agent: other, key });
      this.#wantPull(s);
    } else if (!s.done && !s.pulling && s.fetching.size === 0) {
      if (this.#pullSources(s).length > 0) this.#wantPull(s);
      else if (s.attempts >= this.#maxAttempts) this.#giveUp(s, 'MM_AGENT_LOST', `fetched ${s.attempts} times, by agents that were lost`);
      else this.#enqueue(s, true);
    }
  }

  // --- what the writer reports ---

  pullDone(holder: string, key: string, bytes: number): void {
    const s = this.#pieces.get(key);
    if (s === undefined) return;
    if (s.live === holder) s.live = undefined;
    else this.#pullsInFlight -= 1;
    s.pulling = false;
    const a = this.#agents.get(holder);
    if (a !== undefined) a.report.servedBytes += bytes;
    this.pulledBytes += bytes;
    s.done = true;
    const { digest, blobSize } = s.piece.task;
    const left = (this.#piecesLeft.get(digest) ?? 1) - 1;
    this.#piecesLeft.set(digest, left);
    if (left === 0 && !this.failedBlobs.has(digest)) this.#outbox.push({ kind: 'complete', digest, size: blobSize });
  }

  /**
   * The pull failed; `MM_DIGEST_MISMATCH`: the holder's bytes do not hash to what it reported (the
   * writer dropped them). Otherwise `writerHas` says how many bytes of the piece the writer kept.
   */
  pullFailed(holder: string, key: string, code: string, message: string, writerHas?: number): void {
    const s = this.#pieces.get(key);
    if (s === undefined) return;
    const live = s.live === holder;
    if (live) s.live = undefined;
    else this.#pullsInFlight -= 1;
    s.pulling = false;
    const a = this.#agents.get(holder);
    if (writerHas !== undefined) {
      // What the writer kept of this pull counts as pulled from the holder: it is not fetched again.
      const kept = Math.max(0, Math.min(writerHas, s.piece.task.length) - s.writerHas);
      this.pulledBytes += kept;
      if (a !== undefined) a.report.servedBytes += kept;
      s.writerHas = Math.min(writerHas, s.piece.task.length);
    }
    if (code === 'MM_DIGEST_MISMATCH') s.writerHas = 0;
    if (live && code !== 'MM_DIGEST_MISMATCH') {
      // The holder's fetch goes on (its copy is pulled once fetched) unless the holder itself is
      // gone; then the piece is fetched again from what the writer kept.
      this.#log?.info({ agent: holder, piece: key, code, writerHas: s.writerHas, err: message }, 'live pull broke off');
      if (!s.done && s.fetching.size === 0) {
        if (this.#pullSources(s).length > 0) this.#wantPull(s);
        else if (s.attempts >= this.#maxAttempts) this.#giveUp(s, code, `fetched ${s.attempts} times: ${message}`);
        else this.#enqueue(s, true);
      }
      return;
    }
    s.refused.add(holder);
    s.piece.holders.delete(holder);
    s.piece.unchecked?.delete(holder);
    if (code === 'MM_DIGEST_MISMATCH' && a !== undefined) {
      a.report.wrongPieces += 1;
      this.#log?.error({ agent: holder, piece: key, err: message }, 'agent sent bytes that do not match the hash reported for them; not asked for this piece again');
      // One bad copy may be its disk's fault; an agent that keeps sending wrong bytes gets no more work.
      if (a.report.wrongPieces >= DISTRUST_AFTER_WRONG_PIECES) this.lose(holder, `sent wrong bytes for ${a.report.wrongPieces} pieces`, true);
      // Its copy is no use to anyone.
      this.#outbox.push({ kind: 'evict', agent: holder, digest: s.piece.task.digest });
    } else {
      this.#log?.warn({ agent: holder, piece: key, code, err: message }, 'pull from agent failed');
    }
    if (s.attempts >= this.#maxAttempts) this.#giveUp(s, code, `pulled ${s.attempts} times: ${message}`);
    else this.#wantPull(s);
  }

  /** Assembling the blob failed although every piece matched its hash: upstream itself sent these bytes. */
  blobFailed(digest: Digest, code: string, message: string): void {
    this.#log?.error({ digest, code, err: message }, 'assembled blob failed verification');
    this.#failBlob(digest, code, message);
  }

  // --- agents ---

  /** Marks an agent unusable and moves its work to the others. */
  lose(agent: string, why: string, distrust = false): void {
    const a = this.#agents.get(agent);
    if (a === undefined || !a.usable) return;
    a.usable = false;
    if (distrust) a.report.distrusted = why;
    else a.report.lost = why;
    this.#log?.warn(
      { agent, address: a.report.address, why },
      distrust ? 'agent distrusted; its work moves to the others' : 'agent lost; its work moves to the others',
    );
    for (const s of this.#active) if (s.fetching.has(agent)) this.#outbox.push({ kind: 'cancel', agent, key: s.key });
    // Pieces it would have resumed are fetched by the others from the start.
    for (const s of this.#resumeQueues.get(agent) ?? []) this.#enqueue(s);
    this.#resumeQueues.delete(agent);
  }

  /**
   * A lost agent answers again: it gets work again. Pieces it failed before stay refused to it, and
   * an agent distrusted for wrong bytes, or whose store failed, is not re-admitted.
   */
  readmit(agent: string): boolean {
    const a = this.#agents.get(agent);
    if (a === undefined || a.usable || a.report.distrusted !== undefined || a.storeFailed !== undefined) return false;
    a.usable = true;
    delete a.report.lost;
    a.report.readmitted = (a.report.readmitted ?? 0) + 1;
    this.#log?.info({ agent, address: a.report.address }, 'agent answers again; it is given work again');
    return true;
  }

  /** Agents lost (not distrusted, their stores working) during the run, to be watched for their return. */
  lostAgents(): string[] {
    return [...this.#agents.values()].filter((a) => !a.usable && a.report.distrusted === undefined && a.storeFailed === undefined).map((a) => a.name);
  }

  // --- decisions ---

  /** Agents with a verified copy of the piece that can be asked for it. */
  #usableHolders(s: PieceState): string[] {
    return [...s.piece.holders.keys()].filter((a) => this.#agents.get(a)?.usable === true && !s.refused.has(a));
  }

  /** Who the piece can be pulled from: the verified copies, else the unchecked ones. */
  #pullSources(s: PieceState): string[] {
    const verified = this.#usableHolders(s);
    if (verified.length > 0 || this.#deliverToHolders) return verified;
    return [...(s.piece.unchecked ?? [])].filter((a) => this.#agents.get(a)?.usable === true && !s.refused.has(a));
  }

  #isWaiting(s: PieceState): boolean {
    return !s.done && !s.pulling && s.fetching.size === 0 && !s.queuedForPull && this.#pullSources(s).length === 0;
  }

  #wantPull(s: PieceState): void {
    if (s.done || s.pulling || s.queuedForPull) return;
    if (this.#deliverToHolders) {
      const holder = this.#usableHolders(s)[0];
      if (holder === undefined) return;
      s.done = true;
      const { digest, blobSize } = s.piece.task;
      this.#piecesLeft.set(digest, 0);
      if (!this.failedBlobs.has(digest)) this.#outbox.push({ kind: 'held', digest, size: blobSize, holder });
      return;
    }
    s.queuedForPull = true;
    this.#toPull.push(s);
  }

  #startPulls(out: Decision[]): void {
    while (this.#toPull.length > 0 && this.#pullsInFlight < this.#parallelPulls) {
      const s = this.#toPull.shift()!;
      s.queuedForPull = false;
      if (s.done || this.failedBlobs.has(s.piece.task.digest)) continue;
      const holders = this.#pullSources(s);
      if (holders.length === 0) {
        // Every copy is gone (its holder died or sent wrong bytes): fetch it again.
        s.piece.holders.clear();
        s.piece.unchecked?.clear();
        this.#enqueue(s, true);
        continue;
      }
      // Spread pulls over holders: the least-served first.
      const holder = holders.sort((x, y) => (this.#agents.get(x)?.report.servedBytes ?? 0) - (this.#agents.get(y)?.report.servedBytes ?? 0))[0]!;
      s.pulling = true;
      s.attempts += 1;
      this.#pullsInFlight += 1;
      out.push({ kind: 'pull', key: s.key, task: s.piece.task, holder, from: s.copyFrom.get(holder) ?? 0, live: false, sha256: s.piece.holders.get(holder) });
    }
  }

  /** Upstream bytes per ms while it had pieces in flight; undefined until it has been busy a while. */
  #rateOf(a: AgentState): number | undefined {
    const busy = a.busyMs + (inFlightOf(a) > 0 ? this.#now() - a.busySince : 0);
    return busy >= RATE_AFTER_BUSY_MS && a.receivedBytes > 0 ? a.receivedBytes / busy : undefined;
  }

  #laneOf(a: AgentState, s: PieceState): Lane {
    const host = hostOf(s);
    let lane = a.lanes.get(host);
    if (lane === undefined) {
      lane = { inFlight: 0, pendingBytes: 0 };
      a.lanes.set(host, lane);
    }
    return lane;
  }

  /**
   * Whether the agent should be given another piece from `host` now. With a single agent there is
   * nobody to keep work for, so only its slots count.
   */
  #hasRoom(a: AgentState, host: string): boolean {
    const lane = a.lanes.get(host) ?? { inFlight: 0, pendingBytes: 0 };
    if (lane.inFlight >= a.slots) return false;
    if (lane.inFlight < MIN_PIECES_IN_FLIGHT || this.#agents.size === 1) return true;
    const rate = this.#rateOf(a);
    return lane.pendingBytes < (rate === undefined ? this.#unmeasuredWindow : rate * WORK_AHEAD_MS);
  }

  #enqueue(s: PieceState, first = false): void {
    const host = hostOf(s);
    const queue = this.#queues.get(host);
    if (queue === undefined) this.#queues.set(host, [s]);
    else if (first) queue.unshift(s);
    else queue.push(s);
  }

  #anyWaiting(): boolean {
    for (const queue of this.#queues.values()) if (queue.some((s) => this.#isWaiting(s))) return true;
    return false;
  }

  #startFetch(out: Decision[], a: AgentState, s: PieceState, endgame: boolean): void {
    s.fetching.add(a.name);
    this.#active.add(s);
    // Only what the writer lacks: after a holder was lost mid-piece, the rest of the piece.
    // (A writer that kept every byte without a hash to check them by starts over: nothing is left to fetch from.)
    const from = s.writerHas < s.piece.task.length ? s.writerHas : 0;
    const task = from === 0 ? s.piece.task : { ...s.piece.task, offset: s.piece.task.offset + from, length: s.piece.task.length - from };
    s.copyFrom.set(a.name, from);
    const resumed = from === 0 && s.piece.resumeOn?.agent === a.name ? s.piece.resumeOn.committed : 0;
    if (s.fetching.size === 1) {
      s.startedAt = this.#now();
      s.received = resumed;
    }
    s.attempts += 1;
    if (inFlightOf(a) === 0) a.busySince = this.#now();
    const outstanding = task.length - resumed;
    const lane = this.#laneOf(a, s);
    lane.inFlight += 1;
    lane.pendingBytes += outstanding;
    this.#outstanding.set(fetchId(a.name, s.key), outstanding);
    out.push({ kind: 'fetch', agent: a.name, key: s.key, task, endgame });
    // Its bytes go on to the writer as they arrive: losing the agent then costs only what was in flight.
    if (a.streams && !endgame && !s.pulling && !s.queuedForPull) {
      s.pulling = true;
      s.live = a.name;
      out.push({ kind: 'pull', key: s.key, task: s.piece.task, holder: a.name, from, live: true });
    }
  }

  /**
   * Places waiting pieces while agents have room: first the pieces each agent started in an earlier
   * run, then, longest piece first, on the agent that would finish its outstanding bytes soonest
   * (over its measured rate). Pieces stay in the queue until an agent has room, so an agent that
   * finishes early takes the next one and a slow one is not waited on.
   */
  #dispatch(out: Decision[]): void {
    const usable = [...this.#agents.values()].filter((a) => a.usable);
    if (usable.length === 0) {
      for (const s of [...[...this.#queues.values()].flat(), ...[...this.#resumeQueues.values()].flat()])
        if (this.#isWaiting(s)) this.#giveUp(s, 'MM_AGENT_LOST', 'no agent is left to fetch it');
      this.#queues.clear();
      this.#resumeQueues.clear();
      return;
    }
    for (const a of usable) {
      const own = this.#resumeQueues.get(a.name) ?? [];
      for (let i = 0; i < own.length;) {
        const s = own[i]!;
        if (!this.#isWaiting(s)) own.splice(i, 1);
        else if (!this.#hasRoom(a, hostOf(s))) i += 1;
        else {
          own.splice(i, 1);
          this.#startFetch(out, a, s, false);
        }
      }
    }
    const rates = new Map(usable.map((a) => [a.name, this.#rateOf(a)]));
    const known = [...rates.values()].filter((r) => r !== undefined);
    const typical = known.length > 0 ? known.reduce((x, y) => x + y, 0) / known.length : 1;
    for (const [host, queue] of this.#queues) {
      for (let i = 0; i < queue.length;) {
        const s = queue[i]!;
        if (!this.#isWaiting(s)) {
          queue.splice(i, 1);
          continue;
        }
        let best: AgentState | undefined;
        let bestFinish = Number.POSITIVE_INFINITY;
        for (const a of usable) {
          if (!this.#hasRoom(a, host) || s.refused.has(a.name)) continue;
          const finish = (pendingOf(a) + s.piece.task.length) / (rates.get(a.name) ?? typical);
          if (finish < bestFinish) {
            best = a;
            bestFinish = finish;
          }
        }
        if (best === undefined) {
          if (!usable.some((a) => this.#hasRoom(a, host))) break;
          i += 1; // every agent with room has failed this piece; it waits for one that has not
          continue;
        }
        queue.splice(i, 1);
        this.#startFetch(out, best, s, false);
      }
    }
  }

  /** Once nothing waits, an idle agent duplicates the piece that would otherwise finish last. */
  #endgame(out: Decision[]): void {
    const idle = [...this.#agents.values()].filter((a) => a.usable && inFlightOf(a) === 0 && this.#rateOf(a) !== undefined);
    if (idle.length === 0 || this.#anyWaiting()) return;
    const now = this.#now();
    // The pieces worth a second copy, the one that would finish last first: judged once for all
    // idle agents (once per idle agent made a decision cost idle agents × pieces in flight, which
    // at the end of a run on a hundred agents is most of the coordinator's time).
    const slow: Array<{ state: PieceState; remainingMs: number }> = [];
    for (const s of this.#active) {
      if (s.done || (s.pulling && s.live === undefined) || s.piece.holders.size > 0 || s.fetching.size !== 1) continue;
      // Judged only once the piece has run long enough for its rate to mean something.
      if (now - s.startedAt < ENDGAME_MIN_RUNNING_MS) continue;
      // The piece is done by the time its fetcher has brought in everything it still owes: the
      // fetcher's own rate says when. (One piece's rate alone misleads: pieces sharing a link
      // take turns, and a starved one speeds up as soon as the others finish.)
      const fetcher = this.#agents.get(s.fetching.values().next().value ?? '');
      const fetcherRate = fetcher === undefined ? undefined : this.#rateOf(fetcher);
      const pieceRate = s.received / (now - s.startedAt);
      const remainingMs =
        fetcher !== undefined && fetcherRate !== undefined
          ? pendingOf(fetcher) / fetcherRate
          : pieceRate > 0
            ? (s.piece.task.length - s.received) / pieceRate
            : Number.POSITIVE_INFINITY;
      if (remainingMs >= ENDGAME_MIN_REMAINING_MS) slow.push({ state: s, remainingMs });
    }
    // Stable: of pieces that would finish together, the first in flight goes first.
    slow.sort((x, y) => y.remainingMs - x.remainingMs);
    let first = 0;
    for (const a of idle) {
      // Pieces duplicated by the agents before this one are no longer candidates.
      while (first < slow.length && slow[first]!.state.fetching.size !== 1) first += 1;
      let best: (typeof slow)[number] | undefined;
      for (let i = first; i < slow.length && best === undefined; i++) {
        const c = slow[i]!;
        if (c.state.fetching.size === 1 && !c.state.refused.has(a.name)) best = c;
      }
      if (best === undefined) continue;
      // Only if this agent would clearly beat the piece's fetcher.
      const mineMs = best.state.piece.task.length / this.#rateOf(a)!;
      if (mineMs * ENDGAME_ADVANTAGE > best.remainingMs) continue;
      this.#log?.info({ agent: a.name, piece: best.state.key, remainingMs: Math.round(best.remainingMs) }, 'endgame: duplicating a slow piece');
      this.#startFetch(out, a, best.state, true);
    }
  }

  #failBlob(digest: Digest, code: string, message: string): void {
    if (this.failedBlobs.has(digest)) return;
    this.failedBlobs.set(digest, { code, message });
    this.#outbox.push({ kind: 'failed', digest, code, message });
    for (const s of this.#pieces.values()) {
      if (s.piece.task.digest !== digest) continue;
      s.done = true;
      for (const agent of s.fetching) this.#outbox.push({ kind: 'cancel', agent, key: s.key });
    }
  }

  #giveUp(s: PieceState, code: string, message: string): void {
    this.#log?.warn({ piece: s.key, attempts: s.attempts, code }, `piece given up: ${message}`);
    this.#failBlob(s.piece.task.digest, code, message);
  }
}

/** The source host a piece is fetched from first. */
function hostOf(s: PieceState): string {
  return s.piece.task.sources[0]?.registry ?? '';
}

/** Pieces the agent has in flight, from every source host. */
function inFlightOf(a: AgentState): number {
  let n = 0;
  for (const lane of a.lanes.values()) n += lane.inFlight;
  return n;
}

/** Bytes of the agent's pieces in flight that have not arrived yet. */
function pendingOf(a: AgentState): number {
  let n = 0;
  for (const lane of a.lanes.values()) n += lane.pendingBytes;
  return n;
}
