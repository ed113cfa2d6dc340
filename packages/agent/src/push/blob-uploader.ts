/**
 * Uploads one blob into a target registry so that a failure costs only what the registry had not
 * confirmed: HEAD first (the target may have it), a cross-repository mount when another repository
 * of the target holds it, then chunked PATCHes with `Content-Range`, each confirmed by the
 * registry's `Range`. After any failure the upload's status (`GET` on its URL) says where to go on.
 *
 * The blob's bytes are hashed in the order they are confirmed, and the closing `PUT ?digest=` is
 * sent only when that hash is the blob's digest: a changed byte in an archive never becomes a blob
 * in the target. The session's URL is journalled, so a run killed mid-blob resumes the same upload.
 */
import type { Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import {
  abortError,
  attemptText,
  createDigester,
  describeError,
  DigestMismatchError,
  digestOf,
  errorCode,
  isRetryable,
  MeshmirrorError,
  RegistryError,
  RetryClock,
  retryAfterOf,
  sleep,
  StallError,
  throwIfAborted,
  type Digest,
  type HostBackoff,
  type Logger,
  type RegistryPushClient,
  type RepositoryLocation,
  type RetryPolicy,
  type UploadSession,
} from '@meshmirror/shared';

/** Where a blob's bytes come from: an archive chunk, a layout's blob file, the blob store. */
export interface UploadSource {
  /** Raw bytes `start..end` (inclusive) of the blob, not verified (the uploader hashes them itself). */
  openRange(start: number, end: number, signal?: AbortSignal): Promise<Readable>;
  /** For messages: e.g. `mirror_000002.tar entry blobs/sha256/ab…`. */
  where: string;
}

/** Where an interrupted upload's session is kept between runs. */
export interface UploadJournal {
  session(repository: string, digest: Digest): Promise<string | undefined>;
  saveSession(repository: string, digest: Digest, url: string): Promise<void>;
  clearSession(repository: string, digest: Digest): Promise<void>;
}

/** Per target registry: whether it refused chunked uploads, so every later blob goes monolithic. */
export interface UploadModes {
  monolithic: Set<string>;
}

export interface UploadBlobOptions {
  client: RegistryPushClient;
  target: RepositoryLocation;
  digest: Digest;
  size: number;
  source: UploadSource;
  /** Bytes per PATCH (raised to the registry's `OCI-Chunk-Min-Length`). */
  chunkBytes: number;
  retry: RetryPolicy;
  backoff: HostBackoff;
  /** No request body bytes taken by the connection for this long: the request is dropped and resumed. */
  stallTimeoutMs: number;
  /** Repositories of the target known to hold the blob: tried as mount sources. */
  mountFrom?: string[];
  journal?: UploadJournal;
  modes?: UploadModes;
  logger: Logger;
  /** Body bytes put on the wire (failed attempts included). */
  onBytesSent?: (bytes: number) => void;
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  signal?: AbortSignal;
}

export interface UploadOutcome {
  /** present: the target had it; mounted: from another repository; uploaded: bytes were sent. */
  action: 'present' | 'mounted' | 'uploaded';
  /** Body bytes sent for this blob, failed attempts included. */
  bytesSent: number;
  /** Bytes the registry already held from an earlier, interrupted upload (journalled session). */
  resumedFrom: number;
  /** Upload sessions abandoned and started over (the registry lost one). */
  restarts: number;
  retries: number;
}

/** Uploads a blob unless the target has it. Throws when it cannot; the error names the blob's source. */
export async function uploadBlob(options: UploadBlobOptions): Promise<UploadOutcome> {
  return await new BlobUpload(options).run();
}

class BlobUpload {
  readonly #o: UploadBlobOptions;
  readonly #host: string;
  readonly #log: Logger;
  #session: UploadSession | undefined;
  /** sha256 over bytes 0..hashedTo-1 of the blob. */
  #hash: Hash = createDigester();
  #hashedTo = 0;
  #outcome: UploadOutcome = { action: 'uploaded', bytesSent: 0, resumedFrom: 0, restarts: 0, retries: 0 };
  #monolithic = false;
  /** Failed attempts and time since the registry last confirmed more bytes. */
  readonly #clock: RetryClock;

  constructor(options: UploadBlobOptions) {
    this.#o = options;
    this.#host = options.target.registry;
    this.#log = options.logger.child({ digest: options.digest, repository: options.target.repository });
    this.#clock = new RetryClock(options.retry);
  }

  async run(): Promise<UploadOutcome> {
    const { client, target, digest, signal } = this.#o;
    throwIfAborted(signal);
    const resumed = await this.#resumeJournalled();
    if (!resumed) {
      if (await client.blobExists(target, digest, signal === undefined ? {} : { signal })) {
        return { ...this.#outcome, action: 'present' };
      }
      // A failed mount opens an upload session instead; the last candidate's is kept, earlier
      // ones are cancelled, so trying a mount never costs an extra upload.
      const candidates = (this.#o.mountFrom ?? []).filter((from) => from !== target.repository);
      for (const [i, from] of candidates.entries()) {
        const start = await client.startUpload(target, { mount: { digest, from }, ...(signal === undefined ? {} : { signal }) });
        if (start.mounted) return { ...this.#outcome, action: 'mounted' };
        if (i < candidates.length - 1) await client.cancelUpload(target, start.session);
        else await this.#adopt(start.session);
      }
      if (this.#session === undefined) await this.#newSession();
    }
    await this.#transfer();
    return this.#outcome;
  }

  /** A session journalled by an interrupted run, if the registry still has it. */
  async #resumeJournalled(): Promise<boolean> {
    const { client, target, digest, journal, signal } = this.#o;
    const url = await journal?.session(target.repository, digest);
    if (url === undefined) return false;
    const status = await client.uploadStatus(target, url, signal === undefined ? {} : { signal });
    if (status === undefined || (status.ambiguous === true && this.#o.size > 1) || status.offset > this.#o.size) {
      if (status !== undefined) await client.cancelUpload(target, status);
      await journal?.clearSession(target.repository, digest);
      return false;
    }
    this.#session = status.ambiguous === true ? { ...status, offset: 0 } : status;
    this.#outcome.resumedFrom = this.#session.offset;
    this.#log.info({ offset: this.#session.offset }, 'resuming an interrupted upload');
    return true;
  }

  async #newSession(): Promise<void> {
    const { client, target, signal } = this.#o;
    const start = await client.startUpload(target, signal === undefined ? {} : { signal });
    if (start.mounted) throw new MeshmirrorError('MM_REGISTRY', 'registry reported a mount that was not asked for');
    await this.#adopt(start.session);
  }

  async #adopt(session: UploadSession): Promise<void> {
    this.#session = { ...session, offset: 0 };
    await this.#o.journal?.saveSession(this.#o.target.repository, this.#o.digest, session.url);
  }

  async #transfer(): Promise<void> {
    const { size, signal } = this.#o;
    for (;;) {
      throwIfAborted(signal);
      const session = this.#session;
      if (session === undefined) {
        await this.#newSession();
        continue;
      }
      try {
        if (this.#monolithic || this.#o.modes?.monolithic.has(this.#host) === true) {
          await this.#putRest(session);
          return;
        }
        if (session.offset < size) {
          await this.#patch(session);
          continue;
        }
        await this.#complete(session);
        return;
      } catch (error) {
        await this.#recover(error);
      }
    }
  }

  /** One PATCH of the next chunk; the registry's answer is the new confirmed offset. */
  async #patch(session: UploadSession): Promise<void> {
    const { client, target, size } = this.#o;
    const chunk = Math.max(this.#o.chunkBytes, session.minChunkBytes ?? 0);
    const end = Math.min(size, session.offset + chunk) - 1;
    await this.#hashUpTo(session.offset);
    const chunkHash = this.#hash.copy();
    const { stream, finished, requestSignal } = await this.#body(session.offset, end, chunkHash);
    let next: UploadSession;
    try {
      next = await client.uploadChunk(target, session, { length: end - session.offset + 1, stream }, { signal: requestSignal });
    } catch (error) {
      throw finished.stalled ? new StallError(session.url, this.#o.stallTimeoutMs) : error;
    } finally {
      finished.done();
    }
    if (next.ambiguous === true) {
      // It took more than one byte and says it holds 0 or 1: it lost the upload.
      await client.cancelUpload(target, next);
      throw new RegistryError(`upload of ${this.#o.digest}: the registry answered Range 0-0 after ${end + 1} bytes`, {
        status: 416,
        url: '',
        registryCodes: ['BLOB_UPLOAD_INVALID'],
      });
    }
    if (next.offset === end + 1) {
      this.#hash = chunkHash;
      this.#hashedTo = end + 1;
    }
    await this.#confirm(next);
  }

  /** Monolithic: the rest of the blob as the body of the closing PUT (registries without PATCH). */
  async #putRest(session: UploadSession): Promise<void> {
    const { client, target, digest, size } = this.#o;
    await this.#hashUpTo(session.offset);
    const hash = this.#hash.copy();
    const { stream, finished, requestSignal } = await this.#body(session.offset, size - 1, hash);
    try {
      await client.completeUpload(target, session, digest, { body: { length: size - session.offset, stream }, signal: requestSignal });
    } catch (error) {
      if (digestOf(hash) !== digest && finished.complete) throw await this.#mismatch(digestOf(hash), session);
      throw finished.stalled ? new StallError(session.url, this.#o.stallTimeoutMs) : error;
    } finally {
      finished.done();
    }
    await this.#o.journal?.clearSession(target.repository, digest);
  }

  /** Every byte confirmed: check the digest, then the closing PUT. */
  async #complete(session: UploadSession): Promise<void> {
    const { client, target, digest, signal } = this.#o;
    await this.#hashUpTo(this.#o.size);
    const actual = digestOf(this.#hash.copy());
    if (actual !== digest) throw await this.#mismatch(actual, session);
    try {
      await client.completeUpload(target, session, digest, signal === undefined ? {} : { signal });
    } catch (error) {
      // The PUT may have landed and only its answer was lost.
      if (signal?.aborted !== true && (await client.blobExists(target, digest, signal === undefined ? {} : { signal }).catch(() => false))) {
        await this.#o.journal?.clearSession(target.repository, digest);
        return;
      }
      throw error;
    }
    await this.#o.journal?.clearSession(target.repository, digest);
  }

  /** The bytes are not the blob: the upload is cancelled, never closed. */
  async #mismatch(actual: Digest, session: UploadSession): Promise<DigestMismatchError> {
    const { client, target } = this.#o;
    await client.cancelUpload(target, session);
    await this.#o.journal?.clearSession(target.repository, this.#o.digest);
    const error = new DigestMismatchError(this.#o.digest, actual, this.#o.source.where);
    error.data['retryable'] = false;
    return error;
  }

  /**
   * After a failure: decide whether to try again (the shared retry rules, counted only while no
   * new bytes are confirmed), then learn what the registry holds and continue from there.
   */
  async #recover(error: unknown): Promise<void> {
    const { client, target, signal } = this.#o;
    if (signal?.aborted === true) throw abortError(signal);
    if (error instanceof DigestMismatchError) throw error;
    if (isUnsupported(error)) {
      this.#log.info({ host: this.#host }, 'registry refuses chunked uploads; uploading whole blobs');
      this.#monolithic = true;
      this.#o.modes?.monolithic.add(this.#host);
      return;
    }
    const sessionLost = isSessionLost(error);
    if (!sessionLost && !isRetryable(error)) throw error;
    const { backoff, retry } = this.#o;
    backoff.recordFailure(this.#host, error);
    const decision = this.#clock.failure({ retryAfterMs: retryAfterOf(error), hostFailingSince: backoff.failingSince(this.#host) });
    if (!decision.retry) throw error;
    // While the host is failing, the next request waits for the host's turn (inside the client's
    // retried calls below), one probe at a time when it is down; otherwise this upload's own delay.
    const hostPaused = backoff.isFailing(this.#host);
    const delayMs = sessionLost ? 0 : hostPaused ? backoff.pauseRemaining(this.#host) : decision.delayMs;
    this.#outcome.retries += 1;
    this.#log.warn(
      { code: errorCode(error), error: describeError(error), delayMs },
      `upload request failed (${attemptText(this.#clock.failures, retry)}); asking the registry what it holds`,
    );
    this.#o.onRetry?.({ attempt: this.#clock.failures, delayMs, error });
    if (!hostPaused) await sleep(delayMs, signal);

    const session = this.#session;
    const status = session === undefined || sessionLost ? undefined : await client.uploadStatus(target, session.url, signal === undefined ? {} : { signal });
    if (status === undefined || (status.ambiguous === true && this.#o.size > 1) || status.offset > this.#o.size) {
      // The registry no longer has the session (distribution cancels one that a cut-off PATCH left
      // longer than its state says), or cannot say whether it holds 0 or 1 byte: start over.
      if (status !== undefined) await client.cancelUpload(target, status);
      if (session !== undefined) this.#outcome.restarts += 1;
      this.#log.warn({ confirmed: session?.offset ?? 0 }, 'upload session lost; starting the blob over');
      this.#session = undefined;
      await this.#o.journal?.clearSession(target.repository, this.#o.digest);
      return;
    }
    await this.#confirm(status.ambiguous === true ? { ...status, offset: 0 } : status);
  }

  /**
   * Takes the registry's latest answer. Its URL is journalled at once: distribution carries the
   * upload's offset in a signed `_state` parameter and cancels an upload resumed with a stale one.
   */
  async #confirm(next: UploadSession): Promise<void> {
    const before = this.#session?.offset ?? 0;
    const minChunkBytes = next.minChunkBytes ?? this.#session?.minChunkBytes;
    this.#session = { ...next, ...(minChunkBytes === undefined ? {} : { minChunkBytes }) };
    if (next.url !== undefined) await this.#o.journal?.saveSession(this.#o.target.repository, this.#o.digest, next.url);
    if (next.offset > before) {
      this.#clock.progress();
      this.#o.backoff.recordSuccess(this.#host);
    }
  }

  /** Brings the running hash to exactly `offset` bytes, re-reading from the source what it lacks. */
  async #hashUpTo(offset: number): Promise<void> {
    if (this.#hashedTo > offset) {
      this.#hash = createDigester();
      this.#hashedTo = 0;
    }
    if (this.#hashedTo === offset) return;
    const stream = await this.#o.source.openRange(this.#hashedTo, offset - 1, this.#o.signal);
    for await (const chunk of stream as AsyncIterable<Buffer>) this.#hash.update(chunk);
    this.#hashedTo = offset;
  }

  /**
   * A request body for bytes `start..end`: hashed into `hash` as the connection takes them, and
   * watched, because undici has no timeout for a body the other side stops reading: no byte taken
   * (and no answer) for the stall timeout aborts the request.
   */
  async #body(
    start: number,
    end: number,
    hash: Hash,
  ): Promise<{ stream: Readable; requestSignal: AbortSignal; finished: { stalled: boolean; complete: boolean; done(): void } }> {
    const { signal, stallTimeoutMs } = this.#o;
    const controller = new AbortController();
    const requestSignal = signal === undefined ? controller.signal : AbortSignal.any([signal, controller.signal]);
    const source = await this.#o.source.openRange(start, end, requestSignal);
    let last = Date.now();
    let sent = 0;
    const length = end - start + 1;
    const state = {
      stalled: false,
      complete: length === 0,
      done: () => clearInterval(timer),
    };
    const onBytes = this.#o.onBytesSent;
    const outcome = this.#outcome;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
        last = Date.now();
        sent += chunk.length;
        outcome.bytesSent += chunk.length;
        hash.update(chunk);
        onBytes?.(chunk.length);
        if (sent === length) state.complete = true;
        callback(null, chunk);
      },
    });
    source.on('error', (error) => counted.destroy(error));
    source.pipe(counted);
    // Runs until the answer comes: bytes handed to the kernel are not bytes the registry took, so
    // a body that went out whole is still watched until the registry answers.
    const timer = setInterval(
      () => {
        if (Date.now() - last > stallTimeoutMs) {
          state.stalled = true;
          controller.abort(new StallError(this.#session?.url ?? '', stallTimeoutMs));
        }
      },
      Math.max(50, Math.min(1_000, stallTimeoutMs / 4)),
    );
    timer.unref();
    return { stream: counted, requestSignal, finished: state };
  }
}

/** The registry refuses chunked uploads: 405/501 to a PATCH, or the `UNSUPPORTED` code. */
function isUnsupported(error: unknown): boolean {
  return error instanceof RegistryError && (error.status === 405 || error.status === 501 || error.registryCodes.includes('UNSUPPORTED'));
}

/** The registry forgot the session: only a new one helps. */
function isSessionLost(error: unknown): boolean {
  return (
    error instanceof RegistryError &&
    (error.registryCodes.includes('BLOB_UPLOAD_UNKNOWN') || error.registryCodes.includes('BLOB_UPLOAD_INVALID') || error.status === 404)
  );
}
