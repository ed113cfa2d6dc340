/**
 * A `RegistryClient` test double for unit tests of the fetcher's own logic: it serves blobs from
 * memory, one scripted behaviour per `fetchBlobRange` call (resets, stalls, truncation, error
 * statuses, a 200 to a ranged request, a changed ETag), and counts the body bytes it sent.
 * Integration tests use the real client against a real registry instead.
 */
import { Readable } from 'node:stream';
import {
  abortError,
  MeshmirrorError,
  RegistryError,
  StallError,
  type BlobRangeRequest,
  type BlobRangeResponse,
  type Digest,
  type FetchedManifest,
  type Referrers,
  type RegistryClient,
  type RepositoryLocation,
} from '@meshmirror/shared';

/** What one request meets. Omitted fields mean "behave like a good registry". */
export interface ScriptedAnswer {
  /** Answer with this error status (and distribution error codes) instead of a body. */
  status?: number;
  registryCodes?: string[];
  retryAfterMs?: number;
  /** Answer 200 with the whole blob, ignoring Range. */
  ignoreRange?: boolean;
  /** ETag header of the answer. */
  etag?: string;
  /** Send this many body bytes, then fail the body as `failWith` says. */
  failAfter?: number;
  /** Pace the body: wait this long before each 64 KiB chunk (a slow but moving transfer). */
  chunkDelayMs?: number;
  /** reset: ECONNRESET; stall: StallError; truncate: early EOF (`MM_TRUNCATED`); hang: send nothing more until aborted. */
  failWith?: 'reset' | 'stall' | 'truncate' | 'hang';
}

export interface RecordedRequest {
  location: RepositoryLocation;
  digest: Digest;
  offset: number;
  end: number;
  ifMatchEtag: string | undefined;
}

const CHUNK = 64 * 1024;

export class ScriptedRegistryClient implements RegistryClient {
  /** Body bytes handed to callers, over all requests. */
  bytesServed = 0;
  /** The most response bodies open at the same time. */
  maxOpenBodies = 0;
  #openBodies = 0;
  readonly requests: RecordedRequest[] = [];
  readonly #blobs = new Map<string, Uint8Array>();
  readonly #script: ScriptedAnswer[] = [];
  #onRequest: ((request: RecordedRequest) => void) | undefined;
  readonly #down = new Set<string>();

  /** Makes `data` available as `digest` in `registry/repository`. */
  addBlob(location: RepositoryLocation, digest: Digest, data: Uint8Array): this {
    this.#blobs.set(`${location.registry}/${location.repository}@${digest}`, data);
    return this;
  }

  /** Queues behaviours for the next requests, in order; requests past the script are served well. */
  script(...answers: ScriptedAnswer[]): this {
    this.#script.push(...answers);
    return this;
  }

  /** true: every request to `registry` fails as a refused connection does, until set false again. */
  setDown(registry: string, down: boolean): this {
    if (down) this.#down.add(registry);
    else this.#down.delete(registry);
    return this;
  }

  /** Calls `listener` as each request arrives (to act at a known point without sleeping). */
  onRequest(listener: (request: RecordedRequest) => void): this {
    this.#onRequest = listener;
    return this;
  }

  async ping(): Promise<void> {}

  async getManifest(): Promise<FetchedManifest> {
    throw new MeshmirrorError('MM_USAGE', 'the scripted client serves blobs only');
  }

  async getBlob(): Promise<Uint8Array> {
    throw new MeshmirrorError('MM_USAGE', 'the scripted client serves blob ranges only');
  }

  async getReferrers(): Promise<Referrers> {
    throw new MeshmirrorError('MM_USAGE', 'the scripted client serves blob ranges only');
  }

  async fetchBlobRange(location: RepositoryLocation, digest: Digest, request: BlobRangeRequest): Promise<BlobRangeResponse> {
    const { signal } = request;
    if (signal?.aborted === true) throw abortError(signal);
    const recorded: RecordedRequest = {
      location,
      digest,
      offset: request.offset,
      end: request.end,
      ifMatchEtag: request.ifMatchEtag,
    };
    this.requests.push(recorded);
    this.#onRequest?.(recorded);
    const url = `http://${location.registry}/v2/${location.repository}/blobs/${digest}`;
    if (this.#down.has(location.registry)) {
      throw new MeshmirrorError('MM_NETWORK', `GET ${url}: connection refused by ${location.registry}`, { data: { host: location.registry, cause: 'ECONNREFUSED' } });
    }
    const answer = this.#script.shift() ?? {};
    const data = this.#blobs.get(`${location.registry}/${location.repository}@${digest}`);
    if (answer.status !== undefined) {
      throw new RegistryError(`scripted ${answer.status}`, {
        status: answer.status,
        url,
        registryCodes: answer.registryCodes ?? [],
        ...(answer.retryAfterMs === undefined ? {} : { retryAfterMs: answer.retryAfterMs }),
      });
    }
    if (data === undefined) {
      throw new RegistryError('blob unknown to registry', { status: 404, url, registryCodes: ['BLOB_UNKNOWN'] });
    }
    const start = answer.ignoreRange === true ? 0 : request.offset;
    const end = answer.ignoreRange === true ? data.length - 1 : Math.min(request.end, data.length - 1);
    const body = this.#body(data.subarray(start, end + 1), answer, url, signal);
    return {
      start,
      rangeHonoured: answer.ignoreRange !== true,
      totalSize: data.length,
      etag: answer.etag,
      body,
    };
  }

  async close(): Promise<void> {}

  #body(bytes: Uint8Array, answer: ScriptedAnswer, url: string, signal: AbortSignal | undefined): Readable {
    let sent = 0;
    const failAt = answer.failAfter ?? Number.POSITIVE_INFINITY;
    // highWaterMark 0: a chunk is produced only when the consumer asks, so "sent" means "delivered"
    // and a failure never throws away bytes the test counts as served.
    const body = new Readable({
      highWaterMark: 0,
      read: () => {
        if (sent >= failAt) {
          switch (answer.failWith ?? 'reset') {
            case 'hang':
              return;
            case 'stall':
              body.destroy(new StallError(url, 30_000));
              return;
            case 'truncate':
              body.destroy(new MeshmirrorError('MM_TRUNCATED', `body ended early from ${url}`));
              return;
            case 'reset':
              body.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
              return;
          }
        }
        if (sent >= bytes.length) {
          body.push(null);
          return;
        }
        const size = Math.min(CHUNK, bytes.length - sent, failAt - sent);
        const chunk = Buffer.from(bytes.subarray(sent, sent + size));
        sent += size;
        const deliver = (): void => {
          if (body.destroyed) return;
          this.bytesServed += size;
          body.push(chunk);
        };
        if (answer.chunkDelayMs === undefined) deliver();
        else setTimeout(deliver, answer.chunkDelayMs);
      },
    });
    this.#openBodies += 1;
    this.maxOpenBodies = Math.max(this.maxOpenBodies, this.#openBodies);
    body.once('close', () => {
      this.#openBodies -= 1;
    });
    if (signal !== undefined) {
      const onAbort = (): void => {
        body.destroy(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      body.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return body;
  }
}
