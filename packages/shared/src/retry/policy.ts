/**
 * The retry policy: plain data plus pure functions, in the manner of undici's retry handler. One
 * classifier (`isRetryable`) decides for every caller what is worth another attempt, so the
 * registry client, the fetcher and the pusher agree.
 */
import { abortError, MeshmirrorError, RegistryError } from '../errors.ts';

export interface RetryPolicy {
  /**
   * Failed attempts in a row without progress allowed after the first one (oc-mirror
   * `--retry-times`). Absent: no cap by count, and time without progress decides.
   */
  retries?: number;
  /**
   * Give up once this long has passed without a byte of progress (`--image-timeout`), counting
   * failed attempts, retry delays and host backoff. Absent: no limit by time.
   */
  noProgressTimeoutMs?: number;
  /** Delay before the first retry. */
  baseDelayMs: number;
  /** No computed delay is longer than this. */
  maxDelayMs: number;
  /** Each retry waits `factor` times longer than the one before (1 means a fixed delay). */
  factor: number;
  /** 0..1: the share of a delay that is randomised away, so many clients do not retry in step. */
  jitter: number;
}

/** oc-mirror's `--image-timeout` default, here the time a transfer may go without progress. */
export const DEFAULT_NO_PROGRESS_TIMEOUT_MS = 10 * 60_000;

/**
 * Retries go on until ten minutes pass without a byte of progress. The cap of 30 s between tries
 * means a five-minute outage costs about fourteen probes per host (1, 2, 4, 8, 16 s, then every
 * 30 s), and a run carries on at most 30 s after the registry is back.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  noProgressTimeoutMs: DEFAULT_NO_PROGRESS_TIMEOUT_MS,
  baseDelayMs: 1_000,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.2,
});

/**
 * The longest a `Retry-After` is obeyed for. A registry asking for hours (Docker Hub's rate limit)
 * would otherwise park a run silently; past this the attempt happens and fails visibly.
 */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/**
 * The policy for oc-mirror's `--retry-times` / `--retry-delay` / `--image-timeout`. Without a
 * retry count, attempts go on until `imageTimeoutMs` passes without progress; with one, whichever
 * comes first ends them. As in oc-mirror, a delay of 0 means exponential backoff from the default
 * base; a positive delay is the fixed pause between attempts.
 */
export function retryPolicyFromSettings(settings: { retryTimes?: number | undefined; retryDelayMs: number; imageTimeoutMs?: number | undefined }): RetryPolicy {
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, noProgressTimeoutMs: settings.imageTimeoutMs ?? DEFAULT_NO_PROGRESS_TIMEOUT_MS };
  if (settings.retryTimes !== undefined) policy.retries = Math.max(0, Math.floor(settings.retryTimes));
  if (settings.retryDelayMs <= 0) return policy;
  return { ...policy, baseDelayMs: settings.retryDelayMs, maxDelayMs: Math.max(DEFAULT_RETRY_POLICY.maxDelayMs, settings.retryDelayMs), factor: 1 };
}

/** What to do after a failed attempt that may be retried. */
export type RetryDecision =
  | { retry: true; delayMs: number }
  /** `retries`: the count cap was reached; `no-progress`: the time without progress ran out. */
  | { retry: false; reason: 'retries' | 'no-progress' };

export interface FailedAttempt {
  /** Failed attempts in a row without progress, this one included (1-based). */
  failures: number;
  /** Time since the last byte of progress (or since the work began, when nothing moved yet). */
  sinceProgressMs: number;
  /** The server's `Retry-After`, if it sent one. */
  retryAfterMs?: number | undefined;
  random?: () => number;
}

/**
 * The retry decision, pure. Gives up when the policy's count cap is passed or the time without
 * progress has run out; otherwise waits the backoff delay, but never past the moment the time runs
 * out, so the last attempt starts exactly then and a failure at or after it is final.
 */
export function decideRetry(policy: RetryPolicy, attempt: FailedAttempt): RetryDecision {
  if (policy.retries !== undefined && attempt.failures > policy.retries) return { retry: false, reason: 'retries' };
  const limit = policy.noProgressTimeoutMs;
  if (limit !== undefined && attempt.sinceProgressMs >= limit) return { retry: false, reason: 'no-progress' };
  const delay = backoffDelay(policy, attempt.failures, {
    ...(attempt.retryAfterMs === undefined ? {} : { retryAfterMs: attempt.retryAfterMs }),
    ...(attempt.random === undefined ? {} : { random: attempt.random }),
  });
  return { retry: true, delayMs: limit === undefined ? delay : Math.min(delay, limit - attempt.sinceProgressMs) };
}

/**
 * How long to wait before retry number `attempt` (1-based). Exponential from `baseDelayMs`, capped
 * at `maxDelayMs`, then reduced by up to `jitter` of itself (so the result never exceeds the cap
 * and never drops below `(1 - jitter)` of the computed delay). A server's `Retry-After` wins over
 * the computed delay, capped at `max(maxDelayMs, MAX_RETRY_AFTER_MS)`.
 */
export function backoffDelay(policy: RetryPolicy, attempt: number, options: { retryAfterMs?: number; random?: () => number } = {}): number {
  const { retryAfterMs } = options;
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    return Math.round(Math.min(retryAfterMs, Math.max(policy.maxDelayMs, MAX_RETRY_AFTER_MS)));
  }
  const exponent = Math.max(0, Math.floor(attempt) - 1);
  const computed = Math.min(policy.maxDelayMs, policy.baseDelayMs * Math.pow(Math.max(1, policy.factor), exponent));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  const random = Math.min(1, Math.max(0, (options.random ?? Math.random)()));
  return Math.max(0, Math.round(computed * (1 - jitter * random)));
}

