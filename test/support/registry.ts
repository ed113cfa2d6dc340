/**
 * Runs distribution's real registry (`docker-registry serve`) for integration tests: a free
 * loopback port, a temporary filesystem storage folder, deletes enabled, logs in a file.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.ts';

const execFileAsync = promisify(execFile);

export const REGISTRY_BINARY = process.env['MESHMIRROR_REGISTRY_BIN'] ?? '/usr/bin/docker-registry';

export interface RunningRegistry {
  /** `127.0.0.1:PORT`: the registry part of image references. */
  host: string;
  /** `http://127.0.0.1:PORT` (or `https://` when started with TLS). */
  url: string;
  /** The filesystem driver's root directory. Removed by `stop()`. */
  storageDir: string;
  /** The registry's own log output (stdout and stderr). Removed by `stop()`. */
  logFile: string;
  /** The registry process id. */
  pid: number;
  /** SIGTERM, then SIGKILL after a grace period; removes the temporary folder. Idempotent. */
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  /**
   * Extra config deep-merged into the registry's config, e.g.
   * `{ auth: { htpasswd: { realm: 'test', path: '/tmp/htpasswd' } } }` or `{ auth: { token: {...} } }`.
   */
  config?: Record<string, unknown>;
  /** Serve TLS with this certificate and key (PEM file paths). */
  tls?: { certificate: string; key: string };
  /** How long to wait for `GET /v2/` to answer. Default 20 s. */
  readyTimeoutMs?: number;
  /**
   * Run inside a network namespace (see netns.ts), listening on `address:5000` there; readiness is
   * then a TCP connect from inside the namespace.
   */
  netns?: { ns: string; address: string };
  /** Serve this storage folder (e.g. one another registry filled); it is left in place on stop. */
  storageDir?: string;
}

const STOP_GRACE_MS = 5_000;
const PORT_ATTEMPTS = 3;

/** Registries still running in this process: killed if the test worker exits without stopping them. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}

export async function startRegistry(options: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const workDir = await mkdtemp(join(tmpdir(), 'mm-registry-'));
  try {
    let lastError: unknown;
    // A free port can be taken by someone else between our probe and the registry binding it;
    // a registry that exits before answering gets another port.
    for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
      try {
        return await startOnce(workDir, options);
      } catch (error) {
        lastError = error;
        if (!(error instanceof RegistryExitedError)) break;
      }
    }
    throw lastError;
  } catch (error) {
    await rm(workDir, { recursive: true, force: true });
    throw error;
  }
}

class RegistryExitedError extends Error {
  override name = 'RegistryExitedError';
}

async function startOnce(workDir: string, options: StartRegistryOptions): Promise<RunningRegistry> {
  const host = options.netns === undefined ? `127.0.0.1:${await freePort()}` : `${options.netns.address}:5000`;
  const scheme = options.tls === undefined ? 'http' : 'https';
  const url = `${scheme}://${host}`;
  const storageDir = options.storageDir ?? join(workDir, 'storage');
  const logFile = join(workDir, 'registry.log');
  const configFile = join(workDir, 'config.yml');

  const http: Record<string, unknown> = {
    addr: host,
    secret: randomBytes(16).toString('hex'),
    headers: { 'X-Content-Type-Options': ['nosniff'] },
  };
  if (options.tls !== undefined) http['tls'] = { certificate: options.tls.certificate, key: options.tls.key };
  const baseConfig: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: storageDir },
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http,
  };
  const config = deepMerge(baseConfig, options.config ?? {});
  // JSON is valid YAML, so no YAML writer is needed here.
  await writeFile(configFile, JSON.stringify(config, null, 2));

  const log = await open(logFile, 'a');
  let child: ChildProcess;
  try {
    const command: [string, string[]] =
      options.netns === undefined ? [REGISTRY_BINARY, ['serve', configFile]] : ['ip', ['netns', 'exec', options.netns.ns, REGISTRY_BINARY, 'serve', configFile]];
    child = spawn(command[0], command[1], { stdio: ['ignore', log.fd, log.fd] });
  } finally {
    // The child holds its own copy of the descriptor.
    await log.close();
  }
  liveChildren.add(child);
  installExitHook();

  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  void exited.then(() => liveChildren.delete(child));

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await terminate(child, exited);
    await rm(workDir, { recursive: true, force: true });
  };

  try {
    const ns = options.netns?.ns;
    const ready = ns === undefined ? () => probe(`${url}/v2/`) : () => probeInNamespace(ns, host);
    await waitUntilReady(url, ready, options.readyTimeoutMs ?? 20_000, () => {
      if (spawnError !== undefined) return spawnError;
      if (child.exitCode !== null || child.signalCode !== null) {
        return new RegistryExitedError(`registry exited with ${child.exitCode ?? child.signalCode}`);
      }
      return undefined;
    });
  } catch (error) {
    await terminate(child, exited);
    const tail = await readFile(logFile, 'utf8').then(
      (text) => text.slice(-2_000),
      () => '',
    );
    if (error instanceof Error) error.message += `\n--- ${logFile} (tail) ---\n${tail}`;
    throw error;
  }

  if (child.pid === undefined) throw new Error('registry process has no pid');
  return { host, url, storageDir, logFile, pid: child.pid, stop };
}

async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
  });
  const gone = await Promise.race([exited.then(() => false), timedOut]);
  clearTimeout(timer);
  if (gone) {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Polls `ready()` (by default: `GET /v2/` answers with any HTTP status, 200 or 401 when auth is
 * configured) until it is true. Each probe has its own short timeout; the whole wait has a deadline.
 */
