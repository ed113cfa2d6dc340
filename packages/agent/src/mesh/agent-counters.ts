/**
 * What an agent has done since it started, for `agent --status` (Prometheus `/metrics` and
 * `/api/agent`): counted from the same piece events and push results the agent sends the
 * coordinator, so its figures and a run's per-agent report agree. Hosts, peer ids and counts only:
 * nothing secret.
 */
import type {
  AbortOptions,
  Agent,
  BlobHolding,
  BlobRef,
  Digest,
  FetchPiecesOptions,
  PieceEvent,
  PieceTask,
  PushBlobOptions,
  PushBlobRequest,
  PushBlobResult,
} from '@meshmirror/shared';
import { errorCode } from '@meshmirror/shared';

export interface AgentCountersSnapshot {
  /** Body bytes from upstream registries (retries included), by registry host. */
  upstreamBytes: Record<string, number>;
  /** Bytes served to peers (the coordinator's writer, other agents), by peer id. */
  servedBytes: Record<string, number>;
  /** Body bytes sent to target registries when pushing (failed attempts included), by registry host. */
  pushedBytes: Record<string, number>;
  /** `cancelled`: stopped by the coordinator (another copy won, the blob failed, the run ended). */
  pieces: { inFlight: number; done: number; failed: number; cancelled: number };
  /** Failed pieces by error code. */
  pieceFailures: Record<string, number>;
  /** Retried attempts, by `host code`. */
  retries: Array<{ host: string; code: string; count: number }>;
  /** Blob pushes by outcome: present, mounted, uploaded, failed or aborted. */
  pushes: Record<string, number>;
  assignments: { started: number; finished: number };
}

function add(into: Map<string, number>, key: string, value: number): void {
  if (value !== 0) into.set(key, (into.get(key) ?? 0) + value);
}

export class AgentCounters {
  readonly #upstream = new Map<string, number>();
  readonly #served = new Map<string, number>();
  readonly #pushed = new Map<string, number>();
  readonly #pieceFailures = new Map<string, number>();
  readonly #retries = new Map<string, { host: string; code: string; count: number }>();
  readonly #pushes = new Map<string, number>();
  #inFlight = 0;
  #done = 0;
  #failed = 0;
  #cancelled = 0;
  #started = 0;
  #finished = 0;

  /** One event of a fetch of `task` (its sources name the registry). */
  notePieceEvent(task: PieceTask | undefined, event: PieceEvent): void {
    const host = task?.sources[0]?.registry ?? 'unknown';
    if (event.type === 'piece-done') {
      add(this.#upstream, host, event.upstreamBytes);
      this.#done += 1;
      this.#inFlight = Math.max(0, this.#inFlight - 1);
    } else if (event.type === 'piece-failed') {
      add(this.#upstream, host, event.upstreamBytes);
      this.#failed += 1;
      this.#inFlight = Math.max(0, this.#inFlight - 1);
      add(this.#pieceFailures, event.code, 1);
    } else if (event.type === 'piece-cancelled') {
      add(this.#upstream, host, event.upstreamBytes);
      this.#cancelled += 1;
      this.#inFlight = Math.max(0, this.#inFlight - 1);
    } else if (event.type === 'retry') {
      const retryHost = event.host ?? host;
      const key = `${retryHost} ${event.code}`;
      const known = this.#retries.get(key) ?? { host: retryHost, code: event.code, count: 0 };
      known.count += 1;
      this.#retries.set(key, known);
    }
  }

  noteServed(peer: string, bytes: number): void {
    add(this.#served, peer, bytes);
  }

  /**
   * `agent` with every fetch and push counted here. The wrapper only watches: each call goes to
   * `agent` unchanged, with the caller's own callbacks.
   */
  metered(agent: Agent): Agent {
    return new MeteredAgent(agent, this);
  }

  /** A batch of pieces handed to the agent; the pieces a batch ends without reporting leave the in-flight count. */
  beginPieces(count: number): void {
    this.#started += 1;
    this.#inFlight += count;
  }

  endPieces(unreported: number): void {
    this.#finished += 1;
    this.#inFlight = Math.max(0, this.#inFlight - unreported);
  }

  /** A blob push ended: `outcome` is its action (present, mounted, uploaded), `failed` or `aborted`. */
  notePush(registry: string, outcome: string, sentBytes: number): void {
    add(this.#pushed, registry, sentBytes);
    add(this.#pushes, outcome, 1);
  }

  snapshot(): AgentCountersSnapshot {
    return {
      upstreamBytes: Object.fromEntries(this.#upstream),
      servedBytes: Object.fromEntries(this.#served),
      pushedBytes: Object.fromEntries(this.#pushed),
      pieces: { inFlight: this.#inFlight, done: this.#done, failed: this.#failed, cancelled: this.#cancelled },
      pieceFailures: Object.fromEntries(this.#pieceFailures),
      retries: [...this.#retries.values()].map((r) => ({ ...r })),
      pushes: Object.fromEntries(this.#pushes),
      assignments: { started: this.#started, finished: this.#finished },
    };
  }
}

class MeteredAgent implements Agent {
  readonly #agent: Agent;
  readonly #counters: AgentCounters;

  constructor(agent: Agent, counters: AgentCounters) {
    this.#agent = agent;
    this.#counters = counters;
  }

  get name(): string {
    return this.#agent.name;
  }

  holdings(blobs: BlobRef[], options?: AbortOptions): Promise<BlobHolding[]> {
    return this.#agent.holdings(blobs, options);
  }

  evict(digests: Digest[], options?: AbortOptions): Promise<void> {
    return this.#agent.evict(digests, options);
  }

  async fetchPieces(tasks: PieceTask[], options: FetchPiecesOptions): Promise<void> {
    const byPiece = new Map(tasks.map((t) => [`${t.digest}@${t.offset}`, t]));
    const counters = this.#counters;
    let reported = 0;
    counters.beginPieces(tasks.length);
    try {
      await this.#agent.fetchPieces(tasks, {
        ...options,
        onEvent: (event) => {
          const task = 'offset' in event ? byPiece.get(`${event.digest}@${event.offset}`) : undefined;
          if (event.type === 'piece-done' || event.type === 'piece-failed' || event.type === 'piece-cancelled') reported += 1;
          counters.notePieceEvent(task, event);
          options.onEvent(event);
        },
      });
    } finally {
      counters.endPieces(tasks.length - reported);
    }
  }

  async pushBlob(request: PushBlobRequest, options: PushBlobOptions = {}): Promise<PushBlobResult> {
    let sent = 0;
    let outcome = 'failed';
    try {
      const result = await this.#agent.pushBlob(request, {
        ...options,
        onBytesSent: (bytes) => {
          sent += bytes;
          options.onBytesSent?.(bytes);
        },
      });
      outcome = result.action;
      sent = result.bytesSent;
      return result;
    } catch (err) {
      // Stopped by the coordinator (another copy won, the run ended): not the push's failure.
      if (errorCode(err) === 'MM_ABORTED') outcome = 'aborted';
      throw err;
    } finally {
      this.#counters.notePush(request.target.registry, outcome, sent);
    }
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
