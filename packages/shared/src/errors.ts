/**
 * Typed errors with stable codes, in the manner of undici's `UND_ERR_*`: every error meshmirror
 * raises on purpose has a `code` that callers and reports can rely on, structured `data`, and the
 * original `cause` when it wraps another error.
 */

export type ErrorCode =
  | 'MM_CONFIG_INVALID'
  | 'MM_CONFIG_UNREADABLE'
  | 'MM_REFERENCE_INVALID'
  | 'MM_AUTHFILE_INVALID'
  | 'MM_SWARM_KEY_INVALID'
  | 'MM_REGISTRY'
  | 'MM_UNAUTHORIZED'
  | 'MM_STALL'
  | 'MM_TRUNCATED'
  | 'MM_RANGE_IGNORED'
  | 'MM_DIGEST_MISMATCH'
  | 'MM_SIZE_MISMATCH'
  | 'MM_MANIFEST_INVALID'
  | 'MM_NETWORK'
  | 'MM_TLS'
  | 'MM_ABORTED'
  | 'MM_ARCHIVE_INVALID'
  | 'MM_STORE'
  | 'MM_NOT_FOUND'
  | 'MM_AGENT_LOST'
  | 'MM_SIGNATURE_MISSING'
  /** A differential archive's push: the target lacks blobs the archive leaves out. */
  | 'MM_DIFFERENTIAL_BASE_MISSING'
  | 'MM_SIGNATURE_INVALID'
  /** A Helm chart that cannot be read or rendered (the message names chart, file and line). */
  | 'MM_HELM_CHART_INVALID'
  | 'MM_USAGE';

/** A code reported across a boundary (an agent's event, a peer's message): ours stays itself, anything else is a registry failure. */
export function asErrorCode(code: string): ErrorCode {
  return /^MM_[A-Z_]+$/.test(code) ? (code as ErrorCode) : 'MM_REGISTRY';
}

export interface MeshmirrorErrorOptions {
  cause?: unknown;
  data?: Record<string, unknown>;
}

export class MeshmirrorError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: MeshmirrorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshmirrorError';
    this.code = code;
    this.data = options.data ?? {};
  }
}

/** A configuration file or flag is wrong; `path` names the field (e.g. `mirror.additionalImages[2].name`). */
export class ConfigError extends MeshmirrorError {
  readonly file: string | undefined;
  readonly path: string | undefined;

  constructor(message: string, options: MeshmirrorErrorOptions & { file?: string; path?: string } = {}) {
    super('MM_CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
    this.file = options.file;
    this.path = options.path;
  }
}

/** An image reference that cannot be parsed. */
export class ImageReferenceError extends MeshmirrorError {
  readonly reference: string;

  constructor(reference: string, reason: string) {
    // Quoted as JSON (a newline or control character stays on the one line) and cut short: a 10 MB name is not shown whole.
    const shown = JSON.stringify(reference.length > 200 ? `${reference.slice(0, 197)}...` : reference);
    super('MM_REFERENCE_INVALID', `invalid image reference ${shown}: ${reason}`, { data: { reference } });
    this.name = 'ImageReferenceError';
    this.reference = reference;
  }
}

/**
 * An error answer from a registry. `status` is the HTTP status; `registryCodes` are the
 * distribution-spec error codes from the body (`BLOB_UNKNOWN`, `TOOMANYREQUESTS`, …);
 * `retryAfterMs` comes from a `Retry-After` header.
 */
export class RegistryError extends MeshmirrorError {
  readonly status: number;
  readonly registryCodes: string[];
  readonly retryAfterMs: number | undefined;
  readonly url: string;

  constructor(message: string, options: MeshmirrorErrorOptions & { status: number; url: string; registryCodes?: string[]; retryAfterMs?: number }) {
    super(options.status === 401 ? 'MM_UNAUTHORIZED' : 'MM_REGISTRY', message, options);
    this.name = 'RegistryError';
    this.status = options.status;
    this.url = options.url;
    this.registryCodes = options.registryCodes ?? [];
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Content whose sha256 is not the digest that named it. */
export class DigestMismatchError extends MeshmirrorError {
  constructor(expected: string, actual: string, where: string) {
    super('MM_DIGEST_MISMATCH', `digest mismatch for ${where}: expected ${expected}, got ${actual}`, {
      data: { expected, actual },
    });
    this.name = 'DigestMismatchError';
  }
}

/** No body bytes arrived for the stall timeout. The transfer is retried and resumed. */
export class StallError extends MeshmirrorError {
  constructor(url: string, stallMs: number) {
    super('MM_STALL', `no data for ${Math.round(stallMs / 1000)}s from ${redactUrl(url)}`, { data: { stallMs } });
    this.name = 'StallError';
  }
}

export function abortError(signal?: AbortSignal): MeshmirrorError {
  const reason: unknown = signal?.reason;
  if (reason instanceof MeshmirrorError) return reason;
  return new MeshmirrorError('MM_ABORTED', 'operation aborted', { cause: reason });
}

/** Throws the signal's reason as an `MM_ABORTED` error when the signal has fired. */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted === true) throw abortError(signal);
}

/** Drops query strings (signed storage URLs carry credentials there) and userinfo from a URL for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return url.replace(/\?.*$/, '');
  }
}

/** A short, single-line description of any thrown value, for reports and logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.name;
  return String(err);
}

/** The stable code of any thrown value (`MM_*`, a Node `E*` code, or `UNKNOWN`). */
export function errorCode(err: unknown): string {
  if (err instanceof MeshmirrorError) return err.code;
  if (err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return 'UNKNOWN';
}

/** Why a file could not be read, in words for a one-line error ("no such file", "permission denied", …). */
export function fileErrorReason(err: unknown): string {
  switch (errorCode(err)) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return describeError(err);
  }
}
