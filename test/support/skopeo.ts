/**
 * The real `skopeo` binary as an independent client: tests compare its answers with meshmirror's.
 *
 * References are skopeo transports, e.g. `docker://127.0.0.1:5000/sample/app:1.0` or
 * `oci:/path/to/layout:NAME`. skopeo 1.9.3 splits an `oci:` reference at the first `:` after
 * `oci:`, so the layout path must not contain `:` while NAME may contain `:` and `/`
 * (`oci:/tmp/x:127.0.0.1:5000/sample/app:1.0` works). It only finds index.json entries whose
 * mediaType is an OCI manifest or index; entries with Docker media types are invisible to it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Digest } from '@meshmirror/shared';

export const SKOPEO_BINARY = process.env['MESHMIRROR_SKOPEO_BIN'] ?? 'skopeo';

export interface SkopeoInspectOptions {
  /** Verify TLS for `docker://` references. Default false (tests use plain-HTTP loopback registries). */
  tlsVerify?: boolean;
  /** `user:password` for the registry. */
  creds?: string;
  signal?: AbortSignal;
}

export interface SkopeoCopyOptions {
  /** Default false. */
  srcTlsVerify?: boolean;
  /** Default false. */
  destTlsVerify?: boolean;
  srcCreds?: string;
  destCreds?: string;
  /** Copy every platform of an index (`--all`). Default true, as a mirror would. */
  all?: boolean;
  /** Fail instead of converting manifests (`--preserve-digests`). Default false. */
  preserveDigests?: boolean;
  signal?: AbortSignal;
}

export interface SkopeoResult {
  stdout: string;
  stderr: string;
}

export class SkopeoError extends Error {
  readonly args: string[];
  readonly stderr: string;
  readonly exitCode: number | string | null;

  constructor(args: string[], exitCode: number | string | null, stderr: string, options?: { cause?: unknown }) {
    super(`skopeo ${args.join(' ')} failed (${exitCode}): ${stderr.trim()}`, options);
    this.name = 'SkopeoError';
    this.args = args;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

function runSkopeo(args: string[], signal: AbortSignal | undefined): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(SKOPEO_BINARY, args, { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, signal }, (error, stdout, stderr) => {
      const errText = stderr.toString('utf8');
      if (error !== null) {
        const code = (error as { code?: number | string }).code ?? null;
        reject(new SkopeoError(args, code, errText, { cause: error }));
        return;
      }
      resolve({ stdout, stderr: errText });
    });
  });
}

function isRegistryReference(ref: string): boolean {
  return ref.startsWith('docker://');
}

/** The manifest (or index) bytes exactly as the source stores them. */
export async function skopeoInspectRaw(ref: string, options: SkopeoInspectOptions = {}): Promise<Buffer> {
  const args = ['inspect', '--raw'];
  if (isRegistryReference(ref)) {
    args.push(`--tls-verify=${options.tlsVerify ?? false}`);
    if (options.creds !== undefined) args.push('--creds', options.creds);
  }
  args.push(ref);
  const { stdout } = await runSkopeo(args, options.signal);
  return stdout;
}

/**
 * The digest of the manifest `ref` names: sha256 of the raw bytes, which is right for single
 * manifests and for indexes alike (`skopeo inspect` without `--raw` would pick one platform).
 */
export async function skopeoInspectDigest(ref: string, options: SkopeoInspectOptions = {}): Promise<Digest> {
  const raw = await skopeoInspectRaw(ref, options);
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

/** `skopeo copy` with an accept-anything policy, so the host's policy.json does not matter. */
export async function skopeoCopy(src: string, dest: string, options: SkopeoCopyOptions = {}): Promise<SkopeoResult> {
  const args = ['--insecure-policy', 'copy'];
  if (options.all ?? true) args.push('--all');
  if (options.preserveDigests === true) args.push('--preserve-digests');
  if (isRegistryReference(src)) {
    args.push(`--src-tls-verify=${options.srcTlsVerify ?? false}`);
    if (options.srcCreds !== undefined) args.push('--src-creds', options.srcCreds);
  }
  if (isRegistryReference(dest)) {
    args.push(`--dest-tls-verify=${options.destTlsVerify ?? false}`);
    if (options.destCreds !== undefined) args.push('--dest-creds', options.destCreds);
  }
  args.push(src, dest);
  const { stdout, stderr } = await runSkopeo(args, options.signal);
  return { stdout: stdout.toString('utf8'), stderr };
}
