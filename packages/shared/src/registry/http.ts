/**
 * The HTTP layer under the registry client: one undici Agent (a keep-alive pool per origin), manual
 * redirects (so Authorization never leaves the registry's origin), timeouts that never cut off a
 * transfer that is moving, and the mapping of socket/undici failures onto meshmirror errors that
 * `isRetryable` understands.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Logger } from 'pino';
import { Agent } from 'undici';
import { abortError, MeshmirrorError, redactUrl, RegistryError, StallError, throwIfAborted } from '../errors.ts';
import { parseRetryAfter } from '../retry/policy.ts';

export interface HttpTransportOptions {
  /** false: accept self-signed and otherwise untrusted certificates. */
  tlsVerify: boolean;
  /** Time to establish a TCP (and TLS) connection. */
  connectTimeoutMs: number;
  /** Time from sending a request to having the response headers. */
  headersTimeoutMs: number;
  /** Longest silence while a body is flowing; a paused consumer does not count. */
  stallTimeoutMs: number;
  /** Parallel connections per origin (registry, blob storage host). Default 16. */
  maxConnectionsPerHost?: number;
  userAgent?: string;
  logger: Logger;
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface HttpRequest {
  method: HttpMethod;
  url: URL;
  headers?: Record<string, string>;
  /** Sent to the request's own origin only: a redirect elsewhere (blob storage) goes without it. */
  authorization?: string;
  /** A request body (uploads stream a `Readable`; set `content-length` for it). */
  body?: string | Uint8Array | Readable;
  signal?: AbortSignal;
  /** Redirects to follow; 0 returns a 3xx as it is. Default 10. */
  maxRedirects?: number;
}

