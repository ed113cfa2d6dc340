import {
  abortError,
  asErrorCode,
  attemptText,
  describeError,
  errorCode,
  formatDelay,
  hostGivenUp,
  isRetryable,
  MeshmirrorError,
  RegistryError,
  RetryClock,
  retryAfterOf,
  sleep,
  throwIfAborted,
  type BlobRangeResponse,
  type Digest,
  type HostBackoff,
  type Logger,
  type PieceEvent,
  type PieceTask,
  type RegistryClient,
  type RepositoryLocation,
  type RetryPolicy,
} from '@meshmirror/shared';
import type { BlobStore, PieceWriter } from '../store/blob-store.ts';
import { WriteBatch } from '../io/write-batch.ts';
import { ProgressReporter } from './progress-reporter.ts';
import type { ByteRateLimiter } from './rate-limiter.ts';

export const DEFAULT_PROGRESS_INTERVAL_MS = 250;

export interface FetchPieceDeps {
  client: RegistryClient;
  store: BlobStore;
  /**
   * When to give up: by default once `noProgressTimeoutMs` passes without a byte (oc-mirror's
   * `--image-timeout`), counting failed attempts, retry delays and host backoff; with `retries`,
   * also after that many failed attempts in a row without a new byte. Bytes that keep flowing are
   * never cut.
   */
  retry: RetryPolicy;
  /** Per-host backoff shared by every fetch in the process. */
  backoff?: HostBackoff;
  logger: Logger;
  signal?: AbortSignal;
  onEvent: (event: PieceEvent) => void;
  /** Least time between two `progress` events of one piece. Default 250 ms. */
  progressIntervalMs?: number;
  /**
   * Runs one attempt (a ranged GET and its body) in one of the process's transfer slots. Waiting for
   * a retry or for the host's turn holds no slot, so a host that is down does not hold back pieces
   * from hosts that answer. Default: run at once.
   */
  inSlot?: <T>(attempt: () => Promise<T>) => Promise<T>;
  /** The process's ceiling on upstream bytes per second (`--limit-upstream`); every body read takes from it. */
  throttle?: ByteRateLimiter;
  /**
   * Ceilings for single registries (`--limit-registry HOST=RATE`), by host as in the piece's
   * sources, each shared by every fetch of the process from that host; they apply under `throttle`.
   */
  registryLimits?: ReadonlyMap<string, ByteRateLimiter>;
  /** Source of jitter for retry delays (tests). */
  random?: () => number;
}

export type PieceDoneEvent = Extract<PieceEvent, { type: 'piece-done' }>;
export type PieceFailedEvent = Extract<PieceEvent, { type: 'piece-failed' }>;
export type PieceOutcome = PieceDoneEvent | PieceFailedEvent;

/**
 * Fetches one piece from upstream into the store and reports it.
 *
 * - Resumes at the piece's committed offset (from an earlier run, or from the last attempt: a
 *   failed attempt first commits what it wrote, so no byte that reached the file is fetched twice).
 * - A 200 answer to a ranged request (`range-ignored`) is not restarted from zero: the full body is
 *   read, the bytes before the resume point are skipped, and reading stops at the piece's end. A
 *   server that never honours Range therefore still completes the piece instead of restarting it
 *   forever; the skipped bytes count in `upstreamBytes`, so the waste is visible.
 * - Retries go on until the policy's time without progress has passed (or its count of failures in
 *   a row without progress, when it has one): a byte of progress starts both again, so a transfer
 *   that keeps moving is never given up on. There is no deadline. While the host is failing, the
 *   piece waits for the host's turn (one probe at a time for a host that is down) instead of
 *   sending requests of its own.
 * - A source answering 404 / `BLOB_UNKNOWN` (or a different blob size) hands over to the next
 *   source repository.
 * - `progress` events carry byte deltas relative to the piece's committed bytes when the fetch
 *   started (what `holdings` reported); a restart emits the discarded bytes as a negative delta.
 *
 * Resolves with the final event, also sent through `onEvent`: `piece-done` or `piece-failed`
 * (`MM_STORE` when the local store failed). Rejects only with `MM_ABORTED` when `signal` fires,
 * after committing what was written and sending `piece-cancelled` with the bytes that came.
 */
export async function fetchPiece(task: PieceTask, deps: FetchPieceDeps): Promise<PieceOutcome> {
  return await new PieceFetch(task, deps).run();
}

