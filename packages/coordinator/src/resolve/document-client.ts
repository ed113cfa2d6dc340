/**
 * GETs small documents over HTTP(S) that resolution needs from outside a registry: the update graph,
 * a Helm repository's `index.yaml` and its chart archives. Redirects followed, the body read whole
 * under a size cap, 5xx/429/network failures retried under the run's policy with `Retry-After`
 * honoured, and every error naming what the document was for.
 */
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import {
  abortError,
  abandonBody,
  DEFAULT_RETRY_POLICY,
  describeError,
  mapTransportError,
  MeshmirrorError,
  parseRetryAfter,
  RegistryError,
  throwIfAborted,
  withRetries,
  type Logger,
  type RetryPolicy,
} from '@meshmirror/shared';

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** How much of an error answer is read for its message. */
const MAX_ERROR_SNIPPET_BYTES = 4 * 1024;

export interface DocumentClientOptions {
  /** Verify TLS (default true). */
  tlsVerify?: boolean;
  /** Time to establish a connection, ms (default 30 s). */
  connectTimeoutMs?: number;
  /** Time from sending the request to its response headers, and the longest silence in the body, ms (default 30 s). */
  headersTimeoutMs?: number;
  /** 5xx, 429 and network failures are retried under this policy (default `DEFAULT_RETRY_POLICY`). */
  retry?: RetryPolicy;
  /** What to tell a user whose TLS failed: `untrusted` (a CA problem) and `notTls` (a plain HTTP server). */
  tlsAdvice: { untrusted: string; notTls: string };
  logger: Logger;
}

export interface DocumentRequest {
  /** Says what the document is for, first in every message: `channel stable-4.19 (amd64)`. */
  label: string;
  /** Names the document in the size message: `an update graph`. */
  what: string;
  accept: string;
  /** A larger body is refused. */
  maxBytes: number;
  signal?: AbortSignal;
}

export interface FetchedDocument {
  bytes: Buffer;
  contentType: string | undefined;
  /** Where the document was found after redirects (relative links in it resolve against this). */
  url: URL;
}

export class DocumentClient {
  readonly #options: DocumentClientOptions;
  readonly #agent: Agent;
  readonly #connectTimeoutMs: number;
  readonly #headersTimeoutMs: number;

  constructor(options: DocumentClientOptions) {
    this.#options = options;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#agent = new Agent({
      connect: { timeout: this.#connectTimeoutMs, rejectUnauthorized: options.tlsVerify ?? true },
      headersTimeout: this.#headersTimeoutMs,
      // The body is a few MiB sent at once; a connection silent this long mid-body is dead.
      bodyTimeout: this.#headersTimeoutMs,
    });
  }

  /** GET `url` with retries; the whole body, or an error naming `request.label`. */
  async get(url: string | URL, request: DocumentRequest): Promise<FetchedDocument> {
    const start = new URL(url);
    throwIfAborted(request.signal);
    return withRetries(() => this.#get(start, request), {
      policy: this.#options.retry ?? DEFAULT_RETRY_POLICY,
      host: start.host,
      logger: this.#options.logger,
      what: `${request.label}: GET ${start.href}`,
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** One attempt: the request, redirects followed, the body read under the size cap. */
  async #get(start: URL, request: DocumentRequest): Promise<FetchedDocument> {
    const { label, signal } = request;
    let url = start;
    for (let hop = 0; ; hop++) {
      throwIfAborted(signal);
      let response: Dispatcher.ResponseData;
      try {
        response = await this.#agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'GET',
          headers: { accept: request.accept, 'user-agent': 'meshmirror' },
          signal: signal ?? null,
        });
      } catch (error) {
        throw this.#transportError(error, url, label, signal);
      }
      const location = headerValue(response.headers, 'location');
      if (REDIRECT_STATUSES.has(response.statusCode) && location !== undefined && hop < MAX_REDIRECTS) {
        await response.body.dump().catch(() => {});
        url = new URL(location, url);
        continue;
      }
      if (response.statusCode < 200 || response.statusCode > 299) throw await statusError(response, url, label);
      const bytes = await readBody(response.body, headerValue(response.headers, 'content-length'), url, request);
      return { bytes, contentType: headerValue(response.headers, 'content-type'), url };
    }
  }

  #transportError(error: unknown, url: URL, label: string, signal: AbortSignal | undefined): MeshmirrorError {
    const mapped = mapTransportError(error, {
      url,
      method: 'GET',
      signal,
      options: { connectTimeoutMs: this.#connectTimeoutMs, headersTimeoutMs: this.#headersTimeoutMs },
      tlsAdvice: this.#options.tlsAdvice,
    });
    // The label first, so the message says which part of the image set is at stake.
    return mapped.code === 'MM_ABORTED'
      ? mapped
      : new MeshmirrorError(mapped.code, `${label}: ${mapped.message}`, { cause: mapped.cause ?? error, data: { ...mapped.data, url: url.toString() } });
  }
}

async function readBody(body: Readable, declared: string | undefined, url: URL, request: DocumentRequest): Promise<Buffer> {
  const { maxBytes, label, signal } = request;
  const tooLarge = (): MeshmirrorError =>
    new MeshmirrorError('MM_MANIFEST_INVALID', `${label}: GET ${url.href}: the answer is larger than ${formatBytes(maxBytes)}, too large for ${request.what}`, {
      data: { url: url.toString(), maxBytes },
    });
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
    abandonBody(body);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) {
        abandonBody(body);
        throw tooLarge();
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof MeshmirrorError) throw error;
    if (signal?.aborted === true) throw abortError(signal);
    // A body cut short is worth another attempt: `MM_TRUNCATED` is what the retry classifier retries.
    throw new MeshmirrorError('MM_TRUNCATED', `${label}: GET ${url.href}: the connection failed after ${total} bytes (${reasonOf(error)})`, {
      cause: error,
      data: { url: url.toString(), received: total },
    });
  }
  return Buffer.concat(chunks, total);
}

/**
 * A non-2xx answer as a `RegistryError` (code `MM_REGISTRY`): its status and `Retry-After` are what
 * the shared retry classifier reads. The start of the body goes into the message: Cincinnati explains
 * a 400 there (`{"kind":"invalid_params","value":"…"}`).
 */
async function statusError(response: Dispatcher.ResponseData, url: URL, label: string): Promise<RegistryError> {
  const status = response.statusCode;
  const text = response.statusText === '' ? (STATUS_CODES[status] ?? '') : response.statusText;
  const snippet = await readSnippet(response.body);
  const retryAfterMs = parseRetryAfter(response.headers['retry-after']);
  const message = `${label}: GET ${url.href}: HTTP ${status}${text === '' ? '' : ` ${text}`}${snippet === '' ? '' : ` (${snippet})`}`;
  return new RegistryError(message, {
    status,
    url: url.toString(),
    data: { status, url: url.toString() },
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

async function readSnippet(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= MAX_ERROR_SNIPPET_BYTES) {
        abandonBody(body);
        break;
      }
    }
  } catch {
    // The message is complete without the body.
  }
  const flat = Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}…` : flat;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function codeOf(error: unknown): string | undefined {
  return error !== null && typeof error === 'object' && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** Node reports a connect failure to several addresses as an AggregateError with an empty message. */
export function reasonOf(error: unknown): string {
  const text = describeError(error);
  return text !== '' ? text : (codeOf(error) ?? (error instanceof Error ? error.name : 'unknown error'));
}

function formatBytes(bytes: number): string {
  const MiB = 1024 * 1024;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}