export interface HttpResponse {
  status: number;
  statusText: string;
  /** Where the response finally came from (after redirects). */
  url: URL;
  headers: IncomingHttpHeaders;
  /** The raw body; consume it, `discardBody` it, or wrap it with `guardBody`. */
  body: Readable;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const DEFAULT_MAX_REDIRECTS = 10;
export const DEFAULT_MAX_CONNECTIONS_PER_HOST = 16;
/** Error bodies are read for their distribution error codes, never more than this. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

export class HttpTransport {
  readonly #agent: Agent;
  readonly #options: HttpTransportOptions;
  readonly #userAgent: string;

  constructor(options: HttpTransportOptions) {
    this.#options = options;
    this.#userAgent = options.userAgent ?? 'meshmirror';
    this.#agent = new Agent({
      connections: options.maxConnectionsPerHost ?? DEFAULT_MAX_CONNECTIONS_PER_HOST,
      connect: { timeout: options.connectTimeoutMs, rejectUnauthorized: options.tlsVerify },
      headersTimeout: options.headersTimeoutMs,
      // undici's body timeout measures the gap between body chunks and pauses while the consumer
      // applies backpressure: exactly a stall timeout, and no total deadline anywhere.
      bodyTimeout: options.stallTimeoutMs,
      // Parallel pieces get connections of their own (one congestion window and one stall each)
      // instead of sharing one HTTP/2 session.
      allowH2: false,
    });
  }

  get stallTimeoutMs(): number {
    return this.#options.stallTimeoutMs;
  }

  /** Sends a request and follows redirects. Rejects only on transport failures (mapped); any status resolves. */
  async request(request: HttpRequest): Promise<HttpResponse> {
    const { signal } = request;
    const firstOrigin = request.url.origin;
    const maxRedirects = request.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    let url = request.url;
    let method = request.method;
    for (let hop = 0; ; hop++) {
      throwIfAborted(signal);
      const headers: Record<string, string> = { 'user-agent': this.#userAgent, ...request.headers };
      // Like Go's net/http: credentials go only to the origin they were meant for. Blob storage
      // (S3, a CDN) gets its authority from the signed URL, and must never see the registry token.
      if (request.authorization !== undefined && url.origin === firstOrigin) headers['authorization'] = request.authorization;
      let response;
      try {
        response = await this.#agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method,
          headers,
          body: method === 'GET' || method === 'HEAD' ? null : (request.body ?? ''),
          signal: signal ?? null,
        });
      } catch (error) {
        throw mapTransportError(error, { url, method, signal, options: this.#options });
      }
      // No query strings (signed URLs carry credentials there) and no headers in logs.
      this.#options.logger.debug({ method, host: url.host, path: url.pathname, status: response.statusCode }, 'registry request');
      const location = headerValue(response.headers, 'location');
      if (
        REDIRECT_STATUSES.has(response.statusCode) &&
        location !== undefined &&
        hop < maxRedirects &&
        (method === 'GET' || method === 'HEAD' || response.statusCode === 303)
      ) {
        await discardBody(response.body);
        url = new URL(location, url);
        if (response.statusCode === 303) method = method === 'HEAD' ? 'HEAD' : 'GET';
        continue;
      }
      return {
        status: response.statusCode,
        statusText: response.statusText,
        url,
        headers: response.headers,
        body: response.body,
      };
    }
  }

  /** Closes idle connections and waits briefly for in-flight requests, then destroys what is left. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), 2_000);
      timer.unref();
    });
    const outcome = await Promise.race([this.#agent.close().then(() => 'closed' as const), grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') await this.#agent.destroy();
  }
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Reads and drops a body we have no use for (redirects, 401s), so its connection can be reused. */
export async function discardBody(body: Readable): Promise<void> {
  const dump = (body as Readable & { dump?: (options?: { limit: number }) => Promise<void> }).dump;
  try {
    if (dump !== undefined) await dump.call(body, { limit: MAX_ERROR_BODY_BYTES });
    else abandonBody(body);
  } catch {
    // The connection is gone; nothing of the body matters.
  }
}

/**
 * Destroys a body we stop reading. undici reports such a destroy as an 'error' on the body; nobody
 * listens for it any more, and an unheard 'error' would crash the process.
 */
export function abandonBody(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

export interface TransportErrorContext {
  url: URL;
  method: string;
  signal: AbortSignal | undefined;
  options: Pick<HttpTransportOptions, 'connectTimeoutMs' | 'headersTimeoutMs'>;
  /** What the user can do about TLS trouble with this server (default: the registry TLS flags). */
  tlsAdvice?: { untrusted: string; notTls: string };
}

/** TLS failures that mean "this certificate is not trusted here": retrying cannot help. */
const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Maps an undici/socket failure before response headers onto a meshmirror error. */
export function mapTransportError(error: unknown, context: TransportErrorContext): MeshmirrorError {
  const { url, signal, options } = context;
  if (signal?.aborted === true) return abortError(signal);
  if (error instanceof MeshmirrorError) return error;
  const code = codeOf(error);
  const where = `${context.method} ${redactUrl(url.toString())}`;
  const data = { host: url.host, ...(code === undefined ? {} : { cause: code }) };
  if (code !== undefined && TLS_TRUST_CODES.has(code)) {
    return new MeshmirrorError(
      'MM_TLS',
      `${where}: the TLS certificate of ${url.host} is not trusted (${code}); ${context.tlsAdvice?.untrusted ?? 'set --src-tls-verify=false / --dest-tls-verify=false for this registry, or trust its CA (NODE_EXTRA_CA_CERTS)'}`,
      { cause: error, data },
    );
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'EPROTO') {
    return new MeshmirrorError(
      'MM_TLS',
      `${where}: ${url.host} does not speak TLS here (${code}); ${context.tlsAdvice?.notTls ?? 'a plain-HTTP registry needs --src-tls-verify=false / --dest-tls-verify=false'}`,
      { cause: error, data },
    );
  }
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new MeshmirrorError('MM_NETWORK', `${where}: no connection to ${url.host} within ${seconds(options.connectTimeoutMs)}`, {
        cause: error,
        data,
      });
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new MeshmirrorError('MM_NETWORK', `${where}: no response headers from ${url.host} within ${seconds(options.headersTimeoutMs)}`, { cause: error, data });
    case 'ECONNREFUSED':
      return new MeshmirrorError('MM_NETWORK', `${where}: connection refused by ${url.host}`, { cause: error, data });
    case 'ENOTFOUND':
      return new MeshmirrorError('MM_NETWORK', `${where}: cannot resolve host ${url.hostname}`, { cause: error, data });
    case 'UND_ERR_ABORTED':
    case 'ABORT_ERR':
      return new MeshmirrorError('MM_ABORTED', `${where}: aborted`, { cause: error, data });
    default:
      return new MeshmirrorError('MM_NETWORK', `${where}: ${firstLine(error)}`, { cause: error, data });
  }
}

export interface GuardBodyOptions {
  /** Bytes the body must have (Content-Length); fewer at the end is `MM_TRUNCATED`. */
  expectedBytes: number | undefined;
  url: URL;
  stallTimeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Wraps a response body so its failures carry meaning: silence longer than the stall timeout is a
 * `StallError`, a connection that ends early is `MM_TRUNCATED` (never a short success), an abort is
 * `MM_ABORTED`. Backpressure passes through; destroying the wrapper destroys the response.
 */
export function guardBody(source: Readable, options: GuardBodyOptions): Readable {
  let received = 0;
  const { expectedBytes, url } = options;
  const guard = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      received += chunk.length;
      callback(null, chunk);
    },
    flush(callback: TransformCallback): void {
      if (expectedBytes !== undefined && received < expectedBytes) {
        callback(truncatedError(url, received, expectedBytes));
        return;
      }
      callback();
    },
    destroy(error: Error | null, callback: (error?: Error | null) => void): void {
      if (!source.destroyed) source.destroy();
      callback(error);
    },
  });
  source.on('error', (error: unknown) => {
    if (options.signal?.aborted === true) {
      guard.destroy(abortError(options.signal));
      return;
    }
    const code = codeOf(error);
    if (code === 'UND_ERR_BODY_TIMEOUT') {
      guard.destroy(withCause(new StallError(url.toString(), options.stallTimeoutMs), error, { received }));
      return;
    }
    if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') {
      guard.destroy(new MeshmirrorError('MM_ABORTED', `download from ${redactUrl(url.toString())} aborted`, { cause: error }));
      return;
    }
    // Anything else while the body flows (reset, "other side closed", length mismatch) cut it short.
    guard.destroy(truncatedError(url, received, expectedBytes, error));
  });
  source.pipe(guard);
  return guard;
}

