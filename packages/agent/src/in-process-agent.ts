import type { Readable } from 'node:stream';
import {
  abortError,
  describeError,
  errorCode,
  MeshmirrorError,
  throwIfAborted,
  type AbortOptions,
  type LocalAgent,
  type ArchiveSession,
  type BlobHolding,
  type Digest,
  type FetchPiecesOptions,
  type HostBackoff,
  type Logger,
  type PieceEvent,
  type PieceTask,
  type PushBlobOptions,
  type PushBlobRequest,
  type PushBlobResult,
  type RegistryClient,
  type RegistryPushClient,
  type RetryPolicy,
  type StartArchiveOptions,
  type BlobRef,
} from '@meshmirror/shared';
import pLimit from 'p-limit';
import { startArchive } from './archive/archive-session.ts';
import { fetchPiece } from './fetch/upstream-fetcher.ts';
import type { ByteRateLimiter } from './fetch/rate-limiter.ts';
import { uploadBlob, type UploadModes } from './push/blob-uploader.ts';
import type { BlobStore } from './store/blob-store.ts';

/** The archive writer's signature (`archive/archive-writer.ts`), injected so the agent does not fix one. */

export interface InProcessAgentOptions {
  /** How the agent is named in events and reports. Default `local`. */
  name?: string;
  /** An opened store; the agent closes it in `close()`. */
  store: BlobStore;
  client: RegistryClient;
  retry: RetryPolicy;
  /** Per-host backoff shared with the rest of the process. */
  backoff?: HostBackoff;
  /** Pieces fetched at once (`--parallel-layers`). */
  parallelLayers: number;
  logger: Logger;
  /** Least time between two `progress` events of one piece. Default 250 ms. */
  progressIntervalMs?: number;
  /** Mirror to mirror: how blobs are uploaded into the target. Without it `pushBlob` is refused. */
  push?: AgentPushOptions;
  /** The host's ceiling on upstream bytes per second, shared with every other agent of the process. */
  upstreamLimit?: ByteRateLimiter;
  /** Ceilings for single registries, by host, shared with every other agent of the process. */
  registryLimits?: ReadonlyMap<string, ByteRateLimiter>;
}

export interface AgentPushOptions {
  /** A client for the target registry, with this host's credentials for it. */
  client: RegistryPushClient;
  /** Bytes per PATCH. */
  chunkBytes: number;
  stallTimeoutMs: number;
  retry: RetryPolicy;
  backoff: HostBackoff;
}

/** The coordinator's embedded agent: the `Agent` interface over a local store, without a network hop. */
export function createInProcessAgent(options: InProcessAgentOptions): LocalAgent {
  return new InProcessAgent(options);
}

class InProcessAgent implements LocalAgent {
  readonly name: string;
  readonly #options: InProcessAgentOptions;
  readonly #logger: Logger;
  readonly #fetchLogger: Logger;
  readonly #pushLogger: Logger;
  /** Target registries that refused chunked uploads: every later blob goes monolithic. */
  readonly #uploadModes: UploadModes = { monolithic: new Set() };
  /**
   * Upstream attempts at once, shared by every `fetchPieces` call (a farm's scheduler hands pieces
   * over one call each): a piece waiting for a retry or for its host's turn holds none.
   */
  readonly #inSlot: <T>(attempt: () => Promise<T>) => Promise<T>;

  constructor(options: InProcessAgentOptions) {
    if (!Number.isSafeInteger(options.parallelLayers) || options.parallelLayers < 1) {
      throw new RangeError(`parallelLayers must be a positive integer, got ${options.parallelLayers}`);
    }
    this.name = options.name ?? 'local';
    this.#options = options;
    const limit = pLimit(options.parallelLayers);
    this.#inSlot = (attempt) => limit(attempt);
    this.#logger = options.logger.child({ component: 'mesh:agent', agent: this.name });
    this.#fetchLogger = options.logger.child({ component: 'mesh:fetcher', agent: this.name });
    this.#pushLogger = options.logger.child({ component: 'mesh:pusher', agent: this.name });
  }