/** A missing blob or repository in one source: another source may have it. */
function isMissingFromSource(err: unknown): boolean {
  if (err instanceof RegistryError) {
    return err.status === 404 || err.registryCodes.includes('BLOB_UNKNOWN') || err.registryCodes.includes('NAME_UNKNOWN');
  }
  return errorCode(err) === 'MM_SIZE_MISMATCH';
}

function isStrongEtag(etag: string | undefined): etag is string {
  return etag !== undefined && !etag.startsWith('W/');
}

class PieceFetch {
  readonly #task: PieceTask;
  readonly #deps: FetchPieceDeps;
  readonly #logger: Logger;
  readonly #progress: ProgressReporter;
  readonly #clock: RetryClock;
  #upstreamBytes = 0;
  /** The strong ETag of the content the piece's bytes so far came from. */
  #etag: string | undefined;

  constructor(task: PieceTask, deps: FetchPieceDeps) {
    this.#task = task;
    this.#deps = deps;
    this.#logger = deps.logger.child({ digest: task.digest, offset: task.offset, length: task.length });
    this.#progress = new ProgressReporter({
      digest: task.digest,
      offset: task.offset,
      intervalMs: deps.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS,
      emit: deps.onEvent,
    });
    this.#clock = new RetryClock(deps.retry, deps.random === undefined ? {} : { random: deps.random });
  }

  async run(): Promise<PieceOutcome> {
    try {
      return await this.#run();
    } catch (err) {
      // Aborted, after committing what arrived: the bytes that came are still to be counted.
      if (this.#deps.signal?.aborted === true) this.#cancelled();
      throw err;
    }
  }

  async #run(): Promise<PieceOutcome> {
    const { store, signal } = this.#deps;
    const task = this.#task;
    throwIfAborted(signal);
    let writer: PieceWriter;
    try {
      if (await store.has(task.digest, { signal })) {
        const sha256 = await store.hashHeldRange(task.digest, task.offset, task.length, { signal });
        return this.#done(sha256);
      }
      writer = await store.openPiece(task, { signal });
    } catch (err) {
      if (signal?.aborted === true) throw abortError(signal);
      return this.#failed(err);
    }
    try {
      const failure = await this.#fetchInto(writer);
      if (failure !== undefined) {
        await writer.commit();
        return this.#failed(failure);
      }
      const { sha256 } = await writer.finish();
      return this.#done(sha256);
    } catch (err) {
      // Keep what arrived: the next attempt or run resumes here.
      await writer.commit().catch((commitErr: unknown) => {
        this.#logger.warn({ error: describeError(commitErr) }, 'could not commit a piece after a failure');
      });
      if (signal?.aborted === true) throw abortError(signal);
      return this.#failed(err);
    } finally {
      await writer.close();
    }
  }

  /** Fills the piece. Returns the error that ended the attempts, or undefined when every byte is in. */
  async #fetchInto(writer: PieceWriter): Promise<unknown> {
    const { retry, backoff, signal } = this.#deps;
    const inSlot = this.#deps.inSlot ?? ((attempt) => attempt());
    const sources = this.#task.sources;
    if (sources.length === 0) {
      return new MeshmirrorError('MM_USAGE', `no source repository for ${this.#task.digest}`);
    }
    let sourceIndex = 0;
    let lastError: unknown;
    while (writer.written < this.#task.length) {
      throwIfAborted(signal);
      const source = sources[sourceIndex] as RepositoryLocation;
      const host = source.registry;
      if (backoff !== undefined) {
        // Wait out the host's pause without a slot; the turn is taken in the slot, as the request
        // goes out, since the host may have started failing while this piece queued for one.
        const turn = await backoff.waitTurn(host, { signal, until: this.#clock.deadline(backoff.failingSince(host)), claim: false });
        if (!turn) return this.#gaveUp(lastError ?? hostGivenUp(host, backoff, retry), 'no-progress');
      }
      const before = writer.committed;
      // The failure episode the request is sent in, to tell a late answer from the host's return.
      let ticket: number | undefined;
      try {
        const went = await inSlot(async () => {
          if (backoff !== undefined && !backoff.tryTurn(host)) return false;
          ticket = backoff?.ticket(host);
          await this.#attempt(writer, source);
          return true;
        });
        if (!went) continue;
        backoff?.recordSuccess(host, ticket);
      } catch (err) {
        if (signal?.aborted === true) throw abortError(signal);
        if (errorCode(err) === 'MM_STORE') throw err;
        // Whatever reached the file before the failure is kept and made durable.
        await writer.commit();
        const progressed = writer.committed > before;
        if (isMissingFromSource(err)) {
          const next = sources[sourceIndex + 1];
          if (next === undefined) return err;
          this.#logger.info(
            { from: describeSource(source), to: describeSource(next), error: describeError(err) },
            'blob not available from this source; trying the next one',
          );
          sourceIndex += 1;
          continue;
        }
        if (!isRetryable(err)) return err;
        lastError = err;
        // A host that delivered bytes before failing is serving, not down: its backoff must not
        // deepen with every hiccup of a long transfer. Unless another request has already found
        // it failing: then this is the same outage cutting a transfer off, and counting its bytes
        // as an answer would send every waiting request at once.
        if (progressed && backoff?.isFailing(host) !== true) backoff?.recordSuccess(host);
        backoff?.recordFailure(host, err);
        const failingSince = backoff?.failingSince(host);
        const decision = this.#clock.failure({ retryAfterMs: retryAfterOf(err), hostFailingSince: failingSince });
        if (!decision.retry) return this.#gaveUp(err, decision.reason);
        // While the host is failing, its pause is the wait (one probe at a time when it is down).
        const hostPaused = backoff?.isFailing(host) === true;
        const delayMs = hostPaused ? (backoff?.pauseRemaining(host) ?? 0) : decision.delayMs;
        const code = errorCode(err);
        const message = describeError(err);
        const attempt = this.#clock.failures;
        this.#logger.warn(
          { source: describeSource(source), attempt, retries: retry.retries, delayMs, code, committed: writer.committed },
          `piece fetch failed (${attemptText(attempt, retry)}): ${message}; retrying`,
        );
        this.#progress.flush();
        const trouble = backoff?.troubles().find((t) => t.host === host);
        this.#deps.onEvent({
          type: 'retry',
          digest: this.#task.digest,
          offset: this.#task.offset,
          attempt,
          delayMs,
          code,
          message,
          host,
          ...(trouble === undefined ? {} : { failingForMs: Math.max(0, Date.now() - trouble.failingSince), unreachable: trouble.unreachable }),
        });
        if (!hostPaused) await sleep(delayMs, signal);
      }
    }
    return undefined;
  }

  /** The error a piece is given up with: the last failure, saying why no attempt follows. */
  #gaveUp(err: unknown, reason: 'retries' | 'no-progress'): MeshmirrorError {
    const policy = this.#deps.retry;
    const why =
      reason === 'retries'
        ? `gave up after ${this.#clock.failures} attempts in a row without progress (--retry-times ${policy.retries ?? 0})`
        : `gave up after ${formatDelay(policy.noProgressTimeoutMs ?? 0)} without progress (--image-timeout)`;
    return new MeshmirrorError(asErrorCode(errorCode(err)), `${describeError(err)}; ${why}`, {
      cause: err,
      data: { retryable: false, gaveUp: reason },
    });
  }

  /** One ranged GET, streamed into the writer from `writer.written`. */
  async #attempt(writer: PieceWriter, source: RepositoryLocation): Promise<void> {
    const { client, signal } = this.#deps;
    const task = this.#task;
    const resumeAt = writer.written;
    const wantFrom = task.offset + resumeAt;
    const response = await client.fetchBlobRange(source, task.digest, {
      offset: wantFrom,
      end: task.offset + task.length - 1,
      ...(signal === undefined ? {} : { signal }),
      ...(this.#etag === undefined ? {} : { ifMatchEtag: this.#etag }),
    });
    const { body } = response;
    const onAbort = (): void => {
      body.destroy(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (response.totalSize !== undefined && response.totalSize !== task.blobSize) {
        throw new MeshmirrorError('MM_SIZE_MISMATCH', `${describeSource(source)} serves ${task.digest} with ${response.totalSize} bytes, expected ${task.blobSize}`, {
          data: { expected: task.blobSize, actual: response.totalSize },
        });
      }
      if (await this.#contentChanged(writer, response)) return;
      if (!response.rangeHonoured) {
        this.#logger.warn({ source: describeSource(source), resumeAt }, 'server ignored Range; skipping to the resume point');
        this.#deps.onEvent({ type: 'range-ignored', digest: task.digest, offset: task.offset });
      } else if (response.start !== wantFrom) {
        throw new MeshmirrorError('MM_RANGE_IGNORED', `range answer starts at ${response.start}, asked ${wantFrom}`, {
          data: { retryable: true },
        });
      }
      await this.#stream(writer, body, wantFrom - response.start, source.registry);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (!body.destroyed) body.destroy();
    }
  }

  /**
   * A different strong ETag than the one the piece's bytes came from means different content behind
   * the URL: the bytes so far cannot be joined with these, so the piece starts over.
   */
  async #contentChanged(writer: PieceWriter, response: BlobRangeResponse): Promise<boolean> {
    const previous = this.#etag;
    if (isStrongEtag(response.etag)) this.#etag = response.etag;
    if (!isStrongEtag(previous) || !isStrongEtag(response.etag) || previous === response.etag) return false;
    if (writer.written === 0) return false;
    const discarded = writer.written;
    this.#logger.warn({ previous, now: response.etag, discarded }, 'content ETag changed mid-piece; starting the piece over');
    await writer.restart();
    this.#progress.add(-discarded);
    return true;
  }

  async #stream(writer: PieceWriter, body: AsyncIterable<Uint8Array>, skipBytes: number, host: string): Promise<void> {
    let skip = skipBytes;
    const { throttle, signal } = this.#deps;
    const hostLimit = this.#deps.registryLimits?.get(host);
    if (skip < 0) {
      throw new MeshmirrorError('MM_RANGE_IGNORED', 'response starts after the requested offset', {
        data: { retryable: true },
      });
    }
    let remaining = this.#task.length - writer.written;
    const batch = new WriteBatch((bytes) => writer.write(bytes), remaining);
    try {
      for await (const chunk of body) {
        this.#upstreamBytes += chunk.length;
        this.#clock.progress();
        // Waiting here stops the read, so the socket's window closes and the sender slows down.
        if (hostLimit !== undefined) await hostLimit.take(chunk.length, signal);
        if (throttle !== undefined) await throttle.take(chunk.length, signal);
        let useful = chunk;
        if (skip > 0) {
          if (chunk.length <= skip) {
            skip -= chunk.length;
            continue;
          }
          useful = chunk.subarray(skip);
          skip = 0;
        }
        if (useful.length > remaining) useful = useful.subarray(0, remaining);
        remaining -= useful.length;
        this.#progress.add(useful.length);
        await batch.push(useful);
        // Past the piece's end (a 200 to a ranged request sends the rest of the blob): stop reading.
        if (remaining === 0) break;
      }
    } catch (err) {
      // Bytes that arrived before the failure are kept, so the piece resumes after them; the failure
      // itself is what the caller needs to see.
      await batch.flush().catch(() => undefined);
      throw err;
    }
    await batch.flush();
    if (remaining > 0) {
      throw new MeshmirrorError('MM_TRUNCATED', `response ended ${remaining} bytes before the end of the piece`, {
        data: { remaining },
      });
    }
  }

  #done(sha256: Digest): PieceDoneEvent {
    this.#progress.flush();
    const event: PieceDoneEvent = {
      type: 'piece-done',
      digest: this.#task.digest,
      offset: this.#task.offset,
      length: this.#task.length,
      sha256,
      upstreamBytes: this.#upstreamBytes,
    };
    this.#logger.debug({ sha256, upstreamBytes: this.#upstreamBytes }, 'piece fetched');
    this.#deps.onEvent(event);
    return event;
  }

  #cancelled(): void {
    this.#progress.flush();
    const { digest, offset, length } = this.#task;
    this.#logger.debug({ upstreamBytes: this.#upstreamBytes }, 'piece fetch cancelled');
    this.#deps.onEvent({ type: 'piece-cancelled', digest, offset, length, upstreamBytes: this.#upstreamBytes });
  }

  #failed(err: unknown): PieceFailedEvent {
    this.#progress.flush();
    const event: PieceFailedEvent = {
      type: 'piece-failed',
      digest: this.#task.digest,
      offset: this.#task.offset,
      length: this.#task.length,
      code: errorCode(err),
      message: describeError(err),
      upstreamBytes: this.#upstreamBytes,
    };
    this.#logger.warn({ code: event.code, upstreamBytes: this.#upstreamBytes }, `piece failed: ${event.message}`);
    this.#deps.onEvent(event);
    return event;
  }
}

function describeSource(source: RepositoryLocation): string {
  return `${source.registry}/${source.repository}`;
}