/** HTTP statuses that mean "try again later" rather than "no". */
const RETRYABLE_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/** Distribution-spec error codes that are transient whatever the status says. */
const RETRYABLE_REGISTRY_CODES = new Set(['TOOMANYREQUESTS']);

/** Codes of MeshmirrorErrors that are transient. */
const RETRYABLE_MM_CODES = new Set(['MM_STALL', 'MM_TRUNCATED']);

/** Codes of MeshmirrorErrors that are never retried, whatever their cause. */
const FINAL_MM_CODES = new Set([
  'MM_UNAUTHORIZED',
  'MM_DIGEST_MISMATCH',
  'MM_ABORTED',
  'MM_CONFIG_INVALID',
  'MM_CONFIG_UNREADABLE',
  'MM_REFERENCE_INVALID',
  'MM_AUTHFILE_INVALID',
  'MM_USAGE',
  'MM_TLS',
  'MM_MANIFEST_INVALID',
]);

/** Codes of connection failures: the request never got an answer from the host. */
const CONNECTION_FAILURE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
]);

/** Node and undici codes of failures that another attempt may not meet: the connection ones, and a cut-off body. */
const RETRYABLE_SYSTEM_CODES = new Set([
  ...CONNECTION_FAILURE_CODES,
  'EPIPE',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

const MAX_CAUSE_DEPTH = 8;

/**
 * The one classifier. Retries: 408/429/500/502/503/504, `TOOMANYREQUESTS`, connection resets and
 * refusals, connect/header timeouts, stalls (`MM_STALL`) and early EOF (`MM_TRUNCATED`). Never:
 * 401 after a token refresh (`MM_UNAUTHORIZED`), 403, 404 and other answers, digest mismatches,
 * aborts, TLS trust failures, configuration errors. A MeshmirrorError may decide for itself with
 * `data.retryable`; a wrapper without a code of its own is judged by its `cause`.
 */
export function isRetryable(err: unknown): boolean {
  return classify(err, 0);
}

function classify(err: unknown, depth: number): boolean {
  if (depth > MAX_CAUSE_DEPTH || err === null || typeof err !== 'object') return false;
  if (err instanceof MeshmirrorError) {
    const flagged = err.data['retryable'];
    if (typeof flagged === 'boolean') return flagged;
    if (FINAL_MM_CODES.has(err.code)) return false;
    if (RETRYABLE_MM_CODES.has(err.code)) return true;
    if (err instanceof RegistryError) {
      return RETRYABLE_STATUSES.has(err.status) || err.registryCodes.some((c) => RETRYABLE_REGISTRY_CODES.has(c));
    }
    if (err.code === 'MM_NETWORK') return err.cause === undefined ? true : classify(err.cause, depth + 1);
    return false;
  }
  const code = 'code' in err && typeof err.code === 'string' ? err.code : undefined;
  if (code !== undefined && RETRYABLE_SYSTEM_CODES.has(code)) return true;
  const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : undefined;
  if (status !== undefined) return RETRYABLE_STATUSES.has(status);
  // Node raises connect failures to several addresses as an AggregateError of per-address errors.
  if (err instanceof AggregateError) return err.errors.some((e) => classify(e, depth + 1));
  return 'cause' in err ? classify(err.cause, depth + 1) : false;
}

/**
 * True when a retryable failure says the host could not be reached at all (refused, reset, no
 * route, a connect or header timeout) rather than that it answered badly (5xx, 429) or that one
 * body stopped (stall, early EOF). Such a host is probed by one request at a time until it answers.
 */
export function isConnectionFailure(err: unknown): boolean {
  let current: unknown = err;
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH && current !== null && typeof current === 'object'; depth++) {
    if (current instanceof RegistryError) return false;
    if (current instanceof MeshmirrorError && current.code !== 'MM_NETWORK') return false;
    const code = 'code' in current && typeof current.code === 'string' ? current.code : undefined;
    if (code !== undefined && CONNECTION_FAILURE_CODES.has(code)) return true;
    const cause = current instanceof MeshmirrorError ? current.data['cause'] : undefined;
    if (typeof cause === 'string' && CONNECTION_FAILURE_CODES.has(cause)) return true;
    if (current instanceof AggregateError) return current.errors.some((e) => isConnectionFailure(e));
    current = 'cause' in current ? current.cause : undefined;
  }
  return false;
}

/** The server's `Retry-After` carried by an error (or by one of its causes), in milliseconds. */
export function retryAfterOf(err: unknown): number | undefined {
  let current: unknown = err;
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH && current !== null && typeof current === 'object'; depth++) {
    if (current instanceof RegistryError && current.retryAfterMs !== undefined) return current.retryAfterMs;
    if (current instanceof MeshmirrorError && typeof current.data['retryAfterMs'] === 'number') {
      return current.data['retryAfterMs'];
    }
    current = 'cause' in current ? current.cause : undefined;
  }
  return undefined;
}

/**
 * Parses a `Retry-After` header: delta seconds or an HTTP date. Returns milliseconds from `now`
 * (never negative), or undefined when absent or unparseable.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1_000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** Waits `ms`; an abort clears the timer at once and rejects with `MM_ABORTED`. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