async function waitUntilReady(url: string, ready: () => Promise<boolean>, timeoutMs: number, failure: () => Error | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delayMs = 20;
  for (;;) {
    const early = failure();
    if (early !== undefined) throw early;
    if (await ready()) return;
    if (Date.now() >= deadline) throw new Error(`registry at ${url} did not answer GET /v2/ within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    delayMs = Math.min(delayMs * 2, 250);
  }
}

/** A TCP connect to `host` (ADDRESS:PORT) from inside a namespace, with bash's /dev/tcp. */
async function probeInNamespace(ns: string, host: string): Promise<boolean> {
  const [address, port] = host.split(':');
  try {
    await execFileAsync('ip', ['netns', 'exec', ns, 'bash', '-c', `exec 3<>/dev/tcp/${address}/${port}`], { timeout: 2_000 });
    return true;
  } catch {
    return false;
  }
}

function probe(target: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = target.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(target, { method: 'GET', timeout: 1_000, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(true);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
    req.end();
  });
}

/**
 * Blob body bytes the registry sent, per client address, read from its access log
 * (`ADDR - - [time] "GET /v2/NAME/blobs/sha256:... HTTP/1.1" STATUS BYTES ...`): an upstream byte
 * count that is independent of meshmirror's own report.
 */
export async function blobBytesServed(logFile: string): Promise<Map<string, number>> {
  const served = new Map<string, number>();
  const line = /^(\S+) - \S+ \[[^\]]*\] "GET \/v2\/\S+\/blobs\/sha256:[0-9a-f]{64} HTTP\/[\d.]+" (?:200|206) (\d+)/gm;
  for (const m of (await readFile(logFile, 'utf8')).matchAll(line)) served.set(m[1]!, (served.get(m[1]!) ?? 0) + Number(m[2]));
  return served;
}

/**
 * distribution's garbage collector (`docker-registry garbage-collect`) over a storage folder: it
 * frees the blobs no manifest in any repository links to any more. distribution requires that no
 * registry writes to the folder meanwhile, so stop the one serving it first (start it again on
 * the same `storageDir`). Returns what the collector printed.
 */
export async function garbageCollect(storageDir: string, options: { deleteUntagged?: boolean } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-registry-gc-'));
  try {
    const configFile = join(dir, 'config.yml');
    // JSON is valid YAML; the collector needs only the storage.
    await writeFile(configFile, JSON.stringify({ version: 0.1, storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true } } }));
    const { stdout, stderr } = await execFileAsync(REGISTRY_BINARY, ['garbage-collect', `--delete-untagged=${options.deleteUntagged === true}`, configFile], {
      maxBuffer: 64 * 1024 * 1024,
    });
    return `${stdout}${stderr}`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = merged[key];
    merged[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return merged;
}

/**
 * Writes an htpasswd file with one bcrypt entry (distribution accepts bcrypt only) and returns its
 * path. Needs `htpasswd` from Debian's apache2-utils.
 */
export async function makeHtpasswd(dir: string, user: string, password: string): Promise<string> {
  const file = join(dir, 'htpasswd');
  // -i reads the password from stdin so it never appears in a process listing.
  await new Promise<void>((resolve, reject) => {
    const child = spawn('htpasswd', ['-B', '-c', '-i', file, user], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`htpasswd exited with ${code}: ${stderr.trim()}`));
    });
    child.stdin.end(password);
  });
  return file;
}

/**
 * Creates a self-signed certificate (and its key) valid for the given hosts with the `openssl` CLI.
 * IP addresses become `IP:` subject alternative names, everything else `DNS:`. The default covers
 * `127.0.0.1` and `localhost`. The certificate doubles as its own CA file for clients.
 */
export async function makeSelfSignedCert(dir: string, hosts: string[] = ['127.0.0.1', 'localhost']): Promise<{ certificate: string; key: string }> {
  const certificate = join(dir, 'registry.crt');
  const key = join(dir, 'registry.key');
  const names = hosts.map((host) => (/^[\d.]+$/.test(host) || host.includes(':') ? `IP:${host}` : `DNS:${host}`));
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-sha256',
    '-days',
    '2',
    '-subj',
    `/CN=${hosts[0] ?? 'localhost'}`,
    '-addext',
    `subjectAltName=${names.join(',')}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-keyout',
    key,
    '-out',
    certificate,
  ]);
  return { certificate, key };
}