function truncatedError(url: URL, received: number, expected: number | undefined, cause?: unknown): MeshmirrorError {
  const of = expected === undefined ? '' : ` of ${expected}`;
  const why = cause === undefined ? 'connection ended early' : `connection failed (${firstLine(cause)})`;
  return new MeshmirrorError('MM_TRUNCATED', `${redactUrl(url.toString())}: ${why} after ${received}${of} bytes`, {
    ...(cause === undefined ? {} : { cause }),
    data: { received, ...(expected === undefined ? {} : { expected }) },
  });
}

function withCause<T extends MeshmirrorError>(error: T, cause: unknown, data: Record<string, unknown>): T {
  Object.defineProperty(error, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  Object.assign(error.data, data);
  return error;
}

/**
 * Reads a whole (small) body through `guardBody`, refusing more than `maxBytes`. `onChunk` sees each
 * chunk (hashing while reading).
 */
export async function readBodyCapped(
  response: HttpResponse,
  options: { maxBytes: number; what: string; tooLargeCode: 'MM_MANIFEST_INVALID' | 'MM_SIZE_MISMATCH'; stallTimeoutMs: number; signal?: AbortSignal },
): Promise<Buffer> {
  const declared = contentLength(response.headers);
  const tooLarge = (): MeshmirrorError =>
    new MeshmirrorError(options.tooLargeCode, `${options.what}: larger than the ${formatBytes(options.maxBytes)} limit`, {
      data: { maxBytes: options.maxBytes, ...(declared === undefined ? {} : { declared }) },
    });
  if (declared !== undefined && declared > options.maxBytes) {
    abandonBody(response.body);
    throw tooLarge();
  }
  const body = guardBody(response.body, {
    expectedBytes: declared,
    url: response.url,
    stallTimeoutMs: options.stallTimeoutMs,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > options.maxBytes) {
      body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  // A buffer of its own, not a slice of Node's shared pool: a manifest kept for the whole run would
  // otherwise keep a 64 KiB pool slab alive with it (measured: 11 MB of slabs for 2,000 manifests).
  const whole = Buffer.allocUnsafeSlow(total);
  let at = 0;
  for (const chunk of chunks) at += chunk.copy(whole, at);
  return whole;
}

export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const value = headerValue(headers, 'content-length');
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}

/**
 * Builds the error for a response we cannot use: status, distribution error codes from the JSON body
 * (`{"errors":[{"code":"BLOB_UNKNOWN","message":…}]}`), `Retry-After`. Consumes the body.
 */
export async function registryErrorFromResponse(response: HttpResponse, what: string, options: { hint?: string; signal?: AbortSignal } = {}): Promise<RegistryError> {
  const details = await readErrorDetails(response);
  const retryAfterMs = parseRetryAfter(response.headers['retry-after']);
  const codes = details.map((d) => d.code);
  const described = details.length === 0 ? '' : ` (${details.map((d) => (d.message === '' ? d.code : `${d.code}: ${d.message}`)).join('; ')})`;
  const status = `${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`}`;
  const hint = options.hint === undefined ? '' : `; ${options.hint}`;
  const message = oneLine(`${what}: ${status}${described}${hint}`);
  return new RegistryError(message, {
    status: response.status,
    url: redactUrl(response.url.toString()),
    registryCodes: codes,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

async function readErrorDetails(response: HttpResponse): Promise<Array<{ code: string; message: string }>> {
  let text = '';
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_ERROR_BODY_BYTES) {
        abandonBody(response.body);
        break;
      }
      chunks.push(chunk);
    }
    text = Buffer.concat(chunks).toString('utf8');
  } catch {
    return [];
  }
  try {
    const json: unknown = JSON.parse(text);
    if (typeof json !== 'object' || json === null || !('errors' in json) || !Array.isArray(json.errors)) return [];
    const out: Array<{ code: string; message: string }> = [];
    for (const item of json.errors as unknown[]) {
      if (typeof item !== 'object' || item === null) continue;
      const record = item as Record<string, unknown>;
      if (typeof record['code'] !== 'string') continue;
      out.push({ code: record['code'], message: typeof record['message'] === 'string' ? record['message'] : '' });
    }
    return out;
  } catch {
    return [];
  }
}

function codeOf(error: unknown): string | undefined {
  return error !== null && typeof error === 'object' && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0] ?? text;
}

function oneLine(text: string): string {
  const flat = text.replace(/\s*\n\s*/g, ' ');
  return flat.length > 500 ? `${flat.slice(0, 500)}…` : flat;
}

function seconds(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000}s` : `${(ms / 1_000).toFixed(1)}s`;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}