  holdings(blobs: BlobRef[], options: AbortOptions = {}): Promise<BlobHolding[]> {
    return this.#options.store.holdings(blobs, options);
  }

  async evict(digests: Digest[], options: AbortOptions = {}): Promise<void> {
    for (const digest of digests) await this.#options.store.evict(digest, options);
  }

  putBlob(digest: Digest, data: Uint8Array, options: AbortOptions = {}): Promise<void> {
    return this.#options.store.putBlob(digest, data, options);
  }

  importBlob(digest: Digest, size: number, open: (offset: number) => Promise<Readable>, options: AbortOptions = {}): Promise<void> {
    return this.#options.store.importBlob(digest, size, open, options);
  }

  startArchive(options: StartArchiveOptions): Promise<ArchiveSession> {
    return startArchive(this.#options.store, { ...options, logger: this.#logger });
  }

  async pushBlob(request: PushBlobRequest, options: PushBlobOptions = {}): Promise<PushBlobResult> {
    const push = this.#options.push;
    if (push === undefined) throw new MeshmirrorError('MM_USAGE', `agent ${this.name} was not set up to push`);
    const { store } = this.#options;
    const { digest, size, target } = request;
    const outcome = await uploadBlob({
      client: push.client,
      target,
      digest,
      size,
      source: {
        where: `blob ${digest} in the store of agent ${this.name}`,
        // Only reached when the target has neither the blob nor a mount for it.
        openRange: (start, end, signal) => store.openBlob(digest, { start, end, ...(signal === undefined ? {} : { signal }) }),
      },
      chunkBytes: push.chunkBytes,
      retry: push.retry,
      backoff: push.backoff,
      stallTimeoutMs: push.stallTimeoutMs,
      mountFrom: request.mountFrom,
      modes: this.#uploadModes,
      journal: store.uploadJournal(target.registry),
      logger: this.#pushLogger,
      ...(options.onBytesSent === undefined ? {} : { onBytesSent: options.onBytesSent }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    return { action: outcome.action, bytesSent: outcome.bytesSent, resumedFrom: outcome.resumedFrom, restarts: outcome.restarts, retries: outcome.retries };
  }

  close(): Promise<void> {
    return this.#options.store.close();
  }

  /**
   * Runs every task (at most `parallelLayers` attempts at once). When the last of a blob's pieces in this
   * batch is done and the store's finished pieces cover the whole blob, the blob is assembled and
   * verified; a digest mismatch turns into `piece-failed` (`MM_DIGEST_MISMATCH`) for each of that
   * blob's pieces in the batch, and their bytes are gone, so a new assignment fetches them afresh.
   * A piece failure is an event; a store failure stops the other pieces and rejects.
   */
  async fetchPieces(tasks: PieceTask[], options: FetchPiecesOptions): Promise<void> {
    const { signal, onEvent } = options;
    throwIfAborted(signal);
    const { store, client, retry, backoff } = this.#options;

    const emit = (event: PieceEvent): void => {
      try {
        onEvent(event);
      } catch (err) {
        this.#logger.error({ error: describeError(err), event: event.type }, 'piece event listener threw');
      }
    };

    const unique = dedupe(tasks);
    // Pieces of the batch per blob not yet done; a blob's entry goes once its last piece is done.
    const piecesLeft = new Map<Digest, number>();
    for (const task of unique) piecesLeft.set(task.digest, (piecesLeft.get(task.digest) ?? 0) + 1);

    // One controller for the batch: the caller's abort, or a store failure, stops every piece.
    const batch = new AbortController();
    const forwardAbort = (): void => batch.abort(signal?.reason);
    signal?.addEventListener('abort', forwardAbort, { once: true });
    // The first failure, boxed so that it is told apart from none even if what was thrown is `undefined`.
    let fatal: { error: unknown } | undefined;
    const stop = (err: unknown): void => {
      fatal ??= { error: err };
      batch.abort(err);
    };

    const runPiece = async (task: PieceTask): Promise<void> => {
      if (batch.signal.aborted) return;
      let outcome;
      try {
        outcome = await fetchPiece(task, {
          client,
          store,
          retry,
          ...(backoff === undefined ? {} : { backoff }),
          logger: this.#fetchLogger,
          signal: batch.signal,
          onEvent: emit,
          ...(this.#options.progressIntervalMs === undefined ? {} : { progressIntervalMs: this.#options.progressIntervalMs }),
          inSlot,
          ...(this.#options.upstreamLimit === undefined ? {} : { throttle: this.#options.upstreamLimit }),
          ...(this.#options.registryLimits === undefined ? {} : { registryLimits: this.#options.registryLimits }),
        });
      } catch (err) {
        // fetchPiece rejects only when the batch was aborted.
        if (!batch.signal.aborted) stop(err);
        return;
      }
      if (outcome.type === 'piece-failed' && outcome.code === 'MM_STORE') {
        stop(new MeshmirrorError('MM_STORE', outcome.message, { data: { digest: task.digest, offset: task.offset } }));
        return;
      }
      const left = (piecesLeft.get(task.digest) ?? 1) - 1;
      if (left > 0) {
        piecesLeft.set(task.digest, left);
        return;
      }
      piecesLeft.delete(task.digest);
      // The blob's pieces are only needed when it fails verification, so they are looked up then.
      await this.#completeBlob(task, () => unique.filter((t) => t.digest === task.digest), batch.signal, emit, stop);
    };

    // Per source host, a fixed pool of workers takes that host's pieces in order: nothing is queued
    // per piece, so a batch of tens of thousands of pieces costs no more than the tasks themselves.
    // Attempts share `parallelLayers` slots across hosts (and calls), and a piece waiting for a retry
    // or for its host's turn holds none: a host that is down holds back only its own pieces.
    const inSlot = this.#inSlot;
    const byHost = new Map<string, PieceTask[]>();
    for (const task of unique) {
      const host = task.sources[0]?.registry ?? '';
      const queue = byHost.get(host);
      if (queue === undefined) byHost.set(host, [task]);
      else queue.push(task);
    }
    const workers: Array<Promise<void>> = [];
    for (const queue of byHost.values()) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < queue.length) {
          const task = queue[next]!;
          next += 1;
          await runPiece(task);
        }
      };
      for (let i = 0; i < Math.min(this.#options.parallelLayers, queue.length); i++) workers.push(worker());
    }
    try {
      await Promise.all(workers);
    } finally {
      signal?.removeEventListener('abort', forwardAbort);
    }
    if (signal?.aborted === true) throw abortError(signal);
    if (fatal !== undefined) throw fatal.error;
  }

  async #completeBlob(
    task: PieceTask,
    piecesOf: () => PieceTask[],
    signal: AbortSignal,
    emit: (event: PieceEvent) => void,
    stop: (err: unknown) => void,
  ): Promise<void> {
    const { store } = this.#options;
    try {
      // Pieces assigned to other agents arrive through the exchange; the writer completes those blobs.
      if (!(await store.isComplete(task.digest, task.blobSize, { signal }))) return;
      await store.completeBlob(task.digest, task.blobSize, { signal });
      emit({ type: 'blob-held', digest: task.digest, size: task.blobSize });
    } catch (err) {
      if (signal.aborted) return;
      if (errorCode(err) !== 'MM_DIGEST_MISMATCH') {
        stop(err);
        return;
      }
      this.#logger.error({ digest: task.digest, error: describeError(err) }, 'fetched blob does not match its digest');
      for (const piece of piecesOf()) {
        emit({
          type: 'piece-failed',
          digest: piece.digest,
          offset: piece.offset,
          length: piece.length,
          code: 'MM_DIGEST_MISMATCH',
          message: describeError(err),
          // Already counted in the piece's piece-done event.
          upstreamBytes: 0,
        });
      }
    }
  }
}

/** The same piece twice in one batch would contend for the same bytes of the blob's partial file. */
function dedupe(tasks: PieceTask[]): PieceTask[] {
  const seen = new Set<string>();
  return tasks.filter((task) => {
    const key = `${task.digest}:${task.offset}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
